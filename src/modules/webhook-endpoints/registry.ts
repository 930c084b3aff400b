import type { Db } from '../../db/client.ts'
import type { WebhookEndpoint } from '../../db/database.ts'
import { type Listener, listen } from '../../db/notifications.ts'
import type { Logger } from '../../logger.ts'
import { enabledEndpoints } from './repository.ts'

/** Where migration 0013's trigger announces every change to an endpoint, by environment. */
export const WEBHOOK_ENDPOINT_CHANNEL = 'payrail_webhook_endpoints'

/**
 * The enabled webhook endpoints of each environment this process has recorded events
 * for, so that recording an event costs no lookup (most environments have none). An
 * environment's entry is dropped when any of its endpoints changes anywhere: the
 * trigger's `NOTIFY` reaches every process after the change commits.
 *
 * While the notification connection is down (or was never started: a CLI, a test
 * without it), nothing is served from memory and every lookup reads the table, so a
 * change is never missed for longer than its notification takes to arrive. A lookup
 * that raced a notification is not kept (`#generation`, as `ApiKeyCache` does).
 */
export class WebhookEndpointRegistry {
  #byEnvironment = new Map<string, WebhookEndpoint[]>()
  #generation = 0
  #live = false
  #listener: Listener | undefined

  async enabled(db: Db, environmentId: string): Promise<WebhookEndpoint[]> {
    if (this.#live) {
      const hit = this.#byEnvironment.get(environmentId)
      if (hit) return hit
    }
    const generation = this.#generation
    const found = await enabledEndpoints(db, environmentId)
    if (this.#live && generation === this.#generation) this.#byEnvironment.set(environmentId, found)
    return found
  }

  /** Drops an environment's endpoints (this process changed one; the notification follows). */
  forget(environmentId: string): void {
    this.#generation += 1
    this.#byEnvironment.delete(environmentId)
  }

  get live(): boolean {
    return this.#live
  }

  /** Starts listening (once per process); nothing is kept until the listener is live. */
  start(connectionString: string, logger: Logger): void {
    this.#listener ??= listen(
      connectionString,
      WEBHOOK_ENDPOINT_CHANNEL,
      {
        notify: (environmentId) => this.forget(environmentId),
        live: () => {
          this.#generation += 1
          this.#byEnvironment.clear()
          this.#live = true
        },
        lost: () => {
          this.#live = false
          this.#generation += 1
          this.#byEnvironment.clear()
        },
      },
      logger,
    )
  }

  async stop(): Promise<void> {
    const listener = this.#listener
    this.#listener = undefined
    this.#live = false
    this.#byEnvironment.clear()
    await listener?.stop()
  }
}

/**
 * The process's registry: events are recorded from every module (`recordEvents`),
 * which takes no dependencies, so it is one per process, started with the server.
 */
export const webhookEndpoints = new WebhookEndpointRegistry()

/** Whether an endpoint subscribed to `enabledEvents` takes an event of `type` (`*`: all). */
export function subscribes(enabledEvents: readonly string[], type: string): boolean {
  return enabledEvents.some(
    (pattern) =>
      pattern === '*' ||
      pattern === type ||
      (pattern.endsWith('.*') && type.startsWith(pattern.slice(0, -1))),
  )
}
