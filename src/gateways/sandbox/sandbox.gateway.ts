import type { Gateway, GatewayContext, GatewayPaymentRequest } from '../gateway.ts'
import { parseSandboxWebhook } from './sandbox.webhooks.ts'
import {
  chargeCard,
  closeSession,
  createSession,
  findSession,
  openSessionWith,
  refundPayment,
} from './sandbox-provider.ts'

/**
 * The built-in test gateway: hosted checkout pages served by Payrail
 * (`/sandbox/checkout/:session`, `/sandbox/crypto/:session`), saved test cards
 * charged off-session, refunds, and every outcome reported through a signed
 * webhook to `/v1/webhooks/sandbox/:tenant/:environment`. Needs no account.
 */
export const sandboxGateway: Gateway = {
  name: 'sandbox',
  capabilities: {
    hostedCheckout: true,
    savedMethodCharge: true,
    refund: true,
    statusSync: false,
    webhookVerification: true,
    methodTypes: ['PAYMENT_LINK', 'CARD', 'CRYPTO'],
    internal: false,
    withdrawsPages: true,
    paysAfterFailure: false,
  },
  async createCheckout(ctx, request) {
    return startSession(ctx, request, 'card')
  },
  async startAsync(ctx, request) {
    return startSession(ctx, request, 'crypto')
  },
  async startInTransaction(trx, ctx, request) {
    const mode = request.payment.payment_method_type === 'PAYMENT_LINK' ? 'card' : 'crypto'
    const session = { payment: request.payment, mode, payBy: request.payBy } as const
    return pageOf(ctx, await openSessionWith(trx, ctx, session), mode)
  },
  async chargeSavedMethod(ctx, request, method) {
    const charge = await chargeCard(ctx, request.payment, method.gateway_payment_method_id)
    switch (charge.kind) {
      case 'unknown_card':
        return {
          outcome: 'error',
          failure: { code: 'resource_missing', message: 'No such sandbox card', retryable: false },
        }
      case 'succeeded':
        return {
          outcome: 'succeeded',
          gatewayPaymentId: charge.chargeId,
          trackingId: charge.chargeId,
          card: {
            brand: charge.card.brand,
            last4: charge.card.last4,
            expMonth: charge.card.exp_month,
            expYear: charge.card.exp_year,
            gatewayPaymentMethodId: charge.card.id,
          },
        }
      case 'declined':
        return {
          outcome: 'declined',
          gatewayPaymentId: charge.chargeId,
          trackingId: charge.chargeId,
          decline: {
            code:
              charge.code === 'authentication_required'
                ? 'authentication_required'
                : declineCodeOf(charge.code),
            message: charge.message,
            declineCode: charge.declineCode ?? undefined,
          },
        }
    }
  },
  async refund(ctx, payment, refund) {
    return {
      status: 'succeeded',
      gatewayRefundId: await refundPayment(ctx, payment, refund.id, refund.amount),
    }
  },
  async cancel(ctx, payment) {
    if (!payment.gateway_tracking_id) return { ok: true }
    const session = await findSession(ctx.db, payment.gateway_tracking_id)
    if (session && !(await closeSession(ctx, session)))
      return { ok: false, reason: 'The customer has paid the sandbox page' }
    return { ok: true }
  },
  async parseWebhook(ctx, raw) {
    return parseSandboxWebhook(ctx.credentials?.webhook_secret, raw, ctx.clock.now())
  },
}

async function startSession(
  ctx: GatewayContext,
  request: GatewayPaymentRequest,
  mode: 'card' | 'crypto',
) {
  const session = await createSession(ctx, { payment: request.payment, mode, payBy: request.payBy })
  // The payment's session may be one an earlier call opened, for the amount it had then.
  return { ...pageOf(ctx, session.id, mode), amount: session.amount }
}

function pageOf(ctx: GatewayContext, sessionId: string, mode: 'card' | 'crypto') {
  const page = mode === 'card' ? 'checkout' : 'crypto'
  return {
    ok: true as const,
    url: `${ctx.publicUrl}/sandbox/${page}/${sessionId}`,
    trackingId: sessionId,
    gatewayPaymentId: null,
  }
}

function declineCodeOf(code: string) {
  switch (code) {
    case 'insufficient_funds':
    case 'expired_card':
    case 'authentication_required':
      return code
    default:
      return 'card_declined' as const
  }
}
