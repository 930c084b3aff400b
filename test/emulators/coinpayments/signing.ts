import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Hex HMAC-SHA512 of the exact raw body: the `HMAC` header of API requests (keyed with the
 * private API key) and of IPNs (keyed with the IPN secret).
 * https://www.coinpayments.net/apidoc-intro and https://www.coinpayments.net/merchant-tools-ipn
 */
export function coinpaymentsHmac(rawBody: string, key: string): string {
  return createHmac('sha512', key).update(rawBody, 'utf8').digest('hex')
}

/** Whether `signature` is the HMAC of `rawBody` under `key` (compared in constant time). */
export function verifyCoinpaymentsHmac(rawBody: string, key: string, signature: string): boolean {
  const expected = Buffer.from(coinpaymentsHmac(rawBody, key), 'utf8')
  const given = Buffer.from(signature.toLowerCase(), 'utf8')
  return expected.length === given.length && timingSafeEqual(expected, given)
}
