import { timingSafeEqual } from 'node:crypto'
import { hmacHex } from '../../core/webhook-signature.ts'
import type { NormalizedEvent, PaymentUpdate, RawWebhook, WebhookParse } from '../gateway.ts'
import { readCheckoutPayment, updateFromStatus } from './checkout.transformers.ts'

const REFUND_EVENTS = new Set(['payment_refunded', 'payment_refund_declined'])

/**
 * Verifies `Cko-Signature` (hex HMAC-SHA256 of the raw body with the connection's
 * `signature_key`) before reading the body, then maps the event by the payment
 * status it carries; refund events settle the refund named by `action_id`.
 */
export function parseCheckoutWebhook(
  signatureKey: string | undefined,
  raw: RawWebhook,
): WebhookParse {
  if (!signatureKey) return { ok: false, status: 404, reason: 'checkout is not connected' }
  const header = raw.headers['cko-signature']
  const given = Buffer.from((Array.isArray(header) ? header[0] : header) ?? '', 'hex')
  const expected = Buffer.from(hmacHex(signatureKey, '', raw.body), 'hex')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, status: 400, reason: 'Cko-Signature does not match' }
  }
  let body: { id?: unknown; type?: unknown; data?: unknown }
  try {
    body = JSON.parse(raw.body.toString('utf8')) as typeof body
  } catch {
    return { ok: false, status: 400, reason: 'body is not JSON' }
  }
  const payment = readCheckoutPayment(body.data)
  if (typeof body.id !== 'string' || typeof body.type !== 'string' || !payment) {
    return { ok: false, status: 400, reason: 'body is not a Checkout.com payment event' }
  }
  const actionId = (body.data as { action_id?: unknown }).action_id
  let update: PaymentUpdate | undefined
  if (REFUND_EVENTS.has(body.type) && typeof actionId === 'string') {
    update = {
      refund: {
        gatewayRefundId: actionId,
        status: body.type === 'payment_refunded' ? 'succeeded' : 'failed',
        amount: payment.amount,
      },
    }
  } else {
    update = updateFromStatus(payment)
  }
  if (!update) return { ok: true, events: [] }
  const event: NormalizedEvent = {
    eventId: body.id,
    type: body.type,
    target: { paymentId: payment.paymentId ?? undefined },
    update,
    payload: body,
  }
  return { ok: true, events: [event] }
}
