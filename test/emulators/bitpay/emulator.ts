import { ApiFaults, type FailOptions, type TimeoutOptions } from '../shared/api-faults.ts'
import type { BitpayApiContext, NewBitpayInvoice } from './api.ts'
import { type Clock, SYSTEM_CLOCK } from './clock.ts'
import { newInvoiceId, randomBase58 } from './ids.ts'
import {
  type BitpayInvoiceRecord,
  type BitpayInvoiceStatus,
  INVOICE_LIFETIME_MS,
  renderInvoice,
  satoshisFor,
  TRANSACTION_CURRENCY,
} from './invoice.ts'
import { type BitpayIpnEventKind, ipnBody } from './ipn.ts'
import type { JsonObject } from './json.ts'
import {
  DEFAULT_RETRY_POLICY,
  type DeliveryAttempt,
  NotificationOutbox,
  type RetryPolicy,
} from './notifier.ts'

export interface BitpayEmulatorOptions {
  /** The merchant (`pos` facade) token the API accepts; random by default. */
  token?: string
  /** Time for `invoiceTime`, `expirationTime` and `currentTime`; a Payrail `ManualClock` fits. */
  clock?: Clock
  /** Fiat units per BTC used to price every invoice (default 50 000). */
  btcRate?: number
  notificationRetry?: Partial<RetryPolicy>
  /** Listen address (default 127.0.0.1 and a free port). */
  host?: string
  port?: number
}

export interface PayOptions {
  /**
   * Share of the amount due the buyer sends (default 1). Below 1 the invoice stays `new` with
   * `exceptionStatus: 'paidPartial'` (a later `pay` can top it up); above 1 it is `paid` with
   * `paidOver`.
   */
  fraction?: number
}

/** The answer a receiver gave to a forged IPN. */
export interface ForgedIpnResult {
  status: number
  body: string
}

/**
 * A running BitPay emulator: the merchant's invoices, and the switches a test pulls to play
 * the buyer and the blockchain (pay, confirm, expire…) and to misdeliver IPNs or fail the API.
 *
 * ```ts
 * const bitpay = await startBitpayEmulator()
 * const created = await fetch(`${bitpay.url}/invoices`, { method: 'POST', headers: {
 *   'content-type': 'application/json', 'x-accept-version': '2.0.0' },
 *   body: JSON.stringify({ token: bitpay.token, price: 10, currency: 'USD',
 *     notificationURL: 'http://127.0.0.1:8080/v1/webhooks/bitpay/…' }) })
 * bitpay.pay(id); bitpay.confirm(id)
 * await bitpay.waitForNotifications()
 * ```
 */
export class BitpayEmulator implements BitpayApiContext {
  readonly faults = new ApiFaults()
  readonly clock: Clock
  private readonly invoices = new Map<string, BitpayInvoiceRecord>()
  private readonly outbox: NotificationOutbox
  private readonly btcRate: number
  private notificationSeq = 0
  private address = { host: '127.0.0.1', port: 0 }
  private closeServer: () => Promise<void> = async () => {}

  constructor(
    readonly token: string,
    options: BitpayEmulatorOptions = {},
  ) {
    this.clock = options.clock ?? SYSTEM_CLOCK
    this.btcRate = options.btcRate ?? 50_000
    this.outbox = new NotificationOutbox(
      { ...DEFAULT_RETRY_POLICY, ...options.notificationRetry },
      this.clock,
    )
  }

  /** Called by `startBitpayEmulator` once the HTTP server listens. */
  bind(address: { host: string; port: number }, closeServer: () => Promise<void>): void {
    this.address = address
    this.closeServer = closeServer
  }

  /** `http://127.0.0.1:PORT`, the API base (in place of `https://bitpay.com`). */
  get url(): string {
    return `http://${this.address.host}:${this.address.port}`
  }

  get merchantToken(): string {
    return this.token
  }

  nowMs(): number {
    return this.clock.now().getTime()
  }

  // --- Used by the API routes ----------------------------------------------------------

  createInvoice(fields: NewBitpayInvoice): BitpayInvoiceRecord {
    const id = newInvoiceId()
    const now = this.nowMs()
    const rate = fields.currency === TRANSACTION_CURRENCY ? 1 : this.btcRate
    const record: BitpayInvoiceRecord = {
      ...fields,
      id,
      token: randomBase58(32),
      status: 'new',
      exceptionStatus: false,
      invoiceTime: now,
      expirationTime: now + INVOICE_LIFETIME_MS,
      rate,
      amountDue: satoshisFor(fields.price, rate),
      amountPaid: 0,
      transactionCurrency: null,
      url: `${this.url}/invoice?id=${id}`,
    }
    this.invoices.set(id, record)
    return record
  }

  findInvoice(id: string): BitpayInvoiceRecord | undefined {
    return this.invoices.get(id)
  }

  // --- The buyer's and the blockchain's side -------------------------------------------

  /** The invoice as `GET /invoices/:id` shows it now. */
  getInvoice(id: string): JsonObject {
    return renderInvoice(this.require(id), this.nowMs())
  }

  /** The buyer broadcasts a payment (`paid`, or `new` + `paidPartial` when short). */
  pay(id: string, options: PayOptions = {}): JsonObject {
    const record = this.requireStatus(id, ['new'], 'pay')
    const fraction = options.fraction ?? 1
    if (!(fraction > 0)) throw new Error('fraction must be above 0')
    record.amountPaid += Math.round(record.amountDue * fraction)
    record.transactionCurrency = TRANSACTION_CURRENCY
    if (record.amountPaid < record.amountDue) {
      record.exceptionStatus = 'paidPartial'
      return this.changed(record, 'paidPartial')
    }
    record.status = 'paid'
    record.exceptionStatus = record.amountPaid > record.amountDue ? 'paidOver' : false
    return this.changed(record, 'paid')
  }

  /** The payment reaches the confirmations BitPay wants (`confirmed`: safe to fulfil). */
  confirm(id: string): JsonObject {
    return this.transition(id, ['paid'], 'confirmed', 'confirmed')
  }

  /** BitPay credits the merchant (`complete`). */
  complete(id: string): JsonObject {
    return this.transition(id, ['paid', 'confirmed'], 'complete', 'complete')
  }

  /** The 15 minutes pass without a full payment (`expired`; `paidPartial` is kept). */
  expire(id: string): JsonObject {
    return this.transition(id, ['new'], 'expired', 'expired')
  }

  /** The payment fails to confirm in time (`invalid`). */
  invalidate(id: string): JsonObject {
    return this.transition(id, ['paid'], 'invalid', 'invalid')
  }

  /** BitPay declines the paid invoice (`declined`). */
  decline(id: string): JsonObject {
    return this.transition(id, ['paid', 'confirmed'], 'declined', 'declined')
  }

  /** Sends the invoice's current state again, as BitPay's "resend IPN" does (1012). */
  resendNotification(id: string): JsonObject {
    return this.changed(this.require(id), 'manuallyNotified')
  }

  // --- Notifications -----------------------------------------------------------------

  /**
   * POSTs `body` to `notificationURL` once, as an attacker could: BitPay does not sign IPNs,
   * so a receiver must re-fetch the invoice instead of trusting what it is told.
   */
  async sendForgedIpn(
    notificationURL: string,
    body: JsonObject | string,
  ): Promise<ForgedIpnResult> {
    const response = await fetch(notificationURL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    })
    return { status: response.status, body: await response.text() }
  }

  /** Each of the next `count` IPNs is delivered twice. */
  duplicateNext(count = 1): void {
    this.outbox.duplicateNext(count)
  }

  /** The next `count` IPNs are held back, then delivered newest first. */
  deliverOutOfOrder(count = 2): void {
    this.outbox.holdAndReverse(count)
  }

  setNotificationRetry(policy: Partial<RetryPolicy>): void {
    this.outbox.retry = { ...this.outbox.retry, ...policy }
  }

  /** Every IPN delivery attempt so far, oldest first. */
  get deliveries(): readonly DeliveryAttempt[] {
    return this.outbox.attempts
  }

  /** Resolves when no IPN delivery or retry is under way. */
  waitForNotifications(): Promise<void> {
    return this.outbox.whenIdle()
  }

  // --- Faults --------------------------------------------------------------------------

  /** The next `count` API requests answer `status` with BitPay's error body. */
  failNext(options: FailOptions): void {
    this.faults.failNext(options)
  }

  /** The next `count` API requests get no answer; the connection is reset after `ms`. */
  timeoutNext(options: TimeoutOptions = {}): void {
    this.faults.timeoutNext(options)
  }

  clearFaults(): void {
    this.faults.clear()
  }

  /** Forgets every invoice, fault, held IPN and delivery attempt. */
  reset(): void {
    this.invoices.clear()
    this.faults.clear()
    this.outbox.clear()
  }

  /** Stops the server (open connections included) and any IPN delivery. */
  async close(): Promise<void> {
    this.outbox.close()
    await this.closeServer()
  }

  private transition(
    id: string,
    from: readonly BitpayInvoiceStatus[],
    to: BitpayInvoiceStatus,
    kind: BitpayIpnEventKind,
  ): JsonObject {
    const record = this.requireStatus(id, from, to)
    record.status = to
    return this.changed(record, kind)
  }

  private changed(record: BitpayInvoiceRecord, kind: BitpayIpnEventKind): JsonObject {
    const now = this.nowMs()
    if (record.notificationURL !== null) {
      this.notificationSeq += 1
      this.outbox.send({
        id: `ipn_${this.notificationSeq}`,
        invoiceId: record.id,
        url: record.notificationURL,
        body: JSON.stringify(ipnBody(record, kind, now)),
      })
    }
    return renderInvoice(record, now)
  }

  private require(id: string): BitpayInvoiceRecord {
    const record = this.invoices.get(id)
    if (record === undefined) throw new Error(`No BitPay invoice ${id}`)
    return record
  }

  private requireStatus(
    id: string,
    from: readonly BitpayInvoiceStatus[],
    action: string,
  ): BitpayInvoiceRecord {
    const record = this.require(id)
    if (!from.includes(record.status)) {
      throw new Error(`Cannot ${action} invoice ${id}: it is ${record.status}`)
    }
    return record
  }
}
