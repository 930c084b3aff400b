import type { Checkout } from 'checkout-sdk-node'
import type { GatewayContext } from '../gateway.ts'

/**
 * The official SDK for a connection: its secret key, and `settings.base_url` as the SDK's
 * `host` (the emulator in tests). The SDK is loaded on first use, as Stripe's is
 * (`stripeSdk`): a Payrail that takes no money through Checkout.com never holds it.
 */
export async function checkoutClient(
  ctx: Pick<GatewayContext, 'credentials' | 'settings'>,
): Promise<Checkout> {
  const secretKey = ctx.credentials?.secret_key
  if (!secretKey) throw new Error('Checkout.com connection has no secret_key')
  const { Checkout: Sdk } = await import('checkout-sdk-node')
  return new Sdk(secretKey, {
    ...(ctx.settings.base_url && { host: ctx.settings.base_url }),
    timeout: 15_000,
  })
}

/** The SDK answers `Object`: this turns it into plain JSON to read with the transformers' checks. */
export function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null))
}
