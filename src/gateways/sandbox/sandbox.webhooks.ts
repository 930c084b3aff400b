import { verifyWebhookSignature } from '../../core/webhook-signature.ts'
import type { NormalizedEvent, PaymentUpdate, RawWebhook, WebhookParse } from '../gateway.ts'
import { SANDBOX_SIGNATURE_HEADER, type SandboxEvent } from './sandbox-provider.ts'

/** Verifies a sandbox notification (`payrail-signature`, 300 s tolerance) and maps it to a payment update. */
export function parseSandboxWebhook(
  secret: string | undefined,
  raw: RawWebhook,
  now: Date,
): WebhookParse {
  if (!secret) return { ok: false, status: 404, reason: 'sandbox is not available' }
  const header = raw.headers[SANDBOX_SIGNATURE_HEADER]
  const check = verifyWebhookSignature(
    secret,
    raw.body,
    Array.isArray(header) ? header[0] : header,
    now,
  )
  if (!check.ok) return { ok: false, status: 400, reason: check.reason }
  const event = parseEvent(raw.body)
  if (!event) return { ok: false, status: 400, reason: 'body is not a sandbox event' }
  const update = updateFor(event)
  if (!update) return { ok: true, events: [] }
  const normalized: NormalizedEvent = {
    eventId: event.id,
    type: event.type,
    target: {
      paymentId: event.data.payment_id,
      trackingId: event.data.session_id ?? event.data.charge_id ?? undefined,
    },
    update,
    payload: event,
  }
  return { ok: true, events: [normalized] }
}

function updateFor(event: SandboxEvent): PaymentUpdate | undefined {
  const { data } = event
  const card = data.card
    ? {
        brand: data.card.brand,
        last4: data.card.last4,
        expMonth: data.card.exp_month,
        expYear: data.card.exp_year,
        gatewayPaymentMethodId: data.card.id,
      }
    : undefined
  const error = data.error ? { code: data.error.code, message: data.error.message } : undefined
  switch (event.type) {
    case 'checkout.completed':
      return {
        status: 'SUCCEEDED',
        amountReceived: BigInt(data.amount_received),
        gatewayPaymentId: data.session_id ?? undefined,
        card: data.card?.saved ? card : undefined,
        attempt: { status: 'succeeded' },
      }
    case 'checkout.attempt_failed':
      return {
        attempt: {
          status: 'failed',
          errorCode: error?.code ?? null,
          errorMessage: error?.message ?? null,
        },
      }
    case 'checkout.expired':
    case 'crypto.expired':
      return {
        status: 'FAILED',
        error: { code: 'expired', message: 'The customer did not pay before the checkout expired' },
      }
    case 'charge.succeeded':
      return {
        status: 'SUCCEEDED',
        amountReceived: BigInt(data.amount_received),
        gatewayPaymentId: data.charge_id ?? undefined,
      }
    case 'charge.failed':
      return { status: 'FAILED', gatewayPaymentId: data.charge_id ?? undefined, error }
    case 'crypto.paid':
      return { status: 'PROCESSING', gatewayPaymentId: data.session_id ?? undefined }
    case 'crypto.confirmed': {
      const received = BigInt(data.amount_received)
      return {
        status: received > BigInt(data.amount) ? 'OVERPAID' : 'SUCCEEDED',
        amountReceived: received,
      }
    }
    case 'refund.succeeded':
      return {
        refund: {
          refundId: data.refund_id ?? undefined,
          gatewayRefundId: data.gateway_refund_id ?? '',
          status: 'succeeded',
          amount: BigInt(data.amount),
        },
      }
    default:
      return undefined
  }
}

function parseEvent(body: Buffer): SandboxEvent | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'))
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      typeof (parsed as { id?: unknown }).id === 'string' &&
      typeof (parsed as { type?: unknown }).type === 'string' &&
      typeof (parsed as { data?: { payment_id?: unknown } }).data?.payment_id === 'string'
    ) {
      return parsed as SandboxEvent
    }
  } catch {
    return undefined
  }
  return undefined
}
