import { timingSafeEqual } from 'node:crypto'
import { hmacHex } from '../../core/webhook-signature.ts'
import type { NormalizedEvent, RawWebhook, WebhookParse } from '../gateway.ts'
import {
  type CheckoutEventView,
  type CheckoutPaymentView,
  cardToSave,
  readCheckoutEvent,
  updateFromEvent,
} from './checkout.transformers.ts'

/** `GET /payments/{id}`, read; undefined when it cannot be had. */
export type CheckoutPaymentFetcher = (id: string) => Promise<CheckoutPaymentView | undefined>

/**
 * Verifies `Cko-Signature` (hex HMAC-SHA256 of the raw body with the connection's
 * `signature_key`) before reading the body, then maps the event by its `type`: Checkout.com's
 * event `data` carries no payment status
 * (https://www.checkout.com/docs/developer-resources/event-notifications/event-types).
 * Event types Payrail does not act on are acknowledged with no events.
 */
export async function parseCheckoutWebhook(
  signatureKey: string | undefined,
  raw: RawWebhook,
  fetchPayment: CheckoutPaymentFetcher,
): Promise<WebhookParse> {
  if (!signatureKey) return { ok: false, status: 404, reason: 'checkout is not connected' }
  const header = raw.headers['cko-signature']
  const given = Buffer.from((Array.isArray(header) ? header[0] : header) ?? '', 'hex')
  const expected = Buffer.from(hmacHex(signatureKey, '', raw.body), 'hex')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, status: 400, reason: 'Cko-Signature does not match' }
  }
  let body: unknown
  try {
    body = JSON.parse(raw.body.toString('utf8'))
  } catch {
    return { ok: false, status: 400, reason: 'body is not JSON' }
  }
  const event = readCheckoutEvent(body)
  if (event === undefined) {
    return { ok: false, status: 400, reason: 'body is not a Checkout.com payment event' }
  }
  if (event === null) return { ok: true, events: [] }
  const update = updateFromEvent(await withSourceToSave(event, fetchPayment))
  if (!update) return { ok: true, events: [] }
  const normalized: NormalizedEvent = {
    eventId: event.id,
    type: event.type,
    // A hosted payment is tracked by its `hpp_…`, an off-session one by its `pay_…`.
    target: { paymentId: event.data.paymentId ?? undefined, trackingId: event.data.id },
    update,
    payload: body,
  }
  return { ok: true, events: [normalized] }
}

/**
 * `payment_captured` carries no `source`, so the card of a page that was asked to save it
 * is read from the payment. Without an answer the capture still applies; only the card is
 * not saved.
 */
async function withSourceToSave(
  event: CheckoutEventView,
  fetchPayment: CheckoutPaymentFetcher,
): Promise<CheckoutEventView> {
  const settles = event.type === 'payment_captured' || event.type === 'payment_paid'
  if (!settles || !event.data.saveCard || cardToSave(event.data)) return event
  const payment = await fetchPayment(event.data.id).catch(() => undefined)
  if (payment?.id !== event.data.id || !payment.card) return event
  return { ...event, data: { ...event.data, card: payment.card } }
}
