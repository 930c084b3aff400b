import { createHmac, timingSafeEqual } from 'node:crypto'

/** Seconds a signed notification stays acceptable, as Stripe does it. */
export const SIGNATURE_TOLERANCE_SECONDS = 300

/**
 * Payrail's own inbound signature (sandbox and external rails):
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
 *
 * @example
 * const header = signWebhook(secret, body, Math.floor(Date.now() / 1000))
 */
export function signWebhook(secret: string, body: string | Buffer, timestamp: number): string {
  return `t=${timestamp},v1=${hmacHex(secret, `${timestamp}.`, body)}`
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string }

/** Constant-time check of a `t=…,v1=…` header, refusing timestamps outside the tolerance. */
export function verifyWebhookSignature(
  secret: string,
  body: Buffer,
  header: string | undefined,
  now: Date,
  toleranceSeconds = SIGNATURE_TOLERANCE_SECONDS,
): SignatureCheck {
  if (!header) return { ok: false, reason: 'missing signature header' }
  const parts = new Map<string, string[]>()
  for (const item of header.split(',')) {
    const [key, value] = item.split('=', 2)
    if (key && value) parts.set(key.trim(), [...(parts.get(key.trim()) ?? []), value.trim()])
  }
  const timestamp = Number(parts.get('t')?.[0])
  const signatures = parts.get('v1') ?? []
  if (!Number.isInteger(timestamp) || signatures.length === 0)
    return { ok: false, reason: 'malformed signature header' }
  if (Math.abs(now.getTime() / 1000 - timestamp) > toleranceSeconds) {
    return { ok: false, reason: 'timestamp outside the tolerance' }
  }
  const expected = Buffer.from(hmacHex(secret, `${timestamp}.`, body), 'hex')
  const match = signatures.some((signature) => {
    const given = Buffer.from(signature, 'hex')
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
  return match ? { ok: true } : { ok: false, reason: 'signature does not match' }
}

/** Plain HMAC-SHA256 of the raw body, hex: the `X-Signature` style some external systems use. */
export function hmacHex(secret: string | Buffer, prefix: string, body: string | Buffer): string {
  return createHmac('sha256', secret).update(prefix).update(body).digest('hex')
}
