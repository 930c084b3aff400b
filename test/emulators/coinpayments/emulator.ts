import { ApiFaults, type FailOptions, type TimeoutOptions } from '../shared/api-faults.ts'
import { convertAmount, DEFAULT_USD_RATES, scaleAmount } from './amounts.ts'
import type { CoinpaymentsApiContext, NewCoinpaymentsTransaction, TransactionUrls } from './api.ts'
import { type Clock, SYSTEM_CLOCK } from './clock.ts'
import { newAddress, newTxnId, randomHex } from './ids.ts'
import { ipnForm } from './ipn.ts'
import type { JsonObject } from './json.ts'
import {
  DEFAULT_RETRY_POLICY,
  type DeliveryAttempt,
  NotificationOutbox,
  type RetryPolicy,
} from './notifier.ts'
import { coinpaymentsHmac } from './signing.ts'
import {
  COINPAYMENTS_STATUSES,
  CONFIRMS_NEEDED,
  type CoinpaymentsStatus,
  type CoinpaymentsTransactionRecord,
  renderTxInfo,
  TRANSACTION_TIMEOUT_SECONDS,
} from './transaction.ts'

export interface CoinpaymentsEmulatorOptions {
  /** The API key pair (`key=` in the body, and the HMAC key); random by default. */
  publicKey?: string
  privateKey?: string
  /** The merchant id sent in every IPN's `merchant`; random by default. */
  merchantId?: string
  /** The IPN secret that signs IPNs; random by default. */
  ipnSecret?: string
  /** The account's IPN URL, used when a transaction has no `ipn_url`. */
  ipnUrl?: string
  /** USD value of one unit of each currency, for `amount2` (see `DEFAULT_USD_RATES`). */
  usdRates?: Readonly<Record<string, number>>
  /** Time for `time_created` / `time_expires`; a Payrail `ManualClock` fits. */
  clock?: Clock
  notificationRetry?: Partial<RetryPolicy>
  /** Listen address (default 127.0.0.1 and a free port). */
  host?: string
  port?: number
}

export interface ReceiveOptions {
  /** Share of `amount2` the buyer sends (default 1); adds to what was received before. */
  fraction?: number
  /** Confirmations the coins have so far (default 0). */
  confirms?: number
}

export interface ConfirmOptions {
  /** `nightly`: status 2 (queued for nightly payout) instead of 100. */
  payout?: 'immediate' | 'nightly'
}

/**
 * A running CoinPayments (legacy API) emulator: the merchant's transactions, and the
 * switches a test pulls to play the buyer and the blockchain and to misdeliver IPNs.
 *
 * ```ts
 * const coinpayments = await startCoinpaymentsEmulator({ ipnSecret: 'secret' })
 * const body = new URLSearchParams({ version: '1', key: coinpayments.publicKey,
 *   cmd: 'create_transaction', format: 'json', amount: '10', currency1: 'USD',
 *   currency2: 'BTC', buyer_email: 'a@example.com', ipn_url: '…' }).toString()
 * await fetch(coinpayments.apiUrl, { method: 'POST', body, headers: {
 *   'content-type': 'application/x-www-form-urlencoded',
 *   hmac: coinpaymentsHmac(body, coinpayments.privateKey) } })
 * coinpayments.receive(txnId); coinpayments.confirm(txnId)
 * await coinpayments.waitForNotifications()
 * ```
 */
export class CoinpaymentsEmulator implements CoinpaymentsApiContext {
  readonly faults = new ApiFaults()
  readonly clock: Clock
  readonly publicKey: string
  readonly privateKey: string
  readonly merchantId: string
  readonly ipnSecret: string
  ipnUrl: string | null
  private readonly usdRates: Readonly<Record<string, number>>
  private readonly transactions = new Map<string, CoinpaymentsTransactionRecord>()
  private readonly outbox: NotificationOutbox
  private badSignaturesLeft = 0
  private wrongMerchantsLeft = 0
  private notificationSeq = 0
  private address = { host: '127.0.0.1', port: 0 }
  private closeServer: () => Promise<void> = async () => {}

  constructor(options: CoinpaymentsEmulatorOptions = {}) {
    this.publicKey = options.publicKey ?? randomHex(32)
    this.privateKey = options.privateKey ?? randomHex(32)
    this.merchantId = options.merchantId ?? randomHex(16)
    this.ipnSecret = options.ipnSecret ?? randomHex(16)
    this.ipnUrl = options.ipnUrl ?? null
    this.usdRates = options.usdRates ?? DEFAULT_USD_RATES
    this.clock = options.clock ?? SYSTEM_CLOCK
    this.outbox = new NotificationOutbox(
      { ...DEFAULT_RETRY_POLICY, ...options.notificationRetry },
      this.clock,
    )
  }

  /** Called by `startCoinpaymentsEmulator` once the HTTP server listens. */
  bind(address: { host: string; port: number }, closeServer: () => Promise<void>): void {
    this.address = address
    this.closeServer = closeServer
  }

  /** `http://127.0.0.1:PORT`, in place of `https://www.coinpayments.net`. */
  get url(): string {
    return `http://${this.address.host}:${this.address.port}`
  }

  /** `http://127.0.0.1:PORT/api.php`, the one API endpoint. */
  get apiUrl(): string {
    return `${this.url}/api.php`
  }

  // --- Used by the API routes ----------------------------------------------------------

  createTransaction(fields: NewCoinpaymentsTransaction): CoinpaymentsTransactionRecord | string {
    const amount2 = convertAmount(fields.amount1, fields.currency1, fields.currency2, this.usdRates)
    if (amount2 === null) return 'Invalid or unsupported currency'
    const now = this.nowSeconds()
    const record: CoinpaymentsTransactionRecord = {
      ...fields,
      txnId: newTxnId(),
      status: COINPAYMENTS_STATUSES.waiting,
      amount2,
      received: 0n,
      receivedConfirms: 0,
      address: newAddress(),
      timeCreated: now,
      timeExpires: now + TRANSACTION_TIMEOUT_SECONDS,
      pageKey: randomHex(8),
    }
    this.transactions.set(record.txnId, record)
    return record
  }

  findTransaction(txnId: string): CoinpaymentsTransactionRecord | undefined {
    return this.transactions.get(txnId)
  }

  /** The transactions made with this `custom` field, oldest first. */
  transactionsWithCustom(custom: string): CoinpaymentsTransactionRecord[] {
    return [...this.transactions.values()].filter((record) => record.custom === custom)
  }

  transactionUrls(record: CoinpaymentsTransactionRecord): TransactionUrls {
    const query = `id=${record.txnId}&key=${record.pageKey}`
    return {
      checkout_url: `${this.url}/index.php?cmd=checkout&${query}`,
      status_url: `${this.url}/index.php?cmd=status&${query}`,
      qrcode_url: `${this.url}/qrgen.php?${query}`,
    }
  }

  // --- The buyer's and the blockchain's side -------------------------------------------

  /** The transaction as `get_tx_info` shows it now. */
  getTransaction(txnId: string): JsonObject {
    return renderTxInfo(this.require(txnId))
  }

  /**
   * Coins arrive (status 1). `received_amount` is `fraction` of `amount2`, so a short or
   * excess payment shows only there, as in CoinPayments' IPNs.
   */
  receive(txnId: string, options: ReceiveOptions = {}): JsonObject {
    const record = this.requireStatus(txnId, [0, 1], 'receive coins for')
    const fraction = options.fraction ?? 1
    if (!(fraction > 0)) throw new Error('fraction must be above 0')
    record.received += scaleAmount(record.amount2, fraction)
    record.receivedConfirms = options.confirms ?? 0
    record.status = COINPAYMENTS_STATUSES.received
    return this.changed(record)
  }

  /** The coins confirm: status 100 (complete), or 2 with `payout: 'nightly'`. */
  confirm(txnId: string, options: ConfirmOptions = {}): JsonObject {
    const nightly = options.payout === 'nightly'
    const record = this.requireStatus(txnId, nightly ? [0, 1] : [0, 1, 2], 'confirm')
    if (record.received === 0n) record.received = record.amount2
    record.receivedConfirms = Math.max(record.receivedConfirms, CONFIRMS_NEEDED)
    record.status = nightly ? COINPAYMENTS_STATUSES.queuedForPayout : COINPAYMENTS_STATUSES.complete
    return this.changed(record)
  }

  /** The transaction times out or is cancelled (status -1). */
  cancel(txnId: string): JsonObject {
    const record = this.requireStatus(txnId, [0, 1], 'cancel')
    record.status = COINPAYMENTS_STATUSES.cancelled
    return this.changed(record)
  }

  // --- IPNs ----------------------------------------------------------------------------

  /** The next `count` IPNs are signed with a wrong secret. */
  badSignatureNext(count = 1): void {
    this.badSignaturesLeft += count
  }

  /** The next `count` IPNs carry another merchant id (correctly signed). */
  wrongMerchantNext(count = 1): void {
    this.wrongMerchantsLeft += count
  }

  /** Each of the next `count` IPNs is delivered twice (same `ipn_id`, same bytes). */
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

  /** The next `count` API calls answer `status` (with a JSON error body). */
  failNext(options: FailOptions): void {
    this.faults.failNext(options)
  }

  /** The next `count` API calls get no answer; the connection is reset after `ms`. */
  timeoutNext(options: TimeoutOptions = {}): void {
    this.faults.timeoutNext(options)
  }

  clearFaults(): void {
    this.faults.clear()
  }

  /** Forgets every transaction, fault, IPN switch, held IPN and delivery attempt. */
  reset(): void {
    this.transactions.clear()
    this.faults.clear()
    this.outbox.clear()
    this.badSignaturesLeft = 0
    this.wrongMerchantsLeft = 0
  }

  /** Stops the server (open connections included) and any IPN delivery. */
  async close(): Promise<void> {
    this.outbox.close()
    await this.closeServer()
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now().getTime() / 1000)
  }

  private changed(record: CoinpaymentsTransactionRecord): JsonObject {
    const url = record.ipnUrl ?? this.ipnUrl
    if (url !== null) {
      this.notificationSeq += 1
      let merchant = this.merchantId
      if (this.wrongMerchantsLeft > 0) {
        this.wrongMerchantsLeft -= 1
        merchant = `not-${this.merchantId}`
      }
      const body = ipnForm(record, randomHex(16), merchant)
      let secret = this.ipnSecret
      if (this.badSignaturesLeft > 0) {
        this.badSignaturesLeft -= 1
        secret = `wrong-${this.ipnSecret}`
      }
      this.outbox.send({
        id: `ipn_${this.notificationSeq}`,
        txnId: record.txnId,
        url,
        body,
        hmac: coinpaymentsHmac(body, secret),
      })
    }
    return renderTxInfo(record)
  }

  private require(txnId: string): CoinpaymentsTransactionRecord {
    const record = this.transactions.get(txnId)
    if (record === undefined) throw new Error(`No CoinPayments transaction ${txnId}`)
    return record
  }

  private requireStatus(
    txnId: string,
    from: readonly CoinpaymentsStatus[],
    action: string,
  ): CoinpaymentsTransactionRecord {
    const record = this.require(txnId)
    if (!from.includes(record.status)) {
      throw new Error(`Cannot ${action} transaction ${txnId}: its status is ${record.status}`)
    }
    return record
  }
}
