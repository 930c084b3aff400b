import { timingSafeEqual } from 'node:crypto'
import { hmacHex } from '../../core/webhook-signature.ts'
import type { NormalizedEvent, PaymentUpdate, RawWebhook, WebhookParse } from '../gateway.ts'

/** What an external system reports, as it posts it. */
export interface ExternalReport {
  event_id: string
  payment_id: string
  status: ExternalStatus
  amount_received?: number | undefined
  error_code?: string | undefined
  error_message?: string | undefined
}

export const EXTERNAL_STATUSES = ['processing', 'succeeded', 'failed', 'cancelled'] as const
export type ExternalStatus = (typeof EXTERNAL_STATUSES)[number]

/**
 * Verifies `X-Signature` (hex HMAC-SHA256 of the raw body with the connection's
 * `webhook_secret`, optionally prefixed `sha256=`) before reading a byte of the body.
 */
export function parseExternalWebhook(secret: string | undefined, raw: RawWebhook): WebhookParse {
  if (!secret) return { ok: false, status: 404, reason: 'external gateway is not connected' }
  const header = raw.headers['x-signature']
  const given = (Array.isArray(header) ? header[0] : header)?.replace(/^sha256=/, '') ?? ''
  const expected = hmacHex(secret, '', raw.body)
  const givenBytes = Buffer.from(given, 'hex')
  const expectedBytes = Buffer.from(expected, 'hex')
  if (givenBytes.length !== expectedBytes.length || !timingSafeEqual(givenBytes, expectedBytes)) {
    return { ok: false, status: 400, reason: 'signature does not match' }
  }
  const report = parseReport(raw.body)
  if (!report) return { ok: false, status: 400, reason: 'body is not an external payment report' }
  const event: NormalizedEvent = {
    eventId: report.event_id,
    type: `payment.${report.status}`,
    target: { paymentId: report.payment_id },
    update: updateFor(report),
    payload: report,
  }
  return { ok: true, events: [event] }
}

function updateFor(report: ExternalReport): PaymentUpdate {
  switch (report.status) {
    case 'processing':
      return { status: 'PROCESSING' }
    case 'succeeded':
      return { status: 'SUCCEEDED' }
    case 'failed':
      return {
        status: 'FAILED',
        error: {
          code: report.error_code ?? 'external_failure',
          message: report.error_message ?? 'Reported failed',
        },
      }
    case 'cancelled':
      return { status: 'CANCELLED' }
  }
}

function parseReport(body: Buffer): ExternalReport | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined
  const record = parsed as Record<string, unknown>
  const status = EXTERNAL_STATUSES.find((s) => s === record.status)
  if (typeof record.event_id !== 'string' || typeof record.payment_id !== 'string' || !status)
    return undefined
  return {
    event_id: record.event_id,
    payment_id: record.payment_id,
    status,
    error_code: typeof record.error_code === 'string' ? record.error_code : undefined,
    error_message: typeof record.error_message === 'string' ? record.error_message : undefined,
  }
}
