import type {
  Fault as QueuedFault,
  FailOptions as ScopedFailOptions,
  TimeoutOptions as ScopedTimeoutOptions,
} from '../shared/fault-queue.ts'
import { FaultQueue } from '../shared/fault-queue.ts'
import type { HttpMethod } from './router.ts'

export const FAILURE_STATUSES = [429, 500, 502, 503] as const
export type FailureStatus = (typeof FAILURE_STATUSES)[number]

/** Scoped by `pathPrefix` (`/v1/payment_intents`) and/or `method`. */
export type FailOptions = ScopedFailOptions<HttpMethod, FailureStatus>

/**
 * `hang` (default) keeps the connection open without an answer for `ms` (default 30 s,
 * beyond any sane client timeout); `destroy` resets the socket after `ms` (default 0).
 * Note: stripe-node retries a reset connection once even with `maxNetworkRetries: 0`.
 */
export type TimeoutOptions = ScopedTimeoutOptions<HttpMethod>

export type Fault = QueuedFault<HttpMethod, FailureStatus>

/** Failures queued by a test, taken by the next matching API requests. */
export class FaultInjector extends FaultQueue<HttpMethod, FailureStatus> {}
