import { ckoSignature } from './signing.ts'

export interface RetryPolicy {
  /** Attempts per delivery, the first included, until one answers 2xx (default 5). */
  maxAttempts: number
  /** Wait before the 2nd attempt; doubles after each failure (default 20 ms). */
  backoffMs: number
  /** How long one attempt waits for the endpoint's answer (default 5 s). */
  timeoutMs: number
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, backoffMs: 20, timeoutMs: 5_000 }

export const RELEASE_ORDERS = ['fifo', 'reverse'] as const
export type ReleaseOrder = (typeof RELEASE_ORDERS)[number]

/** One event on its way to the endpoint. Copies of a duplicated event share `eventId`. */
export interface PendingDelivery {
  readonly id: string
  readonly eventId: string
  readonly type: string
  readonly url: string
  /** The exact bytes sent, the same on every attempt (the signature covers them). */
  readonly body: string
  readonly badSignature: boolean
}

export interface DeliveryAttempt {
  deliveryId: string
  eventId: string
  type: string
  attempt: number
  ok: boolean
  /** The endpoint's status, or null when the request failed (refused, timed out). */
  status: number | null
  error: string | null
  /** The `Cko-Signature` sent. */
  signature: string
  body: string
}

/**
 * Sends events as Checkout.com does: a POST of the event JSON with `Cko-Signature`
 * (hex HMAC-SHA256 of the body with the signature key), retried with backoff until a 2xx.
 * Deliveries go one after another in emission order; disorder is what a test asks for
 * (`hold` then `release({ order: 'reverse' })`), as are duplicates and bad signatures.
 */
export class WebhookOutbox {
  retry: RetryPolicy
  url: string | null = null
  readonly attempts: DeliveryAttempt[] = []
  private holding = false
  private readonly held: PendingDelivery[] = []
  private duplicatesLeft = 0
  private badSignaturesLeft = 0
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly cancellers = new Set<() => void>()
  private chain: Promise<unknown> = Promise.resolve()
  private sequence = 0
  private closed = false

  constructor(
    private readonly signatureKey: string,
    retry: RetryPolicy,
    /** Sent as `Authorization` when the webhook is configured with an authorization header. */
    private readonly authorization: string | null,
  ) {
    this.retry = retry
  }

  /** Queues (or holds) the event for the endpoint; nothing happens without one. */
  accept(event: { id: string; type: string; body: string }): void {
    if (this.url === null) return
    const copies = this.duplicatesLeft > 0 ? 2 : 1
    if (this.duplicatesLeft > 0) this.duplicatesLeft -= 1
    for (let copy = 0; copy < copies; copy++) {
      const badSignature = this.badSignaturesLeft > 0
      if (badSignature) this.badSignaturesLeft -= 1
      const delivery: PendingDelivery = {
        id: `whd_${++this.sequence}`,
        eventId: event.id,
        type: event.type,
        url: this.url,
        body: event.body,
        badSignature,
      }
      if (this.holding) this.held.push(delivery)
      else this.track(this.inOrder(delivery))
    }
  }

  /** The next `count` events are each delivered twice. */
  duplicateNext(count: number): void {
    this.duplicatesLeft += count
  }

  /** The next `count` deliveries (every attempt of each) carry a wrong `Cko-Signature`. */
  badSignatureNext(count: number): void {
    this.badSignaturesLeft += count
  }

  /** From now on deliveries wait for `release`. */
  hold(): void {
    this.holding = true
  }

  get pending(): readonly PendingDelivery[] {
    return this.held
  }

  /** Sends what was held, in `order`, one after another; auto delivery resumes. */
  async release(order: ReleaseOrder = 'fifo'): Promise<DeliveryAttempt[]> {
    this.holding = false
    const taken = this.held.splice(0)
    if (order === 'reverse') taken.reverse()
    const made: DeliveryAttempt[] = []
    for (const delivery of taken) made.push(...(await this.track(this.inOrder(delivery))))
    return made
  }

  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  clear(): void {
    this.held.length = 0
    this.attempts.length = 0
    this.holding = false
    this.duplicatesLeft = 0
    this.badSignaturesLeft = 0
  }

  close(): void {
    this.closed = true
    for (const cancel of this.cancellers) cancel()
    this.cancellers.clear()
  }

  private inOrder(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    const run = this.chain.then(() => this.deliver(delivery))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async deliver(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    const made: DeliveryAttempt[] = []
    for (let attempt = 1; attempt <= this.retry.maxAttempts && !this.closed; attempt++) {
      const result = await this.attempt(delivery, attempt)
      made.push(result)
      this.attempts.push(result)
      if (result.ok) break
      if (attempt < this.retry.maxAttempts)
        await this.sleep(this.retry.backoffMs * 2 ** (attempt - 1))
    }
    return made
  }

  private async attempt(delivery: PendingDelivery, attempt: number): Promise<DeliveryAttempt> {
    const key = delivery.badSignature ? `${this.signatureKey}-wrong` : this.signatureKey
    const signature = ckoSignature(delivery.body, key)
    const base = {
      deliveryId: delivery.id,
      eventId: delivery.eventId,
      type: delivery.type,
      attempt,
      signature,
      body: delivery.body,
    }
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), this.retry.timeoutMs)
    const cancel = () => controller.abort()
    this.cancellers.add(cancel)
    try {
      const headers: Record<string, string> = {
        'content-type': 'application/json; charset=utf-8',
        'cko-signature': signature,
        'user-agent': 'checkout-webhooks/1.0 (payrail emulator)',
      }
      if (this.authorization !== null) headers.authorization = this.authorization
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers,
        body: delivery.body,
        signal: controller.signal,
      })
      await response.arrayBuffer()
      const ok = response.status >= 200 && response.status < 300
      return { ...base, ok, status: response.status, error: ok ? null : `HTTP ${response.status}` }
    } catch (error) {
      return { ...base, ok: false, status: null, error: describe(error) }
    } finally {
      clearTimeout(timer)
      this.cancellers.delete(cancel)
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise)
    void promise.finally(() => this.inFlight.delete(promise))
    return promise
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

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${error.name}: ${error.message}${cause}`
  }
  return String(error)
}
