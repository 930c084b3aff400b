/**
 * Where "now" comes from. Services take a clock instead of calling `new Date()`
 * so tests can move time (renewals, payment windows, key expiry) without waiting.
 */
export interface Clock {
  now(): Date
}

export const systemClock: Clock = {
  now: () => new Date(),
}

/** A clock that stands still until told to move. */
export class ManualClock implements Clock {
  #now: Date

  constructor(start: Date = new Date()) {
    this.#now = new Date(start)
  }

  now(): Date {
    return new Date(this.#now)
  }

  set(to: Date): void {
    this.#now = new Date(to)
  }

  advance(ms: number): void {
    this.#now = new Date(this.#now.getTime() + ms)
  }
}
