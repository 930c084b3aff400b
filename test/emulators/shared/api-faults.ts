/** How the next API requests misbehave, queued by a test (every API request, in turn). */
export interface FailOptions {
  /** The HTTP status answered (500, 502, 503, 429…). */
  status: number
  /** How many requests it hits (default 1). */
  count?: number
}

export interface TimeoutOptions {
  /** How many requests it hits (default 1). */
  count?: number
  /** How long the request is held before its connection is reset (default 30 s). */
  ms?: number
  /**
   * Process the request first (a transaction or invoice made, its notifications to come),
   * then lose the answer. Default false: the request never reaches the API.
   */
  afterProcessing?: boolean
}

export type ApiFault =
  | { kind: 'fail'; status: number; remaining: number }
  | { kind: 'timeout'; ms: number; afterProcessing: boolean; remaining: number }

/** Faults taken, first queued first, by the next API requests (hosted pages are spared). */
export class ApiFaults {
  private readonly queue: ApiFault[] = []

  failNext(options: FailOptions): void {
    this.queue.push({ kind: 'fail', status: options.status, remaining: options.count ?? 1 })
  }

  timeoutNext(options: TimeoutOptions = {}): void {
    this.queue.push({
      kind: 'timeout',
      ms: options.ms ?? 30_000,
      afterProcessing: options.afterProcessing ?? false,
      remaining: options.count ?? 1,
    })
  }

  take(): ApiFault | undefined {
    const fault = this.queue[0]
    if (fault === undefined) return undefined
    fault.remaining -= 1
    if (fault.remaining <= 0) this.queue.shift()
    return fault
  }

  clear(): void {
    this.queue.length = 0
  }
}
