import type { Clock } from '../core/clock.ts'
import type { PaymentStatus } from '../core/payment-state.ts'
import type { Scope } from '../core/principal.ts'
import type { Db } from '../db/client.ts'
import type { Payment, PaymentMethod, PaymentMethodType, Refund } from '../db/database.ts'
import type { Loopback } from '../http/loopback.ts'
import type { JobQueue } from '../jobs/queue.ts'

export const GATEWAY_NAMES = [
  'sandbox',
  'platform',
  'offline',
  'external',
  'stripe',
  'bitpay',
  'coinpayments',
  'checkout',
] as const
export type GatewayName = (typeof GATEWAY_NAMES)[number]

/** What a gateway can do; a route that needs a missing capability answers 422 `not_supported`. */
export interface GatewayCapabilities {
  /** A page the customer is sent to (`payment_url`). */
  hostedCheckout: boolean
  /** Charging a saved card without the customer present. */
  savedMethodCharge: boolean
  refund: boolean
  /** Asking the provider for a payment's current status. */
  statusSync: boolean
  /** Signed (or re-fetched) notifications from the provider. */
  webhookVerification: boolean
  /** Which payment method types it takes. */
  methodTypes: readonly PaymentMethodType[]
  /** Money moves inside Payrail's own transaction (balance, offline), not at a provider. */
  internal: boolean
  /**
   * `cancel` can withdraw an open page (a hosted checkout, a crypto page) so that it can no
   * longer be paid: Stripe expires a Checkout Session, the sandbox closes its session.
   * Checkout.com cannot withdraw a hosted payment page; BitPay, CoinPayments and external
   * systems have no withdrawal.
   */
  withdrawsPages: boolean
  /**
   * The provider may report money for a payment it reported failed, and says so: BitPay
   * completes an `invalid` invoice whose transaction confirms late, CoinPayments reopens a
   * timed-out transaction. Such money reopens the FAILED payment to be recorded; from any
   * other gateway, `FAILED → SUCCEEDED` is refused as the state machine says.
   */
  paysAfterFailure: boolean
}

/** Everything a gateway call may use: the tenant environment, its connection, where Payrail is reachable. */
export interface GatewayContext {
  scope: Scope
  credentials: Record<string, string> | null
  settings: Record<string, string>
  publicUrl: string
  clock: Clock
  db: Db
  jobs: JobQueue
  loopback: Loopback
}

/** The payment as a gateway sees it; amounts in minor units. */
export interface GatewayPaymentRequest {
  payment: Payment
  customer: {
    id: string
    name: string
    email: string | null
    gatewayCustomerIds: Record<string, string>
  }
  description: string
  /**
   * For a page (a hosted checkout, a crypto invoice; not an off-session charge, made at once):
   * when the payment's invoices stop taking money, the earliest end of their payment windows,
   * or null when none has one. The page must take no money after it: a gateway whose provider
   * lets a page's lifetime be set has it expire by then (the sandbox's session, Stripe's
   * `expires_at`); one whose page would be refused by its provider for lasting too short a
   * time refuses to open it (422).
   */
  payBy: Date | null
  /**
   * The idempotency key for a charge of this payment at the provider. It stays the
   * same across retries after an error or timeout (the provider replays what it did,
   * so money is never taken twice) and changes only after a decline, a definitive
   * answer that a new attempt must not replay.
   */
  chargeKey: string
}

export const DECLINE_CODES = [
  'card_declined',
  'insufficient_funds',
  'expired_card',
  'authentication_required',
  'no_default_payment_method',
] as const
export type DeclineCode = (typeof DECLINE_CODES)[number]

/**
 * `ok: false`: the provider took the money already, or cannot withdraw what it opened
 * (`reason` says which); the payment is then not cancelled, and the provider's report
 * settles it.
 */
export type CancelResult = { ok: true } | { ok: false; reason: string }

/** A decline is data, not an exception: Payrail records it and answers 402. */
export interface Decline {
  code: DeclineCode
  message: string
  declineCode?: string | undefined
}

export interface GatewayFailure {
  code: string
  message: string
  /** Worth retrying with the same idempotency key (timeouts, 5xx). */
  retryable: boolean
}

export type CheckoutResult =
  | {
      ok: true
      url: string | null
      trackingId: string
      gatewayPaymentId: string | null
      /**
       * What the page asks, when the provider may answer with a page it opened earlier for
       * the payment on other terms (the sandbox keeps one session per payment); otherwise
       * the page asks the request's amount.
       */
      amount?: bigint | undefined
      /** The customer's id at the provider, when the gateway created or used one (stored on the customer). */
      gatewayCustomerId?: string | undefined
    }
  | { ok: false; failure: GatewayFailure }

export interface CardDetails {
  brand: string | null
  last4: string | null
  expMonth: number | null
  expYear: number | null
  gatewayPaymentMethodId: string
}

export type ChargeResult =
  | {
      outcome: 'succeeded'
      gatewayPaymentId: string
      trackingId: string
      /** What was taken, when less than the payment's amount (a partial capture). */
      amountReceived?: bigint | undefined
      card?: CardDetails | undefined
      gatewayCustomerId?: string | undefined
    }
  | { outcome: 'processing'; gatewayPaymentId: string; trackingId: string }
  /** Authorized: the funds are held and captured later (the provider reports the capture). */
  | { outcome: 'reserved'; gatewayPaymentId: string; trackingId: string; amountReserved: bigint }
  | {
      outcome: 'declined'
      gatewayPaymentId: string | null
      trackingId: string | null
      decline: Decline
    }
  | { outcome: 'error'; failure: GatewayFailure }

/**
 * What the provider holds of a charge whose answer was lost: the charge as it stands
 * now, `not_found` when the provider has none (the call never reached it), or `error`
 * when the provider could not be asked.
 */
export type ChargeLookup = ChargeResult | { outcome: 'not_found' }

/** Which charge to look for: the payment's, made since `since`, other than those already answered. */
export interface ChargeQuery {
  request: GatewayPaymentRequest
  /** When the charge's key was first sent (its payment's move to PROCESSING). */
  since: Date
  /** The provider's ids of the payment's earlier charges, already answered (declines). */
  answered: readonly string[]
}

export type RefundResult =
  | { status: 'succeeded' | 'pending'; gatewayRefundId: string }
  | { status: 'failed'; failure: GatewayFailure }

/**
 * Whether a refund is asked for again rather than for the first time (which follows its
 * creation at once): its first answer was lost (its note says so), or it is a minute old (the
 * job asks after a process stopped before any answer). The provider may have made it, and
 * may have forgotten the idempotency key (a day at Stripe and Checkout.com): it is looked
 * for there before it is asked for.
 */
export function isAskedAgain(refund: Refund, now: Date): boolean {
  return refund.failure_message !== null || now.getTime() - refund.created_at.getTime() > 60_000
}

/**
 * What a verified notification says should happen to a payment. `status` is the
 * state it reports; the state machine decides whether that is a move, a repeat or
 * refused. An attempt without a status change (a declined card on a hosted page
 * that stays open) carries only `attempt`.
 */
export interface PaymentUpdate {
  status?: PaymentStatus | undefined
  /** Money actually received when it differs from the payment amount (crypto under/over payment). */
  amountReceived?: bigint | undefined
  /** The share of the payment received, when the provider counts in another unit (coins paid of coins due). */
  receivedShare?: { paid: bigint; due: bigint } | undefined
  /**
   * The currency of the amounts the report carries (`amountReceived`, `refund.amount`), in
   * the provider's words: a report in another currency than the payment's is ignored and
   * logged, never booked as the payment's.
   */
  currency?: string | undefined
  /** The notification applies only if the payment has this currency and decimal amount (else it is ignored). */
  mustMatch?: { currency: string; amount: string } | undefined
  gatewayPaymentId?: string | undefined
  /**
   * The provider's object the payment tracks (`gateway_tracking_id`), for a payment that
   * tracks none yet: a sandbox charge reported by its webhook before its call answered.
   */
  trackingId?: string | undefined
  card?: CardDetails | undefined
  error?: { code: string; message: string } | undefined
  /**
   * A FAILED report of a card declined on a hosted page the provider keeps open for another
   * try (Stripe Checkout): for a PAYMENT_LINK it is an attempt, not the payment's end.
   */
  pageStaysOpen?: boolean | undefined
  attempt?: { status: string; errorCode?: string | null; errorMessage?: string | null } | undefined
  refund?:
    | {
        /** Payrail's refund id when the provider echoes it back (refund metadata). */
        refundId?: string | undefined
        /**
         * The provider echoes none of Payrail's ids on its refunds (Checkout.com): a report
         * that comes before the refund call's answer may be matched by amount. A provider
         * that does echo them (Stripe's metadata) reports a refund without one only when
         * Payrail did not make it (its dashboard), and that is never matched to Payrail's.
         */
        matchByAmount?: boolean | undefined
        gatewayRefundId: string
        status: 'succeeded' | 'failed'
        amount: bigint
        /** Why a failed refund failed, as the provider's code (Stripe's `failure_reason`). */
        failureCode?: string | undefined
        /** The same, in a sentence for the merchant. */
        failureMessage?: string | undefined
        /** The provider's reason, kept on a refund Payrail did not make (its dashboard's). */
        reason?: string | undefined
      }
    | undefined
}

/** A provider's billing object to mirror locally (Stripe Billing sync), rather than a payment update. */
export interface BillingObject {
  objectType:
    | 'invoice'
    | 'subscription'
    | 'subscription_schedule'
    | 'product'
    | 'price'
    | 'balance_transaction'
  object: { id: string; created?: number | null | undefined }
  /**
   * When the provider made the event that carries it (Stripe's `created`, in seconds);
   * undefined for an object fetched from the provider now (a backfill).
   */
  seenAt?: number | undefined
}

/** One provider event, mapped: which payment it is about and what it reports. */
export interface NormalizedEvent {
  eventId: string
  type: string
  target: {
    paymentId?: string | undefined
    trackingId?: string | undefined
    /**
     * `trackingId` names the very object Payrail tracks on the payment (its
     * `gateway_tracking_id`: a BitPay invoice). A report naming another one is about an object
     * made for the payment whose answer was lost before a retry made the one tracked now:
     * its failure or expiry does not end the payment (money it reports still counts).
     */
    trackedObject?: boolean | undefined
  }
  update: PaymentUpdate
  billingObject?: BillingObject | undefined
  payload: unknown
}

export type WebhookParse =
  | { ok: true; events: NormalizedEvent[] }
  | { ok: false; status: 400 | 401 | 404 | 502; reason: string }

export interface RawWebhook {
  body: Buffer
  headers: Record<string, string | string[] | undefined>
}

/**
 * A payment rail. Gateways map between Payrail's payment and the provider's
 * objects; they never touch Payrail's tables (the sandbox keeps its own
 * provider-side records, as a real provider would).
 *
 * @example
 * const result = await gateway.createCheckout?.(ctx, { payment, customer, description: 'Invoice INV-000042' })
 * if (result?.ok) console.log(result.url)
 */
export interface Gateway {
  readonly name: GatewayName
  readonly capabilities: GatewayCapabilities
  createCheckout?(ctx: GatewayContext, request: GatewayPaymentRequest): Promise<CheckoutResult>
  chargeSavedMethod?(
    ctx: GatewayContext,
    request: GatewayPaymentRequest,
    method: PaymentMethod,
  ): Promise<ChargeResult>
  /**
   * Looks up, at the provider, a saved-card charge whose answer was lost, once the
   * provider may have forgotten its idempotency key (`statusSync`): the charge made
   * since `since` whose metadata names the payment.
   */
  findCharge?(ctx: GatewayContext, query: ChargeQuery): Promise<ChargeLookup>
  /** Starts a payment the provider completes later and reports by webhook (external systems, crypto). */
  startAsync?(ctx: GatewayContext, request: GatewayPaymentRequest): Promise<CheckoutResult>
  /**
   * `createCheckout` (a PAYMENT_LINK) or `startAsync` (any other type) for a gateway whose
   * provider side lives in Payrail's own database (the sandbox), run in the transaction
   * `trx` that writes the payment: no call to another system comes between the payment's
   * commit and its page, so the payment is written once, already PENDING, in one commit.
   * A gateway that calls a provider must not have it (no network call holds a transaction open).
   * Its answer's `gatewayCustomerId` is not remembered (the sandbox keeps no customers).
   */
  startInTransaction?(
    trx: Db,
    ctx: GatewayContext,
    request: GatewayPaymentRequest,
  ): Promise<CheckoutResult>
  refund?(ctx: GatewayContext, payment: Payment, refund: Refund): Promise<RefundResult>
  /**
   * Throws a 400 for an amount the provider cannot take in the currency (Stripe's KWD in
   * tens of fils), before anything is written for it.
   */
  checkAmount?(amount: bigint, currency: string): void
  /**
   * Throws a 422 for a page that its provider could not keep from taking money after `payBy`
   * (`GatewayPaymentRequest.payBy`; Stripe's sessions last at least 30 minutes), before
   * anything is written for it.
   */
  checkPayBy?(payBy: Date | null, now: Date): void
  /**
   * Makes a saved method the customer's default at the provider too (Stripe's
   * `invoice_settings.default_payment_method`, which Stripe Billing charges). Called by
   * the `sync_default_payment_method` job with Payrail's default as it stands then.
   * `refused`: the provider answered that it never will (the customer or the card is gone
   * there); a failure that may pass throws, and the job is tried again.
   */
  makeDefaultMethod?(
    ctx: GatewayContext,
    gatewayCustomerId: string,
    gatewayPaymentMethodId: string,
  ): Promise<'set' | 'refused'>
  /**
   * Internal rails (balance, offline) move money inside Payrail's transaction:
   * `trx` is the transaction holding the payment's row lock.
   */
  settleInternal?(
    trx: Db,
    ctx: GatewayContext,
    payment: Payment,
  ): Promise<{ ok: true } | { ok: false; decline: Decline }>
  refundInternal?(trx: Db, ctx: GatewayContext, payment: Payment, refund: Refund): Promise<void>
  /**
   * Stops what the payment started at the provider (expires a hosted page, voids an
   * authorization) before Payrail marks it CANCELLED. `taken` when the provider has
   * already taken the money: the payment is then not cancelled, and the provider's
   * report of the charge reconciles it.
   */
  cancel?(ctx: GatewayContext, payment: Payment): Promise<CancelResult>
  parseWebhook?(ctx: GatewayContext, raw: RawWebhook): Promise<WebhookParse>
}

/**
 * A refund of coins is made by the merchant, in the provider's dashboard (it needs the
 * buyer's address, which only the buyer gives there): Payrail records it, at once, as an
 * offline refund is recorded, so the payment and its invoice show the money given back (an
 * OVERPAID invoice's excess, say). Before, every refund was 422 and the excess could not be
 * accounted for.
 */
export function recordedCoinRefund(refund: { id: string }): RefundResult {
  return { status: 'succeeded', gatewayRefundId: `recorded_${refund.id}` }
}
