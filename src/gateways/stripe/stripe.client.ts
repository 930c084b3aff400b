import type Stripe from 'stripe'
import type { GatewayContext, GatewayFailure } from '../gateway.ts'

let sdk: Promise<typeof Stripe> | undefined

/**
 * The official SDK, loaded on its first use: a Payrail that takes no money through Stripe
 * never holds it (with Checkout.com's, about 6 MB of heap and 13 MB of RSS,
 * `docs/performance.md`). The SDK's error classes are `(await stripeSdk()).errors`.
 */
export function stripeSdk(): Promise<typeof Stripe> {
  sdk ??= import('stripe').then((module) => module.default)
  return sdk
}

/**
 * The official SDK for a connection: its secret key, and `settings.base_url` when
 * the connection points at another Stripe API (the local emulator in tests).
 */
export async function stripeClient(
  ctx: Pick<GatewayContext, 'credentials' | 'settings'>,
): Promise<Stripe> {
  const secretKey = ctx.credentials?.secret_key
  if (!secretKey) throw new Error('Stripe connection has no secret_key')
  const base = ctx.settings.base_url ? new URL(ctx.settings.base_url) : undefined
  const Sdk = await stripeSdk()
  return new Sdk(secretKey, {
    maxNetworkRetries: 2,
    timeout: 15_000,
    ...(base && {
      host: base.hostname,
      port: base.port || (base.protocol === 'https:' ? 443 : 80),
      protocol: base.protocol === 'http:' ? 'http' : 'https',
    }),
  })
}

/** What a Stripe call's error says: its code and message, and whether asking again may succeed. */
export async function failureOf(error: unknown): Promise<GatewayFailure> {
  const { errors } = await stripeSdk()
  if (error instanceof errors.StripeError) {
    // A 429 (rate limit) took nothing: asked again later, with the same key.
    const retryable =
      error instanceof errors.StripeConnectionError ||
      error instanceof errors.StripeAPIError ||
      error instanceof errors.StripeRateLimitError ||
      (error.statusCode !== undefined && error.statusCode >= 500)
    return { code: error.code ?? error.type, message: error.message, retryable }
  }
  return {
    code: 'stripe_error',
    message: error instanceof Error ? error.message : String(error),
    retryable: true,
  }
}
