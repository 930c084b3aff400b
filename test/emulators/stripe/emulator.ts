import type { RequestLogEntry } from './api.ts'
import { AUTOMATIC, type DeliveryOptions, renderEvent } from './events.ts'
import { renderById } from './expand.ts'
import { type FailOptions, FaultInjector, type TimeoutOptions } from './faults.ts'
import { IdempotencyStore } from './idempotency.ts'
import type { JsonObject } from './json.ts'
import { newestFirst } from './list.ts'
import {
  insertBalanceTransaction,
  type NewBalanceTransaction,
  renderBalanceTransaction,
} from './resources/balance-transactions.ts'
import {
  type CheckoutCompletion,
  type CompleteCheckoutOptions,
  completeCheckoutSession,
  expireCheckoutSession,
} from './resources/checkout-sessions.ts'
import {
  insertCustomer,
  type NewCustomer,
  renderCustomer,
  requireCustomer,
} from './resources/customers.ts'
import { insertInvoice, type NewInvoice, renderInvoice } from './resources/invoices.ts'
import {
  completeAuthentication,
  renderPaymentIntent,
  requirePaymentIntent,
} from './resources/payment-intents.ts'
import { createPaymentMethod, renderPaymentMethod } from './resources/payment-methods.ts'
import { insertPrice, type NewPrice, renderPrice } from './resources/prices.ts'
import { insertProduct, type NewProduct, renderProduct } from './resources/products.ts'
import { failRefund, type RefundFailureReason } from './resources/refunds.ts'
import {
  insertSubscriptionSchedule,
  type NewSubscriptionSchedule,
  renderSubscriptionSchedule,
} from './resources/subscription-schedules.ts'
import {
  insertSubscription,
  type NewSubscription,
  renderSubscription,
} from './resources/subscriptions.ts'
import type { Router } from './router.ts'
import { buildApiRouter } from './routes.ts'
import { type Clock, EmulatorState } from './state.ts'
import type { TestCardAlias } from './test-cards.ts'
import {
  DEFAULT_RETRY_POLICY,
  type DeliveryAttempt,
  type DeliveryMode,
  type DeliveryOrder,
  type PendingDelivery,
  type RetryPolicy,
  WebhookOutbox,
} from './webhooks.ts'

export interface StripeEmulatorOptions {
  /** The only key the API accepts (`Authorization: Bearer …`); random `sk_test_…` by default. */
  secretKey?: string
  /** The endpoint secret webhooks are signed with; random `whsec_…` by default. */
  webhookSecret?: string
  /** Where events are POSTed; none by default (see `setWebhookUrl`). */
  webhookUrl?: string
  /** `auto` (default) sends events as they happen; `manual` holds them for `deliverOutbox`. */
  webhookDelivery?: DeliveryMode
  webhookRetry?: Partial<RetryPolicy>
  /** Time for `created`, expiries and signatures; a Payrail `ManualClock` fits. */
  clock?: Clock
  /** Listen address (default 127.0.0.1 and a free port). */
  host?: string
  port?: number
}

/** The configuration `new Stripe(key, config)` needs to talk to this emulator. */
export interface StripeClientConfig {
  host: string
  port: number
  protocol: 'http'
  maxNetworkRetries: number
}

/** A seeded price may name its product, or get a new one. */
export type NewSeedPrice = Omit<NewPrice, 'product'> & { product?: string }

/**
 * A running Stripe emulator: the account's state, and the switches a test pulls to play
 * the customer (pay or abandon a Checkout Session, pass 3D Secure), to seed history,
 * to misdeliver webhooks and to make the API fail.
 *
 * ```ts
 * const emulator = await startStripeEmulator({ webhookUrl: 'http://127.0.0.1:8080/hook' })
 * const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
 * const session = await stripe.checkout.sessions.create({ … })
 * emulator.completeCheckoutSession(session.id, { paymentMethod: 'pm_card_visa' })
 * await emulator.waitForDeliveries()
 * ```
 */
export class StripeEmulator {
  readonly protocol = 'http' as const
  readonly state: EmulatorState
  readonly router: Router = buildApiRouter()
  readonly idempotency = new IdempotencyStore()
  readonly faults = new FaultInjector()
  readonly requestLog: RequestLogEntry[] = []
  private readonly webhooks: WebhookOutbox
  private address = { host: '127.0.0.1', port: 0 }
  private closeServer: () => Promise<void> = async () => {}

  constructor(
    readonly secretKey: string,
    readonly webhookSecret: string,
    options: StripeEmulatorOptions = {},
  ) {
    this.state = new EmulatorState(options.clock ?? { now: () => new Date() })
    this.webhooks = new WebhookOutbox(
      webhookSecret,
      this.state.clock,
      options.webhookDelivery ?? 'auto',
      {
        ...DEFAULT_RETRY_POLICY,
        ...options.webhookRetry,
      },
    )
    this.webhooks.setEndpoint(options.webhookUrl ?? null)
    this.state.events.onEvent((event, delivery) => this.webhooks.accept(event, delivery))
  }

  /** Called by `startStripeEmulator` once the HTTP server listens. */
  bind(address: { host: string; port: number }, closeServer: () => Promise<void>): void {
    this.address = address
    this.closeServer = closeServer
    this.state.baseUrl = this.url
  }

  get host(): string {
    return this.address.host
  }

  get port(): number {
    return this.address.port
  }

  /** `http://127.0.0.1:PORT`, the base of the API and of the hosted pages. */
  get url(): string {
    return `${this.protocol}://${this.address.host}:${this.address.port}`
  }

  /** `new Stripe(emulator.secretKey, emulator.stripeConfig())`; retries off unless asked. */
  stripeConfig(
    overrides: Partial<Omit<StripeClientConfig, 'host' | 'port' | 'protocol'>> = {},
  ): StripeClientConfig {
    return {
      host: this.host,
      port: this.port,
      protocol: this.protocol,
      maxNetworkRetries: 0,
      ...overrides,
    }
  }

  /** Every API request received, oldest first. */
  get requests(): readonly RequestLogEntry[] {
    return this.requestLog
  }

  // --- The customer's side --------------------------------------------------------------

  /**
   * The customer pays on the hosted page with `paymentMethod` (default `pm_card_visa`).
   * A decline leaves the session open and is returned in `error`.
   */
  completeCheckoutSession(id: string, options: CompleteCheckoutOptions = {}): CheckoutCompletion {
    return completeCheckoutSession(this.state, id, options)
  }

  /** The session expires now (`checkout.session.expired`), as at `expires_at`. */
  expireCheckoutSession(id: string): JsonObject {
    return expireCheckoutSession(this.state, id)
  }

  /** The customer passes (default) or fails 3D Secure on a `requires_action` PaymentIntent. */
  authenticatePaymentIntent(id: string, options: { pass?: boolean } = {}): JsonObject {
    const record = requirePaymentIntent(this.state, id)
    completeAuthentication(this.state, record, options.pass ?? true, AUTOMATIC)
    return renderPaymentIntent(record)
  }

  /**
   * A succeeded refund fails later, as Stripe's to a card account closed since does:
   * `failed` with `failure_reason` (default `expired_or_canceled_card`), the money back on
   * the account, the charge's `amount_refunded` lower; `refund.updated`, then `refund.failed`.
   */
  failRefund(id: string, options: { reason?: RefundFailureReason } = {}): JsonObject {
    return failRefund(this.state, id, options.reason)
  }

  // --- Existing data (no events) -------------------------------------------------------

  seedCustomer(fields: NewCustomer = {}): JsonObject {
    return renderCustomer(insertCustomer(this.state, fields))
  }

  /** A test card saved to the customer, optionally as its default for invoices. */
  seedPaymentMethod(
    customerId: string,
    card: TestCardAlias = 'pm_card_visa',
    options: { makeDefault?: boolean } = {},
  ): JsonObject {
    const customer = requireCustomer(this.state, customerId, 'customer')
    const record = createPaymentMethod(this.state, card)
    record.customer = customer.id
    if (options.makeDefault === true) customer.defaultPaymentMethod = record.id
    return renderPaymentMethod(record)
  }

  seedProduct(fields: NewProduct = {}): JsonObject {
    return renderProduct(insertProduct(this.state, fields))
  }

  seedPrice(fields: NewSeedPrice): JsonObject {
    const product = fields.product ?? insertProduct(this.state, {}).id
    return renderPrice(insertPrice(this.state, { ...fields, product }))
  }

  seedInvoice(fields: NewInvoice): JsonObject {
    return renderInvoice(this.state, insertInvoice(this.state, fields))
  }

  seedSubscription(fields: NewSubscription): JsonObject {
    return renderSubscription(this.state, insertSubscription(this.state, fields))
  }

  seedSubscriptionSchedule(fields: NewSubscriptionSchedule): JsonObject {
    return renderSubscriptionSchedule(this.state, insertSubscriptionSchedule(this.state, fields))
  }

  seedBalanceTransaction(fields: NewBalanceTransaction): JsonObject {
    return renderBalanceTransaction(insertBalanceTransaction(this.state, fields))
  }

  // --- Webhooks ----------------------------------------------------------------------

  setWebhookUrl(url: string | null, options: { enabledEvents?: string[] } = {}): void {
    this.webhooks.setEndpoint(url, options.enabledEvents)
  }

  setWebhookDelivery(mode: DeliveryMode): void {
    this.webhooks.mode = mode
  }

  setWebhookRetry(policy: Partial<RetryPolicy>): void {
    this.webhooks.retry = { ...this.webhooks.retry, ...policy }
  }

  /**
   * Creates an event (listed by `GET /v1/events`) and delivers it: `duplicate` extra
   * copies, after `delayMs`, signed `timestampOffsetSeconds` off. `object` is the payload's
   * `data.object`, or the id of a stored object to send as it is now.
   */
  sendEvent(type: string, object: JsonObject | string, options: DeliveryOptions = {}): JsonObject {
    const data = typeof object === 'string' ? renderById(this.state, object) : object
    if (data === undefined) throw new Error(`No stored object with id ${String(object)}`)
    return renderEvent(this.state.events.emit(type, data, AUTOMATIC, null, options))
  }

  /** Sends what the outbox holds (manual mode), in `order`, each `duplicate` extra times. */
  deliverOutbox(
    options: { order?: DeliveryOrder; duplicate?: number } = {},
  ): Promise<DeliveryAttempt[]> {
    return this.webhooks.deliverQueued(options)
  }

  /** Deliveries held for `deliverOutbox`. */
  get outbox(): readonly PendingDelivery[] {
    return this.webhooks.pending()
  }

  /** Every delivery attempt so far, oldest first. */
  get deliveries(): readonly DeliveryAttempt[] {
    return this.webhooks.attempts
  }

  /** Resolves when no webhook delivery or retry is under way. */
  waitForDeliveries(): Promise<void> {
    return this.webhooks.whenIdle()
  }

  /** The events so far, oldest first, optionally of one type. */
  listEvents(type?: string): JsonObject[] {
    return [...this.state.events.records.values()]
      .filter((event) => type === undefined || event.type === type)
      .sort((a, b) => -newestFirst(a, b))
      .map(renderEvent)
  }

  // --- Faults --------------------------------------------------------------------------

  /** The next `count` matching API requests answer `status` with Stripe's error body. */
  failNext(options: FailOptions): void {
    this.faults.failNext(options)
  }

  /** The next `count` matching API requests get no timely answer (or a reset connection). */
  timeoutNext(options: TimeoutOptions = {}): void {
    this.faults.timeoutNext(options)
  }

  clearFaults(): void {
    this.faults.clear()
  }

  /**
   * Forgets every idempotency key, as Stripe prunes keys once they are at least 24 hours
   * old: the same key sent again then makes a new object.
   */
  forgetIdempotencyKeys(): void {
    this.idempotency.clear()
  }

  /** Forgets every object, event, idempotency key, fault, held delivery and logged request. */
  reset(): void {
    this.state.clear()
    this.idempotency.clear()
    this.faults.clear()
    this.webhooks.clear()
    this.requestLog.length = 0
  }

  /** Stops the server (open connections included) and any webhook delivery. */
  async close(): Promise<void> {
    this.webhooks.close()
    await this.closeServer()
  }
}
