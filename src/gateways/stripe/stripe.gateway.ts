import { createHash } from 'node:crypto'
import type Stripe from 'stripe'
import type { ChargeLookup, ChargeResult, Gateway, GatewayPaymentRequest } from '../gateway.ts'
import { isAskedAgain } from '../gateway.ts'
import { failureOf, stripeClient, stripeSdk } from './stripe.client.ts'
import { toStripeAmount } from './stripe.money.ts'
import {
  cardFromPaymentMethod,
  checkoutSessionExpiry,
  checkoutSessionParams,
  declineFromStripe,
  PAYRAIL_PAYMENT_ID,
  PAYRAIL_REFUND_ID,
} from './stripe.transformers.ts'
import { parseStripeWebhook, refundFailure } from './stripe.webhooks.ts'

/**
 * Stripe through the official SDK: hosted Checkout Sessions for payment links,
 * off-session PaymentIntents for saved cards, refunds, and verified webhooks.
 * Every create call carries a deterministic idempotency key derived from Payrail's
 * ids, so a retry after a timeout never makes a second session, charge or refund.
 */
export const stripeGateway: Gateway = {
  name: 'stripe',
  capabilities: {
    hostedCheckout: true,
    savedMethodCharge: true,
    refund: true,
    statusSync: true,
    webhookVerification: true,
    methodTypes: ['PAYMENT_LINK', 'CARD'],
    internal: false,
    withdrawsPages: true,
    paysAfterFailure: false,
  },
  async createCheckout(ctx, request) {
    const stripe = await stripeClient(ctx)
    // An amount Stripe cannot take is the caller's 400 (checked again as the session is built),
    // and a payment window ending too soon for a session its 422.
    toStripeAmount(request.payment.amount, request.payment.currency)
    const expiresAt = checkoutSessionExpiry(request.payBy, ctx.clock.now())
    try {
      const customerId = await ensureCustomer(stripe, request, ctx.clock.now())
      const { payment } = request
      const params = checkoutSessionParams(
        payment,
        customerId,
        request.description,
        {
          success: payment.success_url ?? `${ctx.publicUrl}/pay/${payment.id}/complete`,
          cancel: payment.cancel_url ?? `${ctx.publicUrl}/pay/${payment.id}/cancelled`,
        },
        expiresAt,
      )
      // The same session for the same request sent again (an answer lost); a new one when
      // what it asks changed since (the payment's description or return URLs), which Stripe
      // would refuse under the first key. A session whose answer was lost has no URL anyone
      // was given, so no customer can pay it.
      const session = await stripe.checkout.sessions.create(params, {
        idempotencyKey: `payrail-checkout-${payment.id}-${digestOf(params)}`,
      })
      if (!session.url)
        return {
          ok: false,
          failure: { code: 'no_url', message: 'Stripe returned no session URL', retryable: false },
        }
      return {
        ok: true,
        url: session.url,
        trackingId: session.id,
        gatewayPaymentId: null,
        gatewayCustomerId: customerId,
      }
    } catch (error) {
      return { ok: false, failure: await failureOf(error) }
    }
  },
  async chargeSavedMethod(ctx, request, method): Promise<ChargeResult> {
    const stripe = await stripeClient(ctx)
    const { payment } = request
    // Before the try: an amount Stripe cannot take is the caller's 400, not Stripe's failure.
    const amount = toStripeAmount(payment.amount, payment.currency)
    try {
      const customerId = await ensureCustomer(stripe, request, ctx.clock.now())
      const intent = await stripe.paymentIntents.create(
        {
          amount,
          currency: payment.currency,
          customer: customerId,
          payment_method: method.gateway_payment_method_id,
          off_session: true,
          confirm: true,
          description: request.description,
          metadata: { [PAYRAIL_PAYMENT_ID]: payment.id },
          expand: ['payment_method'],
        },
        { idempotencyKey: request.chargeKey },
      )
      return chargeOfIntent(intent, customerId)
    } catch (error) {
      const { errors } = await stripeSdk()
      if (error instanceof errors.StripeCardError) {
        const intentId = error.payment_intent?.id ?? null
        return {
          outcome: 'declined',
          gatewayPaymentId: intentId,
          trackingId: intentId,
          decline: declineFromStripe(error.code, error.decline_code, error.message),
        }
      }
      return { outcome: 'error', failure: await failureOf(error) }
    }
  },
  async findCharge(ctx, { request, since, answered }): Promise<ChargeLookup> {
    const stripe = await stripeClient(ctx)
    const customerId = request.customer.gatewayCustomerIds.stripe
    try {
      // Newest first: the first intent of the payment not already answered is the one whose
      // answer was lost. A list is read at once (search is eventually consistent).
      const intents = stripe.paymentIntents.list({
        ...(customerId && { customer: customerId }),
        created: { gte: Math.floor(since.getTime() / 1000) - CLOCK_SKEW_S },
        limit: 100,
        expand: ['data.payment_method'],
      })
      for await (const intent of intents) {
        if (intent.metadata?.[PAYRAIL_PAYMENT_ID] !== request.payment.id) continue
        if (answered.includes(intent.id)) continue
        return chargeOfIntent(intent, customerId)
      }
      return { outcome: 'not_found' }
    } catch (error) {
      return { outcome: 'error', failure: await failureOf(error) }
    }
  },
  checkAmount(amount, currency) {
    toStripeAmount(amount, currency)
  },
  checkPayBy(payBy, now) {
    checkoutSessionExpiry(payBy, now)
  },
  async makeDefaultMethod(ctx, gatewayCustomerId, gatewayPaymentMethodId) {
    const stripe = await stripeClient(ctx)
    try {
      await stripe.customers.update(gatewayCustomerId, {
        invoice_settings: { default_payment_method: gatewayPaymentMethodId },
      })
      return 'set'
    } catch (error) {
      // The customer or the card gone at Stripe will not come back; a key rotated or restricted
      // (401, 403), a request in flight (409) or a rate limit may pass: tried again.
      const { statusCode, code } = error as { statusCode?: unknown; code?: unknown }
      if (statusCode === 404 || code === 'resource_missing') return 'refused'
      throw error
    }
  },
  async refund(ctx, payment, refund) {
    const stripe = await stripeClient(ctx)
    const refundAmount = toStripeAmount(refund.amount, payment.currency)
    try {
      const intentId =
        payment.gateway_payment_id ?? (await intentOfSession(stripe, payment.gateway_tracking_id))
      if (!intentId)
        return {
          status: 'failed',
          failure: {
            code: 'no_payment_intent',
            message: 'The payment has no Stripe PaymentIntent',
            retryable: false,
          },
        }
      // Asked again after a lost answer (the refund's note says so): Stripe keeps an
      // idempotency key for 24 hours only, and the job asks again for days, so a refund
      // Stripe made is looked for first, by its metadata, and never made twice.
      const made = isAskedAgain(refund, ctx.clock.now())
        ? await refundMadeFor(stripe, intentId, refund.id)
        : undefined
      const created =
        made ??
        (await stripe.refunds.create(
          {
            payment_intent: intentId,
            amount: refundAmount,
            metadata: { [PAYRAIL_REFUND_ID]: refund.id, [PAYRAIL_PAYMENT_ID]: payment.id },
          },
          { idempotencyKey: `payrail-refund-${refund.id}` },
        ))
      if (created.status === 'failed' || created.status === 'canceled') {
        return { status: 'failed', failure: { ...refundFailure(created), retryable: false } }
      }
      return {
        status: created.status === 'succeeded' ? 'succeeded' : 'pending',
        gatewayRefundId: created.id,
      }
    } catch (error) {
      return { status: 'failed', failure: await failureOf(error) }
    }
  },
  async cancel(ctx, payment) {
    const sessionId = payment.gateway_tracking_id
    if (!sessionId?.startsWith('cs_')) return { ok: true }
    const stripe = await stripeClient(ctx)
    try {
      await stripe.checkout.sessions.expire(sessionId)
      return { ok: true }
    } catch (error) {
      // Only an open session can be expired: find out whether the customer already paid.
      if (!(error instanceof (await stripeSdk()).errors.StripeInvalidRequestError)) throw error
      const session = await stripe.checkout.sessions.retrieve(sessionId)
      if (session.status === 'expired') return { ok: true }
      if (session.status === 'complete')
        return { ok: false, reason: 'The customer completed the Stripe Checkout Session' }
      throw error
    }
  },
  async parseWebhook(ctx, raw) {
    return parseStripeWebhook(ctx, raw)
  },
}

/**
 * The customer's Stripe id, creating the Stripe customer on first use (idempotently, by
 * Payrail's id). A first call whose answer was lost keeps its key at Stripe for a day, with
 * the name and email it sent: once the customer is edited, the same key asks another
 * request, which Stripe refuses (`idempotency_error`). The customer that call made is then
 * looked for and used; if there is none (deleted at Stripe since), one is made under a key
 * of the parameters sent.
 */
async function ensureCustomer(
  stripe: Stripe,
  request: GatewayPaymentRequest,
  now: Date,
): Promise<string> {
  const known = request.customer.gatewayCustomerIds.stripe
  if (known) return known
  const { customer } = request
  const params: Stripe.CustomerCreateParams = {
    name: customer.name,
    ...(customer.email && { email: customer.email }),
    metadata: { [PAYRAIL_CUSTOMER_ID]: customer.id },
  }
  try {
    const created = await stripe.customers.create(params, {
      idempotencyKey: `payrail-customer-${customer.id}`,
    })
    return created.id
  } catch (error) {
    if (!(error instanceof (await stripeSdk()).errors.StripeIdempotencyError)) throw error
  }
  const made = await customerMadeFor(stripe, customer.id, now)
  if (made) return made
  const created = await stripe.customers.create(params, {
    idempotencyKey: `payrail-customer-${customer.id}-${digestOf(params)}`,
  })
  return created.id
}

/**
 * The Stripe customer made for Payrail's customer `customerId` within the last 48 hours
 * (Stripe keeps a key for 24, with room for the clocks' skew), newest first. A list is read
 * at once, where search can miss a customer made in the last minutes. At most
 * `CUSTOMER_LOOKUP_PAGES` pages (of 100), on the request's path: an account making more
 * customers than that in two days gets a new one under the parameters' key instead.
 */
async function customerMadeFor(
  stripe: Stripe,
  customerId: string,
  now: Date,
): Promise<string | undefined> {
  const since = Math.floor(now.getTime() / 1000) - CUSTOMER_KEY_WINDOW_S
  let read = 0
  for await (const made of stripe.customers.list({ created: { gte: since }, limit: 100 })) {
    if (made.metadata?.[PAYRAIL_CUSTOMER_ID] === customerId) return made.id
    if (++read >= CUSTOMER_LOOKUP_PAGES * 100) break
  }
  return undefined
}

const CUSTOMER_LOOKUP_PAGES = 10

/** The metadata key naming Payrail's customer on a Stripe customer. */
const PAYRAIL_CUSTOMER_ID = 'payrail_customer_id'

/** How far back a customer made under a key Stripe still keeps is looked for. */
const CUSTOMER_KEY_WINDOW_S = 48 * 60 * 60

/**
 * A short digest of a request's parameters, for an idempotency key that changes with what
 * the request asks: the same request sent again has the same key, another one a new key.
 */
function digestOf(params: object): string {
  return createHash('sha256').update(JSON.stringify(params)).digest('hex').slice(0, 16)
}

/** How far Stripe's clock may be behind Payrail's when a charge's creation time is compared. */
const CLOCK_SKEW_S = 600

/** An off-session PaymentIntent's status as a charge's outcome. */
function chargeOfIntent(
  intent: Stripe.PaymentIntent,
  customerId: string | undefined,
): ChargeResult {
  const ids = { gatewayPaymentId: intent.id, trackingId: intent.id }
  switch (intent.status) {
    case 'succeeded':
      return {
        outcome: 'succeeded',
        ...ids,
        card: cardFromPaymentMethod(intent.payment_method),
        gatewayCustomerId: customerId,
      }
    case 'processing':
      return { outcome: 'processing', ...ids }
    case 'requires_payment_method': {
      // Declined: Stripe keeps the intent, with the card's error, for another method.
      const error = intent.last_payment_error
      if (error) {
        return {
          outcome: 'declined',
          ...ids,
          decline: declineFromStripe(error.code, error.decline_code, error.message ?? 'declined'),
        }
      }
      break
    }
    case 'canceled':
      return {
        outcome: 'declined',
        ...ids,
        decline: { code: 'card_declined', message: 'Stripe cancelled the charge' },
      }
  }
  return {
    outcome: 'declined',
    ...ids,
    decline: {
      code: 'authentication_required',
      message: 'This payment needs the card holder to authenticate',
    },
  }
}

/** The refund of `intentId` that Payrail's refund `refundId` made, if Stripe made it. */
async function refundMadeFor(
  stripe: Stripe,
  intentId: string,
  refundId: string,
): Promise<Stripe.Refund | undefined> {
  for await (const made of stripe.refunds.list({ payment_intent: intentId, limit: 100 })) {
    if (made.metadata?.[PAYRAIL_REFUND_ID] === refundId) return made
  }
  return undefined
}

async function intentOfSession(
  stripe: Stripe,
  sessionId: string | null,
): Promise<string | undefined> {
  if (!sessionId?.startsWith('cs_')) return undefined
  const session = await stripe.checkout.sessions.retrieve(sessionId)
  return typeof session.payment_intent === 'string'
    ? session.payment_intent
    : session.payment_intent?.id
}
