import type { Gateway } from '../gateway.ts'
import { parseExternalWebhook } from './external.webhooks.ts'

/**
 * A third party that takes the money its own way and reports the result to
 * `POST /v1/webhooks/external/:tenant/:environment`, signed with the connection's
 * `webhook_secret`. The payment waits in PENDING; `some_data` from the invoice
 * on-ramp travels in `gateway_metadata` for the third party to read.
 */
export const externalGateway: Gateway = {
  name: 'external',
  capabilities: {
    hostedCheckout: false,
    savedMethodCharge: false,
    refund: false,
    statusSync: false,
    webhookVerification: true,
    methodTypes: ['EXTERNAL'],
    internal: false,
    withdrawsPages: false,
    paysAfterFailure: false,
  },
  async startAsync(_ctx, request) {
    return { ok: true, url: null, trackingId: request.payment.id, gatewayPaymentId: null }
  },
  async parseWebhook(ctx, raw) {
    return parseExternalWebhook(ctx.credentials?.webhook_secret, raw)
  },
}
