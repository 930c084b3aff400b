import { expect } from 'vitest'
import type { CheckoutEmulator } from './emulators/checkout/emulator.ts'
import type { CheckoutTestCard } from './emulators/checkout/server.ts'
import type { TestContext } from './harness.ts'

/** A card stored at Checkout.com (`src_…`) and saved in Payrail as the customer's default. */
export async function defaultCheckoutCard(
  ctx: TestContext,
  emulator: CheckoutEmulator,
  customerId: string,
  card: CheckoutTestCard,
) {
  const sourceId = emulator.seedCardSource(card)
  const method = await ctx.db
    .insertInto('payment_methods')
    .values({
      id: `pm_cko_${sourceId.slice(4, 16)}`,
      tenant_id: ctx.main.tenant.id,
      environment_id: ctx.main.test.id,
      customer_id: customerId,
      gateway: 'checkout',
      gateway_payment_method_id: sourceId,
      type: 'card',
      card_brand: 'visa',
      card_last4: card.slice(-4),
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  const made = await ctx.post(`/v1/customers/${customerId}/payment_methods/${method.id}/default`)
  expect(made.status, made.text).toBe(200)
  return { methodId: method.id, sourceId }
}
