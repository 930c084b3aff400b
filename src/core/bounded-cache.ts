/**
 * A process-wide map for values that never change once they exist (an invoice's
 * lines, an environment's tenant), holding at most `capacity` entries: the oldest
 * goes first. Only for facts no write can alter, so nothing needs invalidating.
 *
 * @example
 * const lines = new BoundedCache<string, InvoiceLine[]>(10_000)
 */
export class BoundedCache<K, V> {
  readonly #entries = new Map<K, V>()

  constructor(readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.#entries.get(key)
  }

  set(key: K, value: V): void {
    this.#entries.delete(key)
    this.#entries.set(key, value)
    if (this.#entries.size > this.capacity) {
      const oldest = this.#entries.keys().next()
      if (!oldest.done) this.#entries.delete(oldest.value)
    }
  }

  clear(): void {
    this.#entries.clear()
  }

  get size(): number {
    return this.#entries.size
  }
}
