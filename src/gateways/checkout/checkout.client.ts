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
  const client = new Sdk(secretKey, {
    ...(ctx.settings.base_url && { host: ctx.settings.base_url }),
    timeout: CHECKOUT_TIMEOUT_MS,
  })
  return withDeadline(client, CHECKOUT_TIMEOUT_MS)
}

/** How long a Checkout.com call may take before its answer counts as lost. */
const CHECKOUT_TIMEOUT_MS = 15_000

/**
 * `client` (or any object of API groups) whose every method call fails after `ms` without an
 * answer. The SDK's own `timeout` only reaches its axios client; with fetch, its default, a
 * call Checkout.com never answers would wait for undici's 300 s, holding the request that
 * made it. Past the deadline the call is abandoned and fails as an answer lost (no
 * `http_code`: retryable, the charge or refund asked again with its idempotency key).
 */
export function withDeadline<T extends object>(client: T, ms: number): T {
  const groups = new Map<PropertyKey, unknown>()
  return new Proxy(client, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver)
      if (typeof value === 'function') {
        return (...args: unknown[]) => deadline(Reflect.apply(value, target, args), ms)
      }
      if (typeof value !== 'object' || value === null) return value
      let group = groups.get(property)
      if (!group) {
        group = withDeadline(value, ms)
        groups.set(property, group)
      }
      return group
    },
  })
}

function deadline(call: unknown, ms: number): unknown {
  if (!(call instanceof Promise)) return call
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Checkout.com did not answer within ${ms / 1000} s`)),
      ms,
    )
    timer.unref()
  })
  return Promise.race([call, late]).finally(() => clearTimeout(timer))
}

/** The SDK answers `Object`: this turns it into plain JSON to read with the transformers' checks. */
export function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null))
}
