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
        currency: data.currency,
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
    // An off-session charge, reported before its call answers: the charge is the payment's
    // attempt and the object it tracks, recorded with the move, so that the move's event
    // shows them (the answer then finds the attempt recorded, and adds none).
    case 'charge.succeeded':
      return {
        status: 'SUCCEEDED',
        amountReceived: BigInt(data.amount_received),
        currency: data.currency,
        gatewayPaymentId: data.charge_id ?? undefined,
        trackingId: data.charge_id ?? undefined,
        attempt: { status: 'succeeded' },
      }
    case 'charge.failed':
      return {
        status: 'FAILED',
        gatewayPaymentId: data.charge_id ?? undefined,
        trackingId: data.charge_id ?? undefined,
        error,
        attempt: {
          status: 'failed',
          errorCode: error?.code ?? null,
          errorMessage: error?.message ?? null,
        },
      }
    case 'crypto.paid':
      return { status: 'PROCESSING', gatewayPaymentId: data.session_id ?? undefined }
    case 'crypto.confirmed': {
      const received = BigInt(data.amount_received)
      return {
        status: received > BigInt(data.amount) ? 'OVERPAID' : 'SUCCEEDED',
        amountReceived: received,
        currency: data.currency,
      }
    }
    case 'refund.succeeded':
      return {
        currency: data.currency,
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

/** A sandbox event, its data checked field by field: a signed body of the wrong shape is a 400. */
function parseEvent(body: Buffer): SandboxEvent | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined
  const event = parsed as Record<string, unknown>
  const data = event.data as Record<string, unknown> | null | undefined
  if (
    typeof event.id !== 'string' ||
    typeof event.type !== 'string' ||
    typeof data !== 'object' ||
    data === null ||
    typeof data.payment_id !== 'string' ||
    typeof data.currency !== 'string' ||
    !isAmount(data.amount) ||
    !isAmount(data.amount_received) ||
    !optional(data.session_id, isString) ||
    !optional(data.charge_id, isString) ||
    !optional(data.refund_id, isString) ||
    !optional(data.gateway_refund_id, isString) ||
    !optional(data.card, isCard) ||
    !optional(data.error, isError)
  ) {
    return undefined
  }
  return parsed as SandboxEvent
}

const isString = (value: unknown): value is string => typeof value === 'string'
const isAmount = (value: unknown) =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
const optional = (value: unknown, check: (value: unknown) => boolean) =>
  value === undefined || value === null || check(value)

function isCard(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const card = value as Record<string, unknown>
  return (
    isString(card.id) &&
    isString(card.brand) &&
    isString(card.last4) &&
    Number.isInteger(card.exp_month) &&
    Number.isInteger(card.exp_year) &&
    typeof card.saved === 'boolean'
  )
}

function isError(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const error = value as Record<string, unknown>
  return isString(error.code) && isString(error.message)
}
