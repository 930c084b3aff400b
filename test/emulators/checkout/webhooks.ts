import { DeliveryRunner, type RetryPolicy } from '../shared/delivery-runner.ts'
import { ckoSignature } from './signing.ts'

export type { RetryPolicy } from '../shared/delivery-runner.ts'

/** Defaults: 5 attempts, 20 ms before the 2nd (doubling), 5 s per attempt. */
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
  private readonly runner = new DeliveryRunner(() => this.retry)
  private sequence = 0

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
      else void this.runner.track(this.inOrder(delivery))
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
    for (const delivery of taken) made.push(...(await this.runner.track(this.inOrder(delivery))))
    return made
  }

  whenIdle(): Promise<void> {
    return this.runner.whenIdle()
  }

  clear(): void {
    this.held.length = 0
    this.attempts.length = 0
    this.holding = false
    this.duplicatesLeft = 0
    this.badSignaturesLeft = 0
  }

  close(): void {
    this.runner.close()
  }

  private inOrder(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    return this.runner.inLine(() =>
      this.runner.retry(
        (attempt) => this.attempt(delivery, attempt),
        (made) => this.attempts.push(made),
      ),
    )
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
    const headers: Record<string, string> = {
      'content-type': 'application/json; charset=utf-8',
      'cko-signature': signature,
      'user-agent': 'checkout-webhooks/1.0 (payrail emulator)',
    }
    if (this.authorization !== null) headers.authorization = this.authorization
    const outcome = await this.runner.post(delivery.url, { headers, body: delivery.body })
    return { ...base, ...outcome }
  }
}
