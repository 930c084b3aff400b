import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * The `Cko-Signature` header of a webhook: hex HMAC-SHA256 of the raw body keyed with the
 * webhook's signature key. See https://www.checkout.com/docs/developer-resources/webhooks
 * (“Verify the signature”).
 */
export function ckoSignature(rawBody: string, signatureKey: string): string {
  return createHmac('sha256', signatureKey).update(rawBody, 'utf8').digest('hex')
}

/** What a receiver does: recompute and compare in constant time. */
export function verifyCkoSignature(
  rawBody: string,
  signature: string,
  signatureKey: string,
): boolean {
  const expected = Buffer.from(ckoSignature(rawBody, signatureKey), 'hex')
  const given = Buffer.from(signature, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}
