import type { Db } from '../../db/client.ts'
import { type Listener, listen } from '../../db/notifications.ts'
import type { Logger } from '../../logger.ts'
import { type ApiKeyWithEnvironment, findApiKeyByHash } from './repository.ts'

/** Where migration 0007's trigger announces every changed or deleted key, by hash. */
export const API_KEY_CHANNEL = 'payrail_api_keys'
const CAPACITY = 10_000

/**
 * The API keys this process has seen, by hash, so a request costs no lookup. An
 * entry is dropped when its key changes anywhere (a revocation in any process, or
 * an update in SQL): the trigger's `NOTIFY` reaches every process after the commit.
 *
 * While the notification connection is down, nothing is served from the cache and
 * nothing enters it; when it is back, the cache starts empty, since it may have
 * missed a revocation. A lookup that raced a notification is not stored: each
 * notification moves `#generation`, and a row read before it may be stale.
 */
export class ApiKeyCache {
  #entries = new Map<string, ApiKeyWithEnvironment>()
  #generation = 0
  #live = false
  #listener: Listener | undefined

  /** The key with this hash, from the cache or the database. */
  async lookup(db: Db, keyHash: string): Promise<ApiKeyWithEnvironment | undefined> {
    if (this.#live) {
      const hit = this.#entries.get(keyHash)
      if (hit) return hit
    }
    const generation = this.#generation
    const found = await findApiKeyByHash(db, keyHash)
    if (found && this.#live && generation === this.#generation) {
      this.#entries.set(keyHash, found)
      if (this.#entries.size > CAPACITY) {
        const oldest = this.#entries.keys().next()
        if (!oldest.done) this.#entries.delete(oldest.value)
      }
    }
    return found
  }

  /** Drops one key (this process changed it; the notification will follow). */
  forget(keyHash: string): void {
    this.#generation += 1
    this.#entries.delete(keyHash)
  }

  get live(): boolean {
    return this.#live
  }

  get size(): number {
    return this.#entries.size
  }

  /** Starts listening for changed keys; the cache serves nothing until the listener is live. */
  start(connectionString: string, logger: Logger): void {
    this.#listener ??= listen(
      connectionString,
      API_KEY_CHANNEL,
      {
        notify: (keyHash) => this.forget(keyHash),
        live: () => this.#reset(true),
        lost: () => this.#reset(false),
      },
      logger,
    )
  }

  async stop(): Promise<void> {
    await this.#listener?.stop()
    this.#listener = undefined
    this.#reset(false)
  }

  #reset(live: boolean): void {
    this.#generation += 1
    this.#entries.clear()
    this.#live = live
  }
}
