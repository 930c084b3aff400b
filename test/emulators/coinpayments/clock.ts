/** Where "now" comes from; Payrail's `ManualClock` fits, so tests can move time for both. */
export interface Clock {
  now(): Date
}

export const SYSTEM_CLOCK: Clock = { now: () => new Date() }
