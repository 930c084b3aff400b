import pg from 'pg'
import type { Logger } from '../logger.ts'

export interface NotificationHandlers {
  /** A `NOTIFY` on the channel, with its payload. */
  notify(payload: string): void
  /** Listening (again): notifications sent before this moment may have been missed. */
  live(): void
  /** The connection is gone; notifications are being missed until `live` is called again. */
  lost(): void
}

export interface Listener {
  stop(): Promise<void>
}

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 5_000

/**
 * `LISTEN channel` on a connection of its own, reconnected with backoff when it
 * drops. The handlers hear when it is live and when it is lost, since whatever
 * relies on the notifications must not trust itself while it could miss one.
 */
export function listen(
  connectionString: string,
  channel: string,
  handlers: NotificationHandlers,
  logger: Logger,
): Listener {
  let stopped = false
  let client: pg.Client | undefined
  let retryMs = RETRY_MIN_MS
  let timer: NodeJS.Timeout | undefined

  const lose = (current: pg.Client, error?: unknown) => {
    if (client !== current) return
    client = undefined
    handlers.lost()
    current.end().catch(() => undefined)
    if (stopped) return
    if (error) logger.warn({ err: error, channel }, 'notification connection lost; reconnecting')
    timer = setTimeout(connect, retryMs)
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS)
  }

  const connect = async () => {
    timer = undefined
    const current = new pg.Client({
      connectionString,
      application_name: `payrail-${channel}`,
      keepAlive: true,
    })
    client = current
    current.on('error', (error) => lose(current, error))
    current.on('end', () => lose(current))
    current.on('notification', (message) => {
      if (message.channel === channel) handlers.notify(message.payload ?? '')
    })
    try {
      await current.connect()
      await current.query(`listen ${pg.escapeIdentifier(channel)}`)
    } catch (error) {
      lose(current, error)
      return
    }
    if (client !== current) return
    retryMs = RETRY_MIN_MS
    handlers.live()
  }

  void connect()
  return {
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      const current = client
      client = undefined
      await current?.end().catch(() => undefined)
    },
  }
}
