export const FAILURE_STATUSES = [429, 500, 502, 503, 504] as const
export type FailureStatus = (typeof FAILURE_STATUSES)[number]

/** Which API requests a fault applies to: all, or those under a path prefix and/or one method. */
export interface FaultScope {
  /** How many matching requests it hits (default 1). */
  count?: number
  /** Only requests whose path starts with this (`/payments`). */
  pathPrefix?: string
  method?: 'GET' | 'POST'
}

export interface FailOptions extends FaultScope {
  status: FailureStatus
}

export interface TimeoutOptions extends FaultScope {
  /** How long the request is held before the connection is dropped (default 30 s). */
  ms?: number
  /**
   * `hang` (default) holds the connection `ms` then drops it: a client with a shorter
   * timeout (the SDK's `httpClient: 'axios'`) raises `ApiTimeout`. `destroy` resets the socket
   * after `ms` (default 0): the SDK's fetch client throws `request to … failed`.
   */
  mode?: 'hang' | 'destroy'
  /** Process the request first, then lose the answer: a retry must reuse its idempotency key. */
  afterProcessing?: boolean
}

export type Fault =
  | { kind: 'fail'; status: FailureStatus; remaining: number; pathPrefix: string; method?: string }
  | {
      kind: 'timeout'
      ms: number
      mode: 'hang' | 'destroy'
      afterProcessing: boolean
      remaining: number
      pathPrefix: string
      method?: string
    }

/** API failures queued by a test, taken by the next matching requests. */
export class FaultInjector {
  private readonly faults: Fault[] = []

  failNext(options: FailOptions): void {
    this.faults.push({
      kind: 'fail',
      status: options.status,
      remaining: options.count ?? 1,
      pathPrefix: options.pathPrefix ?? '/',
      method: options.method,
    })
  }

  timeoutNext(options: TimeoutOptions = {}): void {
    const mode = options.mode ?? 'hang'
    this.faults.push({
      kind: 'timeout',
      ms: options.ms ?? (mode === 'hang' ? 30_000 : 0),
      mode,
      afterProcessing: options.afterProcessing ?? false,
      remaining: options.count ?? 1,
      pathPrefix: options.pathPrefix ?? '/',
      method: options.method,
    })
  }

  /** The first fault matching this request, counted down (and dropped once spent). */
  take(method: string, path: string): Fault | undefined {
    const index = this.faults.findIndex(
      (fault) =>
        path.startsWith(fault.pathPrefix) &&
        (fault.method === undefined || fault.method === method),
    )
    const fault = this.faults[index]
    if (fault === undefined) return undefined
    fault.remaining -= 1
    if (fault.remaining <= 0) this.faults.splice(index, 1)
    return fault
  }

  clear(): void {
    this.faults.length = 0
  }
}
