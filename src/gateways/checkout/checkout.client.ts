import { Checkout } from 'checkout-sdk-node'
import type { GatewayContext } from '../gateway.ts'

/** The official SDK for a connection: its secret key, and `settings.base_url` as the SDK's `host` (the emulator in tests). */
export function checkoutClient(ctx: Pick<GatewayContext, 'credentials' | 'settings'>): Checkout {
  const secretKey = ctx.credentials?.secret_key
  if (!secretKey) throw new Error('Checkout.com connection has no secret_key')
  return new Checkout(secretKey, {
    ...(ctx.settings.base_url && { host: ctx.settings.base_url }),
    timeout: 15_000,
  })
}

/** The SDK answers `Object`: this turns it into plain JSON to read with the transformers' checks. */
export function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null))
}
