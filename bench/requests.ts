import { SecretBox } from '../src/core/secret-box.ts'
import { signWebhook } from '../src/core/webhook-signature.ts'
import {
  SANDBOX_SIGNATURE_HEADER,
  sandboxWebhookPath,
} from '../src/gateways/sandbox/sandbox-provider.ts'
import type { LoadRequest } from './load.ts'

/** The server's `PAYRAIL_SECRET_KEY` in every bench run. */
export const SECRET_KEY = 'b'.repeat(64)

/**
 * `POST /v1/payments` paying a whole 10.00 usd invoice the way `method` says; with
 * `idempotent`, under an `Idempotency-Key` of its own, as a client that retries sends it.
 */
export function invoicePayment(
  key: string,
  invoiceId: string,
  method: Record<string, string>,
  idempotent = false,
): LoadRequest {
  return {
    method: 'POST',
    path: '/v1/payments',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(idempotent && { 'idempotency-key': `pay-${invoiceId}` }),
    },
    body: JSON.stringify({
      destination_type: 'INVOICE',
      destination_id: invoiceId,
      ...method,
      amount: '10.00',
      currency: 'usd',
    }),
  }
}

/** Signs sandbox completion webhooks of one environment, as the sandbox gateway would send them. */
export function sandboxCompletions(tenantId: string, environmentId: string) {
  const secret = new SecretBox(Buffer.from(SECRET_KEY, 'hex')).derive(
    `sandbox-webhook:${environmentId}`,
  )
  const path = sandboxWebhookPath(tenantId, environmentId)
  /** The signed `checkout.completed` webhook that settles the pending link payment `paymentId` in full. */
  return (paymentId: string): LoadRequest => {
    const session = paymentId.replace(/^pay_/, 'sbs_')
    const body = JSON.stringify({
      id: completionEventId(paymentId),
      type: 'checkout.completed',
      created: Math.floor(Date.now() / 1000),
      data: {
        payment_id: paymentId,
        session_id: session,
        charge_id: null,
        amount: 1000,
        amount_received: 1000,
        currency: 'usd',
        card: null,
        error: null,
        refund_id: null,
        gateway_refund_id: null,
      },
    })
    return {
      method: 'POST',
      path,
      headers: {
        'content-type': 'application/json',
        [SANDBOX_SIGNATURE_HEADER]: signWebhook(secret, body, Math.floor(Date.now() / 1000)),
      },
      body,
    }
  }
}

/** The sandbox event id of the completion webhook of `paymentId`. */
export function completionEventId(paymentId: string): string {
  return `sbevt_bench_${paymentId}`
}
