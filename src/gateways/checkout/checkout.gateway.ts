import { assertNever } from '../../core/errors.ts'
import type { ChargeLookup, ChargeResult, Gateway, GatewayFailure } from '../gateway.ts'
import { isAskedAgain } from '../gateway.ts'
import { checkoutClient, plain } from './checkout.client.ts'
import { toCheckoutAmount } from './checkout.money.ts'
import {
  type CheckoutPaymentStatus,
  type CheckoutPaymentView,
  declineCodeOf,
  PAYRAIL_OFF_SESSION,
  PAYRAIL_PAYMENT_ID,
  PAYRAIL_SAVE_CARD,
  readCheckoutPayment,
} from './checkout.transformers.ts'
import { parseCheckoutWebhook } from './checkout.webhooks.ts'

/**
 * Checkout.com through the official `checkout-sdk-node`: hosted payments pages for
 * payment links (returning through Payrail's `/v1/checkout/success|failure`, which
 * verify with the API before believing the redirect), off-session card payments on
 * a stored source, voids of a cancelled authorization, refunds with
 * `Cko-Idempotency-Key`, and signed webhooks read by their event type.
 */
export const checkoutGateway: Gateway = {
  name: 'checkout',
  capabilities: {
    hostedCheckout: true,
    savedMethodCharge: true,
    refund: true,
    statusSync: true,
    webhookVerification: true,
    methodTypes: ['PAYMENT_LINK', 'CARD'],
    internal: false,
    withdrawsPages: false,
    paysAfterFailure: false,
  },
  async createCheckout(ctx, request) {
    const { payment } = request
    const amount = toCheckoutAmount(payment.amount, payment.currency)
    const back = (outcome: 'success' | 'failure') =>
      `${ctx.publicUrl}/v1/checkout/${outcome}?payment_id=${encodeURIComponent(payment.id)}`
    try {
      const client = await checkoutClient(ctx)
      const created = plain(
        await client.hostedPayments.create({
          amount,
          currency: payment.currency.toUpperCase(),
          reference: payment.id,
          description: request.description,
          customer: {
            name: request.customer.name,
            ...(request.customer.email && { email: request.customer.email }),
          },
          billing: {
            address: { country: payment.billing_address?.country?.toUpperCase() ?? 'US' },
          },
          success_url: back('success'),
          failure_url: back('failure'),
          cancel_url: back('failure'),
          metadata: {
            [PAYRAIL_PAYMENT_ID]: payment.id,
            ...(payment.save_card_and_make_default && { [PAYRAIL_SAVE_CARD]: 'true' }),
          },
        }),
      ) as { id?: unknown; _links?: { redirect?: { href?: unknown } } }
      const url = created._links?.redirect?.href
      if (typeof created.id !== 'string' || typeof url !== 'string') {
        return {
          ok: false,
          failure: {
            code: 'bad_response',
            message: 'Checkout.com returned no hosted page',
            retryable: false,
          },
        }
      }
      return { ok: true, url, trackingId: created.id, gatewayPaymentId: null }
    } catch (error) {
      return { ok: false, failure: failureOf(error) }
    }
  },
  async chargeSavedMethod(ctx, request, method) {
    const { payment } = request
    const amount = toCheckoutAmount(payment.amount, payment.currency)
    try {
      const client = await checkoutClient(ctx)
      const answer = readCheckoutPayment(
        plain(
          await client.payments.request(
            {
              source: { type: 'id', id: method.gateway_payment_method_id },
              amount,
              currency: payment.currency.toUpperCase(),
              reference: payment.id,
              payment_type: 'Unscheduled',
              merchant_initiated: true,
              capture: true,
              metadata: { [PAYRAIL_PAYMENT_ID]: payment.id, [PAYRAIL_OFF_SESSION]: 'true' },
            },
            request.chargeKey,
          ),
        ),
      )
      if (!answer)
        return {
          outcome: 'error',
          failure: {
            code: 'bad_response',
            message: 'Unreadable Checkout.com payment',
            retryable: false,
          },
        }
      return chargeOutcome(answer)
    } catch (error) {
      return { outcome: 'error', failure: failureOf(error) }
    }
  },
  async findCharge(ctx, { request, answered }): Promise<ChargeLookup> {
    const { payment } = request
    try {
      const client = await checkoutClient(ctx)
      // Newest first; an off-session charge carries the payment's id as its reference.
      const list = plain(
        await client.payments.getPaymentList({ reference: payment.id, limit: 100, skip: 0 }),
      ) as { data?: unknown }
      const found = (Array.isArray(list.data) ? list.data : [])
        .map((item) => readCheckoutPayment(item))
        .find((item) => item && item.paymentId === payment.id && !answered.includes(item.id))
      return found ? lookupOutcome(found) : { outcome: 'not_found' }
    } catch (error) {
      return { outcome: 'error', failure: failureOf(error) }
    }
  },
  checkAmount(amount, currency) {
    toCheckoutAmount(amount, currency)
  },
  async refund(ctx, payment, refund) {
    const amount = toCheckoutAmount(refund.amount, payment.currency)
    if (!payment.gateway_payment_id) {
      return {
        status: 'failed',
        failure: {
          code: 'no_payment',
          message: 'The payment has no Checkout.com payment id',
          retryable: false,
        },
      }
    }
    try {
      const client = await checkoutClient(ctx)
      // Asked again after a lost answer (the refund's note says so): the idempotency key
      // lasts a day at Checkout.com, the job asks for days, so a refund action Checkout.com
      // made is looked for first, by its reference, and never asked for twice.
      if (isAskedAgain(refund, ctx.clock.now())) {
        const actions = plain(await client.payments.getActions(payment.gateway_payment_id))
        const made = Array.isArray(actions)
          ? (actions as { id?: unknown; type?: unknown; reference?: unknown }[]).find(
              (action) => action.type === 'Refund' && action.reference === refund.id,
            )
          : undefined
        if (typeof made?.id === 'string') return { status: 'pending', gatewayRefundId: made.id }
      }
      const answer = plain(
        await client.payments.refund(
          payment.gateway_payment_id,
          { amount, reference: refund.id },
          `payrail-refund-${refund.id}`,
        ),
      ) as { action_id?: unknown }
      if (typeof answer.action_id !== 'string') {
        return {
          status: 'failed',
          failure: {
            code: 'bad_response',
            message: 'Checkout.com returned no action id',
            retryable: false,
          },
        }
      }
      // 202 Accepted: the refund completes when the payment_refunded webhook arrives.
      return { status: 'pending', gatewayRefundId: answer.action_id }
    } catch (error) {
      return { status: 'failed', failure: failureOf(error) }
    }
  },
  async cancel(ctx, payment) {
    // An authorization is voided. A hosted payment page cannot be withdrawn at Checkout.com
    // (it has no API for it): it stays payable until it expires, so the payment stays open.
    const id = payment.gateway_payment_id
    if (!id?.startsWith('pay_')) {
      if (!payment.gateway_tracking_id) return { ok: true }
      return {
        ok: false,
        reason: `Checkout.com cannot withdraw hosted payment page ${payment.gateway_tracking_id}, which stays payable until it expires`,
      }
    }
    const client = await checkoutClient(ctx)
    const current = readCheckoutPayment(plain(await client.payments.get(id)))
    if (current && MONEY_TAKEN.some((status) => status === current.status))
      return {
        ok: false,
        reason: `Checkout.com already captured payment ${id} (${current.status})`,
      }
    if (current?.status !== 'Authorized') return { ok: true }
    try {
      await client.payments.void(id, { reference: payment.id }, `payrail-void-${payment.id}`)
    } catch (error) {
      // Captured between the read and the void (Checkout.com refuses the void): the money is
      // taken, the cancel is refused (409) and its capture report settles the payment.
      const now = readCheckoutPayment(plain(await client.payments.get(id).catch(() => null)))
      if (now && MONEY_TAKEN.some((status) => status === now.status))
        return { ok: false, reason: `Checkout.com captured payment ${id} (${now.status})` }
      throw error
    }
    return { ok: true }
  },
  async parseWebhook(ctx, raw) {
    return parseCheckoutWebhook(ctx.credentials?.signature_key, raw, async (id) =>
      readCheckoutPayment(plain(await (await checkoutClient(ctx)).payments.get(id))),
    )
  },
}

/** Statuses in which Checkout.com has taken the customer's money: nothing left to void. */
const MONEY_TAKEN: CheckoutPaymentStatus[] = [
  'Captured',
  'Partially Captured',
  'Paid',
  'Refunded',
  'Partially Refunded',
]

/**
 * The answer to an off-session payment. Checkout.com captures a `capture: true` payment
 * after answering, so the answer is often `Authorized`: the payment is RESERVED at once
 * (its `payment_approved` webhook is then a repeat), and `payment_captured` makes it SUCCEEDED.
 */
function chargeOutcome(answer: CheckoutPaymentView): ChargeResult {
  const ids = { gatewayPaymentId: answer.id, trackingId: answer.id }
  switch (answer.status) {
    case 'Captured':
    case 'Paid':
      return { outcome: 'succeeded', ...ids }
    case 'Authorized':
      return { outcome: 'reserved', ...ids, amountReserved: answer.amount }
    case 'Pending':
      return { outcome: 'processing', ...ids }
    case 'Declined':
      return {
        outcome: 'declined',
        ...ids,
        decline: {
          code: declineCodeOf(answer.responseCode),
          message: answer.responseSummary ?? 'Declined',
          declineCode: answer.responseCode ?? undefined,
        },
      }
    case 'Card Verified':
    case 'Partially Captured':
    case 'Expired':
    case 'Canceled':
    case 'Voided':
    case 'Refunded':
    case 'Partially Refunded':
      return {
        outcome: 'error',
        failure: {
          code: 'bad_response',
          message: `Checkout.com answered a new payment with status ${answer.status}`,
          retryable: false,
        },
      }
    default:
      return assertNever(answer.status)
  }
}

/**
 * A charge found later, when its answer was lost: it may have moved on since. Refunded
 * means it was captured (the refund's own report records the refund); voided, expired or
 * cancelled means no money moved.
 */
function lookupOutcome(found: CheckoutPaymentView): ChargeResult {
  const ids = { gatewayPaymentId: found.id, trackingId: found.id }
  switch (found.status) {
    case 'Refunded':
    case 'Partially Refunded':
      return { outcome: 'succeeded', ...ids }
    // Captured in part since (in the Hub): money taken, what was captured. It was read as a
    // new payment's impossible answer, a 502 on every lookup, the charge held for good.
    case 'Partially Captured':
      return { outcome: 'succeeded', ...ids, amountReceived: found.totalCaptured ?? found.amount }
    case 'Expired':
    case 'Canceled':
    case 'Voided':
      return {
        outcome: 'declined',
        ...ids,
        decline: {
          code: 'card_declined',
          message: `Checkout.com ${found.status.toLowerCase()} the payment`,
        },
      }
    default:
      return chargeOutcome(found)
  }
}

function failureOf(error: unknown): GatewayFailure {
  const status = (error as { http_code?: unknown } | null)?.http_code
  const retryable = typeof status !== 'number' || status >= 500 || status === 429
  return {
    code: 'checkout_error',
    message: error instanceof Error ? error.message : String(error),
    retryable,
  }
}
