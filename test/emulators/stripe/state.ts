import { EventLog } from './events.ts'
import type { BalanceTransactionRecord } from './resources/balance-transactions.ts'
import type { ChargeRecord } from './resources/charges.ts'
import type { CheckoutSessionRecord } from './resources/checkout-sessions.ts'
import type { CustomerRecord } from './resources/customers.ts'
import type { InvoiceRecord } from './resources/invoices.ts'
import type { PaymentIntentRecord } from './resources/payment-intents.ts'
import type { PaymentMethodRecord } from './resources/payment-methods.ts'
import type { PriceRecord } from './resources/prices.ts'
import type { ProductRecord } from './resources/products.ts'
import type { RefundRecord } from './resources/refunds.ts'
import type { SubscriptionScheduleRecord } from './resources/subscription-schedules.ts'
import type { SubscriptionRecord } from './resources/subscriptions.ts'

/** The API version stripe-node 23.1.0 pins; events carry it as the account's default. */
export const DEFAULT_API_VERSION = '2026-10-28.endive'

/** Where "now" comes from; Payrail's `ManualClock` fits, so both can move time together. */
export interface Clock {
  now(): Date
}

/** What every stored object has: lists sort by `created`, then by `seq` (insertion order). */
export interface StoredRecord {
  id: string
  created: number
  seq: number
}

/** The emulated Stripe account: every object, by id, in memory. */
export class EmulatorState {
  readonly customers = new Map<string, CustomerRecord>()
  readonly paymentMethods = new Map<string, PaymentMethodRecord>()
  readonly paymentIntents = new Map<string, PaymentIntentRecord>()
  readonly charges = new Map<string, ChargeRecord>()
  readonly refunds = new Map<string, RefundRecord>()
  readonly checkoutSessions = new Map<string, CheckoutSessionRecord>()
  readonly invoices = new Map<string, InvoiceRecord>()
  readonly subscriptions = new Map<string, SubscriptionRecord>()
  readonly subscriptionSchedules = new Map<string, SubscriptionScheduleRecord>()
  readonly products = new Map<string, ProductRecord>()
  readonly prices = new Map<string, PriceRecord>()
  readonly balanceTransactions = new Map<string, BalanceTransactionRecord>()
  readonly events: EventLog
  /** The emulator's own origin (`http://127.0.0.1:PORT`), for hosted-page URLs. */
  baseUrl = ''
  private sequence = 0

  constructor(readonly clock: Clock) {
    this.events = new EventLog(
      { nowSeconds: () => this.nowSeconds(), nextSeq: () => this.nextSeq() },
      DEFAULT_API_VERSION,
    )
  }

  /** Unix seconds, Stripe's unit for every timestamp. */
  nowSeconds(): number {
    return Math.floor(this.clock.now().getTime() / 1000)
  }

  nextSeq(): number {
    this.sequence += 1
    return this.sequence
  }

  /** Forgets every object and event. */
  clear(): void {
    for (const collection of [
      this.customers,
      this.paymentMethods,
      this.paymentIntents,
      this.charges,
      this.refunds,
      this.checkoutSessions,
      this.invoices,
      this.subscriptions,
      this.subscriptionSchedules,
      this.products,
      this.prices,
      this.balanceTransactions,
    ]) {
      collection.clear()
    }
    this.events.clear()
  }
}
