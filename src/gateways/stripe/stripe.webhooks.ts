import type Stripe from 'stripe'
import type {
  BillingObject,
  GatewayContext,
  NormalizedEvent,
  PaymentUpdate,
  RawWebhook,
  WebhookParse,
} from '../gateway.ts'
import { withAllLines } from './stripe.billing.ts'
import { failureOf, stripeClient, stripeSdk } from './stripe.client.ts'
import { fromStripeAmount } from './stripe.money.ts'
import {
  PAYRAIL_PAYMENT_ID,
  PAYRAIL_REFUND_ID,
  savesCard,
  updateFromPaymentIntent,
} from './stripe.transformers.ts'

/** Stripe's signature tolerance, in seconds. */
const TOLERANCE_SECONDS = 300

/**
 * Verifies `Stripe-Signature` with the SDK (300 s tolerance) and maps the event.
 * A completed Checkout Session is confirmed by fetching its PaymentIntent, which
 * also gives the card to save; a card saved for future use becomes the customer's
 * default at Stripe too.
 */
export async function parseStripeWebhook(
  ctx: GatewayContext,
  raw: RawWebhook,
): Promise<WebhookParse> {
  const secret = ctx.credentials?.webhook_secret
  if (!secret) return { ok: false, status: 404, reason: 'stripe is not connected' }
  const header = raw.headers['stripe-signature']
  const stripe = await stripeClient(ctx)
  let event: Stripe.Event
  try {
    event = stripe.webhooks.constructEvent(
      raw.body,
      (Array.isArray(header) ? header[0] : header) ?? '',
      secret,
      TOLERANCE_SECONDS,
      undefined,
      ctx.clock.now().getTime(),
    )
  } catch (error) {
    return {
      ok: false,
      status: 400,
      reason: error instanceof Error ? error.message : 'signature verification failed',
    }
  }
  // Signed, but not shaped like a Stripe event (only the secret's holder can send one): a 400.
  const object = (event as { data?: { object?: unknown } }).data?.object
  if (
    typeof event.id !== 'string' ||
    typeof event.type !== 'string' ||
    typeof object !== 'object' ||
    object === null
  )
    return { ok: false, status: 400, reason: 'the event has no data.object' }
  const amount = (object as { amount_total?: unknown }).amount_total
  if (amount !== undefined && amount !== null && !Number.isSafeInteger(amount))
    return { ok: false, status: 400, reason: 'amount_total is not an integer' }
  // Reading some events asks Stripe (a completed session's PaymentIntent, an invoice's lines
  // past ten): Stripe down or slow, or refusing the connection's key (401, revoked), is a 502,
  // which Stripe redelivers, as BitPay's and CoinPayments' lookups answer. (A refusal was
  // rethrown, and answered as the sender's 400 `validation_error`.)
  try {
    return { ok: true, events: await mapEvent(stripe, event) }
  } catch (error) {
    // Only Stripe's own errors: anything else is Payrail's, and stays a 500.
    if (!(error instanceof (await stripeSdk()).errors.StripeError)) throw error
    const failure = await failureOf(error)
    return { ok: false, status: 502, reason: `Stripe could not be asked: ${failure.message}` }
  }
}

async function mapEvent(stripe: Stripe, event: Stripe.Event): Promise<NormalizedEvent[]> {
  const one = (
    target: NormalizedEvent['target'],
    update: PaymentUpdate | undefined,
  ): NormalizedEvent[] =>
    update ? [{ eventId: event.id, type: event.type, target, update, payload: event }] : []
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded': {
      const session = event.data.object
      const target = { paymentId: session.metadata?.[PAYRAIL_PAYMENT_ID], trackingId: session.id }
      if (session.payment_status === 'unpaid') return one(target, { status: 'PROCESSING' })
      const intentId =
        typeof session.payment_intent === 'string'
          ? session.payment_intent
          : session.payment_intent?.id
      if (!intentId)
        return one(target, {
          status: 'SUCCEEDED',
          amountReceived: fromStripeAmount(session.amount_total ?? 0, session.currency ?? 'usd'),
          currency: session.currency ?? undefined,
        })
      // The PaymentIntent's own report (payment_intent.succeeded) maps the same: whichever of
      // the two is handled first records the attempt and the card, the other is a repeat.
      const intent = await stripe.paymentIntents.retrieve(intentId, { expand: ['payment_method'] })
      return one(target, updateFromPaymentIntent(intent))
    }
    case 'checkout.session.async_payment_failed': {
      const session = event.data.object
      return one(sessionTarget(session), {
        status: 'FAILED',
        error: { code: 'async_payment_failed', message: 'The delayed payment failed' },
      })
    }
    case 'checkout.session.expired': {
      const session = event.data.object
      // An expiry no API request asked for is Stripe's own, at `expires_at`: the customer did
      // not pay. One a request asked for (Payrail's /cancel, the merchant at Stripe) withdrew
      // the page, and ends only the payment whose page it is: one Payrail withdrew before any
      // payment took it (its payment changed while it was being opened) names a payment that
      // is still to be paid, with another page or none yet, and is no payment's.
      if (event.request?.id) {
        return one({ trackingId: session.id, trackedObject: true }, { status: 'CANCELLED' })
      }
      return one(sessionTarget(session), {
        status: 'FAILED',
        error: {
          code: 'expired',
          message: 'The customer did not pay before the checkout expired',
        },
      })
    }
    case 'payment_intent.succeeded': {
      const intent = await withSavedCard(stripe, event.data.object)
      return one(
        { paymentId: intent.metadata?.[PAYRAIL_PAYMENT_ID] },
        updateFromPaymentIntent(intent),
      )
    }
    case 'payment_intent.canceled': {
      // Stripe cancels a Checkout Session's PaymentIntent (one a declined card left behind)
      // only as the session expires, and reports the expiry next: that report decides.
      const intent = event.data.object
      if (await isCheckoutIntent(stripe, intent.id)) return []
      return one(
        { paymentId: intent.metadata?.[PAYRAIL_PAYMENT_ID] },
        updateFromPaymentIntent(intent),
      )
    }
    case 'payment_intent.payment_failed':
    case 'payment_intent.processing':
    case 'payment_intent.requires_action': {
      const intent = event.data.object
      return one(
        { paymentId: intent.metadata?.[PAYRAIL_PAYMENT_ID] },
        updateFromPaymentIntent(intent),
      )
    }
    case 'charge.refunded': {
      const charge = event.data.object
      const paymentId = await paymentIdOfIntent(stripe, charge.payment_intent)
      return (charge.refunds?.data ?? []).flatMap((refund) =>
        refundEvent(event, `${event.id}:${refund.id}`, paymentId, refund),
      )
    }
    case 'refund.created':
    case 'refund.updated':
    case 'refund.failed': {
      const refund = event.data.object
      const paymentId = await paymentIdOfIntent(stripe, refund.payment_intent)
      return refundEvent(event, event.id, paymentId, refund)
    }
    default: {
      const billing = billingObjectOf(event)
      if (billing?.objectType === 'invoice' && event.type !== 'invoice.deleted')
        billing.object = await withAllLines(stripe, billing.object)
      return billing
        ? [
            {
              eventId: event.id,
              type: event.type,
              target: {},
              update: {},
              billingObject: billing,
              payload: event,
            },
          ]
        : []
    }
  }
}

const BILLING_PREFIXES: readonly [string, BillingObject['objectType']][] = [
  ['invoice.', 'invoice'],
  ['customer.subscription.', 'subscription'],
  ['subscription_schedule.', 'subscription_schedule'],
  ['product.', 'product'],
  ['price.', 'price'],
]

/** Stripe Billing events (`invoice.*`, `customer.subscription.*`, …): the object to mirror locally. */
function billingObjectOf(event: Stripe.Event): BillingObject | undefined {
  const match = BILLING_PREFIXES.find(([prefix]) => event.type.startsWith(prefix))
  const object: unknown = event.data.object
  if (
    !match ||
    typeof object !== 'object' ||
    object === null ||
    typeof (object as { id?: unknown }).id !== 'string'
  )
    return undefined
  return {
    objectType: match[1],
    object: object as BillingObject['object'],
    seenAt: typeof event.created === 'number' ? event.created : undefined,
  }
}

function refundEvent(
  event: Stripe.Event,
  eventId: string,
  paymentId: string | undefined,
  refund: Stripe.Refund,
): NormalizedEvent[] {
  // A refund Stripe cancels (it was pending: an ACH debit's, say) took no money: failed.
  const status =
    refund.status === 'succeeded'
      ? 'succeeded'
      : refund.status === 'failed' || refund.status === 'canceled'
        ? 'failed'
        : undefined
  if (!status) return []
  return [
    {
      eventId,
      type: event.type,
      target: { paymentId },
      update: {
        currency: refund.currency,
        refund: {
          refundId: refund.metadata?.[PAYRAIL_REFUND_ID],
          gatewayRefundId: refund.id,
          status,
          amount: fromStripeAmount(refund.amount, refund.currency),
          ...(status === 'failed' && {
            failureCode: refundFailure(refund).code,
            failureMessage: refundFailure(refund).message,
          }),
          reason: refund.reason ?? undefined,
        },
      },
      payload: event,
    },
  ]
}

/**
 * Why Stripe failed or canceled a refund, in a sentence: its `failure_reason` is a code
 * (https://docs.stripe.com/refunds#failed-refunds), kept as the refund's `failure_code`.
 */
export function refundFailure(refund: Stripe.Refund): { code: string; message: string } {
  return {
    code: refund.failure_reason ?? (refund.status === 'canceled' ? 'canceled' : 'unknown'),
    message: refundFailureMessage(refund),
  }
}

function refundFailureMessage(refund: Stripe.Refund): string {
  if (refund.status === 'canceled') return 'Stripe canceled the refund'
  switch (refund.failure_reason) {
    case 'lost_or_stolen_card':
      return "The customer's card was reported lost or stolen"
    case 'expired_or_canceled_card':
      return "The customer's card has expired or was canceled"
    case 'charge_for_pending_refund_disputed':
      return 'The customer disputed the charge while its refund was pending'
    case 'insufficient_funds':
      return 'The refund needed funds the Stripe balance did not have'
    case 'declined':
      return "The customer's bank declined the refund"
    case 'merchant_request':
      return "The refund was canceled at the merchant's request"
    default:
      return 'Stripe could not refund the customer'
  }
}

/**
 * A Checkout Session's report names the session Payrail tracks on the payment: one made
 * before a retry (its answer lost, and Stripe's key forgotten a day later) that expires or
 * fails ends nothing, while the session the customer was given is still open.
 */
function sessionTarget(session: Stripe.Checkout.Session): NormalizedEvent['target'] {
  return {
    paymentId: session.metadata?.[PAYRAIL_PAYMENT_ID],
    trackingId: session.id,
    trackedObject: true,
  }
}

/**
 * The PaymentIntent with the card it saves: an event names its `payment_method` by id
 * only, so the card is fetched, and only when the intent saves it (one call, for a link
 * paid with `save_card_and_make_default`). A card gone since saves nothing.
 */
async function withSavedCard(
  stripe: Stripe,
  intent: Stripe.PaymentIntent,
): Promise<Stripe.PaymentIntent> {
  if (!savesCard(intent) || typeof intent.payment_method !== 'string') return intent
  try {
    return {
      ...intent,
      payment_method: await stripe.paymentMethods.retrieve(intent.payment_method),
    }
  } catch (error) {
    if ((error as { code?: unknown }).code === 'resource_missing') return intent
    throw error
  }
}

/** Whether the PaymentIntent is a Checkout Session's (one list call). */
async function isCheckoutIntent(stripe: Stripe, intentId: string): Promise<boolean> {
  const sessions = await stripe.checkout.sessions.list({ payment_intent: intentId, limit: 1 })
  return sessions.data.length > 0
}

async function paymentIdOfIntent(
  stripe: Stripe,
  intent: string | Stripe.PaymentIntent | null,
): Promise<string | undefined> {
  if (!intent) return undefined
  const object = typeof intent === 'string' ? await stripe.paymentIntents.retrieve(intent) : intent
  return object.metadata?.[PAYRAIL_PAYMENT_ID]
}
