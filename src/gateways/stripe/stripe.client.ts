import Stripe from 'stripe'
import type { GatewayContext } from '../gateway.ts'

/**
 * The official SDK for a connection: its secret key, and `settings.base_url` when
 * the connection points at another Stripe API (the local emulator in tests).
 */
export function stripeClient(ctx: Pick<GatewayContext, 'credentials' | 'settings'>): Stripe {
  const secretKey = ctx.credentials?.secret_key
  if (!secretKey) throw new Error('Stripe connection has no secret_key')
  const base = ctx.settings.base_url ? new URL(ctx.settings.base_url) : undefined
  return new Stripe(secretKey, {
    maxNetworkRetries: 2,
    timeout: 15_000,
    ...(base && {
      host: base.hostname,
      port: base.port || (base.protocol === 'https:' ? 443 : 80),
      protocol: base.protocol === 'http:' ? 'http' : 'https',
    }),
  })
}
