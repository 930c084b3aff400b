import type { RequestLogEntry, SavedResponse } from './api.ts'
import { renderWebhookEvent } from './events.ts'
import { type FailOptions, FaultInjector, type TimeoutOptions } from './faults.ts'
import { newId } from './ids.ts'
import { isJsonObject, type JsonObject, type JsonValue } from './json.ts'
import { capturePayment, endPayment, storeCard } from './payments.ts'
import {
  type CompleteSessionOptions,
  cancelSessionUrl,
  completeSession,
  expireSession,
  type SessionCompletion,
} from './sessions.ts'
import {
  CheckoutState,
  type CheckoutWebhookEventType,
  type Clock,
  type PaymentRecord,
  type SessionRecord,
} from './state.ts'
import type { CheckoutTestCard } from './test-cards.ts'
import {
  DEFAULT_RETRY_POLICY,
  type DeliveryAttempt,
  type PendingDelivery,
  type ReleaseOrder,
  type RetryPolicy,
  WebhookOutbox,
} from './webhooks.ts'

export interface CheckoutEmulatorOptions {
  /** The only key the API accepts; a random `sk_sbox_…` by default. */
  secretKey?: string
  /** The webhook's signature key, for `Cko-Signature`; random by default. */
  signatureKey?: string
  /** Where webhooks are POSTed; none by default (see `setWebhookUrl`). */
  webhookUrl?: string
  /** Sent as the webhook's `Authorization` header when set (Checkout.com's optional header). */
  webhookAuthorization?: string
  webhookRetry?: Partial<RetryPolicy>
  clock?: Clock
  host?: string
  port?: number
}

/** The options `new Checkout(key, options)` needs to talk to this emulator. */
export interface CheckoutSdkOptions {
  host: string
  timeout: number
  httpClient?: 'axios'
}

/**
 * A running Checkout.com emulator: the account's state, and the switches a test pulls to
 * play the customer (pay or abandon a hosted page), to misdeliver webhooks and to fail
 * the API.
 *
 * ```ts
 * const emulator = await startCheckoutEmulator({ webhookUrl })
 * const cko = new Checkout(emulator.secretKey, emulator.sdkOptions())
 * const page = await cko.hostedPayments.create({ … })
 * const { paymentId, redirectUrl } = emulator.completeHostedPayment(page.id)
 * await emulator.waitForDeliveries()
 * ```
 */
export class CheckoutEmulator {
  readonly state: CheckoutState
  readonly faults = new FaultInjector()
  readonly idempotency = new Map<string, SavedResponse>()
  readonly requestLog: RequestLogEntry[] = []
  private readonly webhooks: WebhookOutbox
  private readonly eventBodies = new Map<string, string>()
  private address = { host: '127.0.0.1', port: 0 }
  private closeServer: () => Promise<void> = async () => {}

  constructor(
    readonly secretKey: string,
    readonly signatureKey: string,
    options: CheckoutEmulatorOptions = {},
  ) {
    this.state = new CheckoutState(options.clock ?? { now: () => new Date() })
    this.webhooks = new WebhookOutbox(
      signatureKey,
      { ...DEFAULT_RETRY_POLICY, ...options.webhookRetry },
      options.webhookAuthorization ?? null,
    )
    this.webhooks.url = options.webhookUrl ?? null
    this.state.onEvent((event) => {
      // The body is the payment as it was when the event happened, whenever it is delivered.
      const body = JSON.stringify(renderWebhookEvent(this.state, event))
      this.eventBodies.set(event.id, body)
      this.webhooks.accept({ id: event.id, type: event.type, body })
    })
  }

  /** Called by `startCheckoutEmulator` once the server listens. */
  bind(address: { host: string; port: number }, closeServer: () => Promise<void>): void {
    this.address = address
    this.closeServer = closeServer
    this.state.baseUrl = this.url
  }

  get port(): number {
    return this.address.port
  }

  /** `http://127.0.0.1:PORT`: the SDK's `host`, and the base of the hosted pages. */
  get url(): string {
    return `http://${this.address.host}:${this.address.port}`
  }

  /** `new Checkout(emulator.secretKey, emulator.sdkOptions())`. */
  sdkOptions(overrides: Partial<Omit<CheckoutSdkOptions, 'host'>> = {}): CheckoutSdkOptions {
    return { host: this.url, timeout: 5_000, ...overrides }
  }

  /** Every API request received, oldest first. */
  get requests(): readonly RequestLogEntry[] {
    return this.requestLog
  }

  // --- The customer's side ----------------------------------------------------------

  /**
   * The customer pays the hosted page, payment link or payment session `id` with `card`
   * (default `4242424242424242`): a `Captured` (or, with `capture: false`, `Authorized`)
   * payment and a redirect to `success_url`; a declining card gives a `Declined` payment
   * and a redirect to `failure_url`. Webhooks follow.
   */
  completeHostedPayment(id: string, options: CompleteSessionOptions = {}): SessionCompletion {
    return completeSession(this.state, this.requireSession(id), options)
  }

  /** The page lapses unpaid: an `Expired` payment and `payment_expired`. */
  expireHostedPayment(id: string): { paymentId: string } {
    return { paymentId: expireSession(this.state, this.requireSession(id)).id }
  }

  /** The customer leaves the page: the `cancel_url` they are sent to. No payment, no event. */
  cancelHostedPayment(id: string): { redirectUrl: string } {
    return { redirectUrl: cancelSessionUrl(this.requireSession(id)) }
  }

  /** A `Pending` or `Authorized` payment is canceled (`payment_canceled`). */
  cancelPayment(paymentId: string): void {
    endPayment(this.state, this.requirePayment(paymentId), 'Canceled')
  }

  /** A `Pending` or `Authorized` payment expires (`payment_expired`). */
  expirePayment(paymentId: string): void {
    endPayment(this.state, this.requirePayment(paymentId), 'Expired')
  }

  /**
   * The next `count` payments requested with `capture: true` answer `Authorized` (and send
   * `payment_approved`) without being captured, as when Checkout.com processes the automatic
   * capture after answering; `capturePayment` then captures them.
   */
  deferCaptureNext(count = 1): void {
    this.state.capturesToDefer += count
  }

  /**
   * The next `count` refunds are accepted (202, as every refund is) and then declined:
   * `payment_refund_declined`, and the payment keeps what it had.
   */
  declineRefundNext(count = 1): void {
    this.state.refundsToDecline += count
  }

  /** Payments whose deferred capture has not happened yet, oldest first. */
  get deferredCaptures(): readonly string[] {
    return [...this.state.deferredCaptures]
  }

  /**
   * Captures an `Authorized` payment (all of it, or `amount`), as its automatic capture or
   * a capture in the Dashboard would: `Captured` (or `Partially Captured`) and
   * `payment_captured`. Returns the capture's action id.
   */
  capturePayment(paymentId: string, options: { amount?: number } = {}): string {
    const payment = this.requirePayment(paymentId)
    return capturePayment(this.state, payment, {
      amount: options.amount ?? null,
      reference: payment.reference,
    }).id
  }

  /** A stored card (`src_…`) for `source: {type: 'id', id}` payments. */
  seedCardSource(card: CheckoutTestCard | (string & {}) = '4242424242424242'): string {
    const now = this.state.clock.now()
    return storeCard(this.state, {
      number: card,
      expiryMonth: 12,
      expiryYear: now.getUTCFullYear() + 3,
    }).sourceId
  }

  /** A customer (`cus_…`) for `customer: {id}`. */
  seedCustomer(fields: { email?: string; name?: string } = {}): string {
    const id = newId('customer')
    this.state.customers.set(id, { id, email: fields.email ?? null, name: fields.name ?? null })
    return id
  }

  payment(id: string): PaymentRecord | undefined {
    return this.state.findPayment(id)
  }

  session(id: string): SessionRecord | undefined {
    return this.state.sessions.get(id)
  }

  // --- Webhooks -------------------------------------------------------------------------

  setWebhookUrl(url: string | null): void {
    this.webhooks.url = url
  }

  setWebhookRetry(policy: Partial<RetryPolicy>): void {
    this.webhooks.retry = { ...this.webhooks.retry, ...policy }
  }

  /** Sends a new event of `type` about a payment as it is now (a test's own notification). */
  sendWebhook(type: CheckoutWebhookEventType, paymentId: string): string {
    const id = newId('event')
    const payment = this.requirePayment(paymentId)
    this.state.emit({ id, type, createdOn: this.state.clock.now(), payment, action: null })
    return id
  }

  /** The next `count` events are delivered twice (same `id`, same body). */
  duplicateNext(count = 1): void {
    this.webhooks.duplicateNext(count)
  }

  /** The next `count` deliveries are signed with a wrong key, on every attempt. */
  badSignatureNext(count = 1): void {
    this.webhooks.badSignatureNext(count)
  }

  /** Deliveries wait until `releaseWebhooks`. */
  holdWebhooks(): void {
    this.webhooks.hold()
  }

  /** Sends what was held (`reverse`: out of order), then resumes delivery as events happen. */
  releaseWebhooks(options: { order?: ReleaseOrder } = {}): Promise<DeliveryAttempt[]> {
    return this.webhooks.release(options.order ?? 'fifo')
  }

  get heldWebhooks(): readonly PendingDelivery[] {
    return this.webhooks.pending
  }

  /** Every delivery attempt so far, oldest first. */
  get deliveries(): readonly DeliveryAttempt[] {
    return this.webhooks.attempts
  }

  /** Events emitted so far (delivered or not), oldest first, as webhook bodies. */
  listEvents(type?: CheckoutWebhookEventType): JsonObject[] {
    return this.state.events
      .filter((event) => type === undefined || event.type === type)
      .map((event) => {
        const body = this.eventBodies.get(event.id)
        const parsed: JsonValue =
          body === undefined ? renderWebhookEvent(this.state, event) : JSON.parse(body)
        if (!isJsonObject(parsed)) throw new Error(`Event ${event.id} is not an object`)
        return parsed
      })
  }

  waitForDeliveries(): Promise<void> {
    return this.webhooks.whenIdle()
  }

  // --- API faults -----------------------------------------------------------------------

  /** The next `count` matching API requests answer `status` (empty body). */
  failNext(options: FailOptions): void {
    this.faults.failNext(options)
  }

  /** The next `count` matching API requests get no answer: held `ms`, then dropped. */
  timeoutNext(options: TimeoutOptions = {}): void {
    this.faults.timeoutNext(options)
  }

  clearFaults(): void {
    this.faults.clear()
  }

  /** Forgets every object, event, idempotency key, fault, held delivery and logged request. */
  reset(): void {
    this.state.clear()
    this.eventBodies.clear()
    this.idempotency.clear()
    this.faults.clear()
    this.webhooks.clear()
    this.requestLog.length = 0
  }

  async close(): Promise<void> {
    this.webhooks.close()
    await this.closeServer()
  }

  private requireSession(id: string): SessionRecord {
    const session = this.state.sessions.get(id)
    if (session === undefined) throw new Error(`No hosted payment, link or session ${id}`)
    return session
  }

  private requirePayment(id: string): PaymentRecord {
    const payment = this.state.findPayment(id)
    if (payment === undefined) throw new Error(`No payment ${id}`)
    return payment
  }
}
