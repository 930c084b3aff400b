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
export function signWebhook(
  secrets: string | readonly string[],
  body: string | Buffer,
  timestamp: number,
): string {
  const signatures = (typeof secrets === 'string' ? [secrets] : secrets).map(
    (secret) => `v1=${hmacHex(secret, `${timestamp}.`, body)}`,
  )
  return `t=${timestamp},${signatures.join(',')}`
}

/**
 * A Standard Webhooks signature (https://www.standardwebhooks.com, the `standardwebhooks`
 * libraries): `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed by the secret's
 * bytes (the base64 after `whsec_`), one per secret, space-separated (a secret being rolled
 * signs beside its successor).
 *
 * @example
 * const header = standardWebhookSignature([secret], 'evt_…', Math.floor(Date.now() / 1000), body)
 */
export function standardWebhookSignature(
  secrets: readonly string[],
  id: string,
  timestamp: number,
  body: string,
): string {
  return secrets
    .map((secret) => {
      const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
      const mac = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body)
      return `v1,${mac.digest('base64')}`
    })
    .join(' ')
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
