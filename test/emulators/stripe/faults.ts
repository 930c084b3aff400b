import type { HttpMethod } from './router.ts'

export const FAILURE_STATUSES = [429, 500, 502, 503] as const
export type FailureStatus = (typeof FAILURE_STATUSES)[number]

/** Which requests a fault applies to: all, or those under a path prefix and/or one method. */
export interface FaultScope {
  /** How many matching requests it hits (default 1). */
  count?: number
  /** Only requests whose path starts with this (`/v1/payment_intents`). */
  pathPrefix?: string
  method?: HttpMethod
}

export interface FailOptions extends FaultScope {
  status: FailureStatus
}

export interface TimeoutOptions extends FaultScope {
  /** How long the emulator holds the request (default 30 s, beyond any sane client timeout). */
  ms?: number
  /**
   * `hang` (default) keeps the connection open without an answer; `destroy` resets the
   * socket after `ms` (default 0). Note: stripe-node retries a reset connection once even
   * with `maxNetworkRetries: 0`.
   */
  mode?: 'hang' | 'destroy'
  /**
   * Process the request first (objects created, idempotency key saved), then lose the
   * answer: the case where a client must retry with the same key. Default false: the
   * request never reaches the API.
   */
  afterProcessing?: boolean
}

export type Fault =
  | {
      kind: 'fail'
      status: FailureStatus
      remaining: number
      pathPrefix: string
      method?: HttpMethod
    }
  | {
      kind: 'timeout'
      ms: number
      mode: 'hang' | 'destroy'
      afterProcessing: boolean
      remaining: number
      pathPrefix: string
      method?: HttpMethod
    }

/** Failures queued by a test, taken by the next matching API requests. */
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

  pending(): readonly Fault[] {
    return this.faults
  }

  clear(): void {
    this.faults.length = 0
  }
}
