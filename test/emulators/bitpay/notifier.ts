import type { Clock } from './clock.ts'

export interface RetryPolicy {
  /** Attempts per notification, the first included, until one answers 2xx (default 5). */
  maxAttempts: number
  /** Wait before the 2nd attempt; doubles after each failure (default 20 ms). */
  backoffMs: number
  /** How long one attempt waits for the receiver's answer (default 2 s). */
  timeoutMs: number
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, backoffMs: 20, timeoutMs: 2_000 }

/** One notification on its way. Copies made by `duplicateNext` share `id`. */
export interface OutgoingNotification {
  readonly id: string
  readonly invoiceId: string
  readonly url: string
  /** The exact bytes sent, the same on every attempt. */
  readonly body: string
}

export interface DeliveryAttempt {
  notificationId: string
  invoiceId: string
  url: string
  body: string
  attempt: number
  ok: boolean
  /** The receiver's HTTP status, or null when the request failed (refused, timed out). */
  status: number | null
  error: string | null
  at: Date
}

/**
 * Sends IPNs the way BitPay does: a JSON POST, retried with backoff until a 2xx or
 * `maxAttempts`. Unlike BitPay, notifications go out one after another in the order of the
 * changes, so a test's expectations are deterministic; disorder and duplicates are always
 * something a test asks for (`duplicateNext`, `holdAndReverse`).
 */
export class NotificationOutbox {
  readonly attempts: DeliveryAttempt[] = []
  private duplicatesLeft = 0
  private holdLeft = 0
  private readonly held: OutgoingNotification[] = []
  private chain: Promise<unknown> = Promise.resolve()
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly cancellers = new Set<() => void>()
  private closed = false

  constructor(
    public retry: RetryPolicy,
    private readonly clock: Clock,
  ) {}

  /** Each of the next `count` notifications is delivered twice, back to back. */
  duplicateNext(count: number): void {
    this.duplicatesLeft += count
  }

  /** The next `count` notifications are held, then delivered newest first. */
  holdAndReverse(count: number): void {
    this.holdLeft += count
  }

  /** Notifications held by `holdAndReverse` that are not out yet. */
  get heldBack(): readonly OutgoingNotification[] {
    return this.held
  }

  send(notification: OutgoingNotification): void {
    const copies = this.duplicatesLeft > 0 ? 2 : 1
    if (this.duplicatesLeft > 0) this.duplicatesLeft -= 1
    const batch = Array.from({ length: copies }, () => notification)
    if (this.holdLeft > 0) {
      this.held.push(...batch)
      this.holdLeft -= 1
      if (this.holdLeft > 0) return
      const released = this.held.splice(0).reverse()
      for (const item of released) this.enqueue(item)
      return
    }
    for (const item of batch) this.enqueue(item)
  }

  /** Resolves once no delivery (or retry) is under way. */
  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  clear(): void {
    this.attempts.length = 0
    this.held.length = 0
    this.duplicatesLeft = 0
    this.holdLeft = 0
  }

  close(): void {
    this.closed = true
    for (const cancel of this.cancellers) cancel()
    this.cancellers.clear()
  }

  private enqueue(notification: OutgoingNotification): void {
    const run = this.chain.then(() => this.deliver(notification))
    this.chain = run.catch(() => undefined)
    this.inFlight.add(run)
    void run.finally(() => this.inFlight.delete(run))
  }

  private async deliver(notification: OutgoingNotification): Promise<void> {
    for (let attempt = 1; attempt <= this.retry.maxAttempts; attempt++) {
      if (this.closed) return
      const result = await this.attempt(notification, attempt)
      this.attempts.push(result)
      if (result.ok) return
      if (attempt < this.retry.maxAttempts) {
        await this.sleep(this.retry.backoffMs * 2 ** (attempt - 1))
      }
    }
  }

  private async attempt(
    notification: OutgoingNotification,
    attempt: number,
  ): Promise<DeliveryAttempt> {
    const base = {
      notificationId: notification.id,
      invoiceId: notification.invoiceId,
      url: notification.url,
      body: notification.body,
      attempt,
      at: this.clock.now(),
    }
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), this.retry.timeoutMs)
    const cancel = () => controller.abort()
    this.cancellers.add(cancel)
    try {
      const response = await fetch(notification.url, {
        method: 'POST',
        headers: {
          accept: 'application/json',
          'content-type': 'application/json',
          'user-agent': 'BitPay IPN (emulator)',
        },
        body: notification.body,
        signal: controller.signal,
      })
      await response.arrayBuffer()
      const ok = response.status >= 200 && response.status < 300
      return { ...base, ok, status: response.status, error: ok ? null : `HTTP ${response.status}` }
    } catch (error) {
      return { ...base, ok: false, status: null, error: describeError(error) }
    } finally {
      clearTimeout(timer)
      this.cancellers.delete(cancel)
    }
  }

  private sleep(ms: number): Promise<void> {
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
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${error.name}: ${error.message}${cause}`
  }
  return String(error)
}
