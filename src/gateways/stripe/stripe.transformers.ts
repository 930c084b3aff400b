import type Stripe from 'stripe'
import { AppError } from '../../core/errors.ts'
import type { Payment } from '../../db/database.ts'
import type { CardDetails, Decline, DeclineCode, PaymentUpdate } from '../gateway.ts'
import { fromStripeAmount, toStripeAmount } from './stripe.money.ts'

/** Pure mappings between Payrail's payment and Stripe's objects. Amounts are already minor units on both sides. */

export const PAYRAIL_PAYMENT_ID = 'payrail_payment_id'
export const PAYRAIL_REFUND_ID = 'payrail_refund_id'
export const PAYRAIL_SAVE_DEFAULT = 'payrail_save_default'

/**
 * The Checkout Session for a payment link: one price_data line, the customer, and Stripe's
 * default of 24 h to pay, or less: `expires_at` at `expiresAt` (`checkoutSessionExpiry`). Made
 * of stored fields only (the payment's, its invoices' window), with no time of the call in
 * it: a call sent again under the same idempotency key must be the same request, or Stripe
 * refuses it (`idempotency_error`). (Whether `expires_at` is set depends on when the call is
 * made: a retry once the window's end is within 24 h asks another session, under another key.)
 */
export function checkoutSessionParams(
  payment: Payment,
  stripeCustomerId: string,
  description: string,
  urls: { success: string; cancel: string },
  expiresAt?: Date,
): Stripe.Checkout.SessionCreateParams {
  const metadata = { [PAYRAIL_PAYMENT_ID]: payment.id }
  return {
    mode: 'payment',
    ...(expiresAt && { expires_at: Math.floor(expiresAt.getTime() / 1000) }),
    customer: stripeCustomerId,
    line_items: [
      {
        quantity: 1,
        price_data: {
          currency: payment.currency,
          unit_amount: toStripeAmount(payment.amount, payment.currency),
          product_data: { name: description },
        },
      },
    ],
    success_url: urls.success,
    cancel_url: urls.cancel,
    metadata,
    payment_intent_data: {
      metadata: {
        ...metadata,
        ...(payment.save_card_and_make_default && { [PAYRAIL_SAVE_DEFAULT]: 'true' }),
      },
      ...(payment.save_card_and_make_default && { setup_future_usage: 'off_session' as const }),
    },
  }
}

/** Stripe's bounds on a Checkout Session's `expires_at`, from its creation. */
const SESSION_LONGEST_MS = 24 * 60 * 60 * 1000
const SESSION_SHORTEST_MS = 30 * 60 * 1000
/** Room for the call's time on the way and Stripe's clock, over Stripe's shortest session. */
const SESSION_SHORTEST_MARGIN_MS = 60 * 1000

/**
 * When a Checkout Session opened `now` for a payment whose invoices take money until `payBy`
 * must expire: undefined (Stripe's default, 24 h) when the window outlasts that, else the
 * window's end. Stripe refuses a session shorter than 30 minutes, and a longer one would take
 * money after the window: a window ending sooner (a minute's margin for the call and the
 * clocks) is refused with 422 before anything is asked of Stripe.
 */
export function checkoutSessionExpiry(payBy: Date | null, now: Date): Date | undefined {
  if (payBy === null) return undefined
  const left = payBy.getTime() - now.getTime()
  if (left >= SESSION_LONGEST_MS) return undefined
  if (left < SESSION_SHORTEST_MS + SESSION_SHORTEST_MARGIN_MS) {
    throw new AppError(
      'invalid_state_transition',
      `The invoice's payment window ends at ${payBy.toISOString()}, too soon for a Stripe Checkout Session (Stripe's shortest lasts 30 minutes, and a page must take no money after the window)`,
      { payment_window_ends_at: payBy.toISOString(), payment_gateway: 'stripe' },
    )
  }
  return payBy
}

/** Stripe's card error codes, as the decline codes Payrail answers 402 with. */
export function declineFromStripe(
  code: string | undefined,
  declineCode: string | undefined,
  message: string,
): Decline {
  return { code: declineCodeOf(code, declineCode), message, declineCode: declineCode ?? code }
}

function declineCodeOf(code: string | undefined, declineCode: string | undefined): DeclineCode {
  if (code === 'authentication_required' || declineCode === 'authentication_required')
    return 'authentication_required'
  if (code === 'expired_card' || declineCode === 'expired_card') return 'expired_card'
  if (declineCode === 'insufficient_funds' || code === 'insufficient_funds')
    return 'insufficient_funds'
  return 'card_declined'
}

export function cardFromPaymentMethod(
  method: Stripe.PaymentMethod | string | null | undefined,
): CardDetails | undefined {
  if (!method || typeof method === 'string' || !method.card) return undefined
  return {
    brand: method.card.brand,
    last4: method.card.last4,
    expMonth: method.card.exp_month,
    expYear: method.card.exp_year,
    gatewayPaymentMethodId: method.id,
  }
}

/** Whether the PaymentIntent saves its card for later charges (a link's `save_card_and_make_default`). */
export function savesCard(intent: Stripe.PaymentIntent): boolean {
  return intent.setup_future_usage === 'off_session'
}

/**
 * What a PaymentIntent's status says about the payment (`undefined`: nothing to move).
 * A success is the payment's attempt, with the card it saves (when `payment_method` is
 * expanded): Stripe reports a paid link twice (`payment_intent.succeeded`, then
 * `checkout.session.completed`), and whichever is handled first records both before
 * `payment.succeeded` goes out; the other is a repeat.
 */
export function updateFromPaymentIntent(intent: Stripe.PaymentIntent): PaymentUpdate | undefined {
  switch (intent.status) {
    case 'succeeded':
      return {
        status: 'SUCCEEDED',
        amountReceived: fromStripeAmount(intent.amount_received, intent.currency),
        currency: intent.currency,
        gatewayPaymentId: intent.id,
        card: savesCard(intent) ? cardFromPaymentMethod(intent.payment_method) : undefined,
        attempt: { status: 'succeeded' },
      }
    case 'processing':
      return { status: 'PROCESSING', gatewayPaymentId: intent.id }
    case 'requires_capture':
      return {
        status: 'RESERVED',
        amountReceived: fromStripeAmount(intent.amount_capturable, intent.currency),
        currency: intent.currency,
        gatewayPaymentId: intent.id,
      }
    case 'canceled':
      return { status: 'CANCELLED', gatewayPaymentId: intent.id }
    case 'requires_payment_method': {
      const error = intent.last_payment_error
      if (!error) return undefined
      const code = declineFromStripe(
        error.code,
        error.decline_code,
        error.message ?? 'declined',
      ).code
      const message = error.message ?? 'The card was declined'
      // Checkout keeps its session open after a decline: the customer may pay with another card.
      // An off-session charge's decline ends its payment, with the declined attempt recorded: a
      // retry is then a new charge (a new key), not the replay of this one.
      return {
        status: 'FAILED',
        gatewayPaymentId: intent.id,
        pageStaysOpen: true,
        error: { code, message },
        attempt: { status: 'failed', errorCode: code, errorMessage: message },
      }
    }
    case 'requires_action':
    case 'requires_confirmation':
      return undefined
  }
}
