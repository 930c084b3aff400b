/** How an outbox retries one delivery (each emulator documents its own defaults). */
export interface RetryPolicy {
  /** Attempts per delivery, the first included, until one answers 2xx. */
  maxAttempts: number
  /** Wait before the 2nd attempt; doubles after each failure. */
  backoffMs: number
  /** How long one attempt waits for the receiver's answer. */
  timeoutMs: number
}

/** What one POST to the receiver came to. */
export interface PostOutcome {
  ok: boolean
  /** The receiver's HTTP status, or null when the request failed (refused, timed out). */
  status: number | null
  error: string | null
}

export interface PostRequest {
  headers: Record<string, string>
  body: string
}

/**
 * The machinery every emulator's webhook or IPN outbox shares: deliveries in line one after
 * another, attempts retried with doubling backoff until one answers 2xx, each attempt cut
 * off after `timeoutMs`, and `close()` cutting short every pending sleep and request.
 * What is sent (headers, body, signature) and what is recorded stay with each provider.
 */
export class DeliveryRunner {
  private chain: Promise<unknown> = Promise.resolve()
  private readonly inFlight = new Set<Promise<unknown>>()
  /** Pending sleeps and requests, so `close()` can cut them short. */
  private readonly cancellers = new Set<() => void>()
  private closed = false

  /** `policy` is read at each use, so an outbox may swap its policy at any time. */
  constructor(private readonly policy: () => RetryPolicy) {}

  /** Runs `deliver` once every delivery put in line before it has finished (retries included). */
  inLine<T>(deliver: () => Promise<T>): Promise<T> {
    const run = this.chain.then(deliver)
    this.chain = run.catch(() => undefined)
    return run
  }

  /** Counts `promise` as under way until it settles (see `whenIdle`). */
  track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise)
    void promise.finally(() => this.inFlight.delete(promise))
    return promise
  }

  /**
   * Calls `attempt` with 1, 2, … until one is `ok`, `maxAttempts` is reached or the runner
   * is closed, sleeping `backoffMs * 2^(n-1)` after the n-th failure; `record` sees each
   * attempt as it ends. Resolves with the attempts made.
   */
  async retry<A extends { ok: boolean }>(
    attempt: (n: number) => Promise<A>,
    record: (made: A) => void,
  ): Promise<A[]> {
    const made: A[] = []
    for (let n = 1; n <= this.policy().maxAttempts; n++) {
      if (this.closed) break
      const result = await attempt(n)
      made.push(result)
      record(result)
      if (result.ok) break
      if (n < this.policy().maxAttempts) await this.sleep(this.policy().backoffMs * 2 ** (n - 1))
    }
    return made
  }

  /** One POST, aborted after `timeoutMs` or by `close()`; any 2xx is `ok`. */
  async post(url: string, request: PostRequest): Promise<PostOutcome> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), this.policy().timeoutMs)
    const cancel = () => controller.abort()
    this.cancellers.add(cancel)
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: request.headers,
        body: request.body,
        signal: controller.signal,
      })
      await response.arrayBuffer()
      const ok = response.status >= 200 && response.status < 300
      return { ok, status: response.status, error: ok ? null : `HTTP ${response.status}` }
    } catch (error) {
      return { ok: false, status: null, error: describeError(error) }
    } finally {
      clearTimeout(timer)
      this.cancellers.delete(cancel)
    }
  }

  /** Waits `ms`, or less if the runner is closed meanwhile. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        this.cancellers.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      this.cancellers.add(wake)
    })
  }

  /** Resolves once nothing tracked (no delivery, no retry) is under way. */
  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  /** Stops every delivery: no new attempt starts, pending sleeps and requests end now. */
  close(): void {
    this.closed = true
    for (const cancel of this.cancellers) cancel()
    this.cancellers.clear()
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${error.name}: ${error.message}${cause}`
  }
  return String(error)
}
