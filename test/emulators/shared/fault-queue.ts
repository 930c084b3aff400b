/** Which API requests a fault applies to: all, or those under a path prefix and/or one method. */
export interface FaultScope<Method extends string> {
  /** How many matching requests it hits (default 1). */
  count?: number
  /** Only requests whose path starts with this. */
  pathPrefix?: string
  method?: Method
}

export interface FailOptions<Method extends string, Status extends number>
  extends FaultScope<Method> {
  status: Status
}

export interface TimeoutOptions<Method extends string> extends FaultScope<Method> {
  /** How long the request is held (default 30 s for `hang`, 0 for `destroy`). */
  ms?: number
  /** `hang` (default) holds the connection `ms`; `destroy` resets the socket after `ms`. */
  mode?: 'hang' | 'destroy'
  /**
   * Process the request first (objects created, idempotency key saved), then lose the
   * answer: a retry must reuse its idempotency key. Default false: the request never
   * reaches the API.
   */
  afterProcessing?: boolean
}

export type Fault<Method extends string, Status extends number> =
  | {
      kind: 'fail'
      status: Status
      remaining: number
      pathPrefix: string
      method?: Method
    }
  | {
      kind: 'timeout'
      ms: number
      mode: 'hang' | 'destroy'
      afterProcessing: boolean
      remaining: number
      pathPrefix: string
      method?: Method
    }

/**
 * Failures queued by a test, taken by the next matching API requests: each request takes
 * the first queued fault whose scope matches and counts it down, dropping it once spent.
 */
export class FaultQueue<Method extends string, Status extends number> {
  private readonly faults: Fault<Method, Status>[] = []

  failNext(options: FailOptions<Method, Status>): void {
    this.faults.push({
      kind: 'fail',
      status: options.status,
      remaining: options.count ?? 1,
      pathPrefix: options.pathPrefix ?? '/',
      method: options.method,
    })
  }

  timeoutNext(options: TimeoutOptions<Method> = {}): void {
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
  take(method: string, path: string): Fault<Method, Status> | undefined {
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

  /** The faults still queued, first taken first. */
  pending(): readonly Fault<Method, Status>[] {
    return this.faults
  }

  clear(): void {
    this.faults.length = 0
  }
}
