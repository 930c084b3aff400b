import { createHmac } from 'node:crypto'

/**
 * The `Stripe-Signature` header for `payload` sent at `timestamp` (unix seconds):
 * `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<payload>" keyed with the endpoint secret>`.
 * See https://docs.stripe.com/webhooks#verify-manually. `stripe.webhooks.constructEvent`
 * accepts it while `timestamp` is within its tolerance (300 s by default).
 */
export function signatureHeader(payload: string, secret: string, timestamp: number): string {
  return `t=${timestamp},v1=${computeSignature(payload, secret, timestamp)}`
}

export function computeSignature(payload: string, secret: string, timestamp: number): string {
  return createHmac('sha256', secret).update(`${timestamp}.${payload}`, 'utf8').digest('hex')
}
