import type {
  Fault as QueuedFault,
  FailOptions as ScopedFailOptions,
  TimeoutOptions as ScopedTimeoutOptions,
} from '../shared/fault-queue.ts'
import { FaultQueue } from '../shared/fault-queue.ts'

export const FAILURE_STATUSES = [429, 500, 502, 503, 504] as const
export type FailureStatus = (typeof FAILURE_STATUSES)[number]

/** The methods a fault can be scoped to; `pathPrefix` as in `/payments`. */
export type FaultMethod = 'GET' | 'POST'

export type FailOptions = ScopedFailOptions<FaultMethod, FailureStatus>

/**
 * `hang` (default) holds the connection `ms` (default 30 s) then drops it: a client with a
 * shorter timeout (the SDK's `httpClient: 'axios'`) raises `ApiTimeout`. `destroy` resets the
 * socket after `ms` (default 0): the SDK's fetch client throws `request to … failed`.
 */
export type TimeoutOptions = ScopedTimeoutOptions<FaultMethod>

export type Fault = QueuedFault<FaultMethod, FailureStatus>

/** API failures queued by a test, taken by the next matching requests. */
export class FaultInjector extends FaultQueue<FaultMethod, FailureStatus> {}
