import type { Scope } from '../../core/principal.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { BillingObject } from '../../gateways/gateway.ts'
import { type GatewayDeps, gatewayContext } from '../../gateways/registry.ts'
import { BILLING_OBJECT_TYPES, eachBillingObject } from '../../gateways/stripe/stripe.billing.ts'
import { applyBillingObject } from './service.ts'

export type BackfillCounts = Record<BillingObject['objectType'], number>

/**
 * `payrail sync stripe`: copies every product, price, subscription, schedule,
 * invoice and balance transaction of the connected Stripe account into the
 * environment, one transaction per object. Safe to run again: it updates what is there.
 */
export async function backfillStripe(
  deps: GatewayDeps,
  scope: Scope,
  onProgress: (objectType: BillingObject['objectType'], done: number) => void = () => undefined,
): Promise<BackfillCounts> {
  const ctx = await gatewayContext(deps, scope, 'stripe')
  const counts: BackfillCounts = {
    product: 0,
    price: 0,
    subscription: 0,
    subscription_schedule: 0,
    invoice: 0,
    balance_transaction: 0,
  }
  for (const objectType of BILLING_OBJECT_TYPES) {
    await eachBillingObject(ctx, objectType, async (billing) => {
      await inTransaction(deps.db, (trx) => applyBillingObject(trx, scope, billing, deps.clock))
      counts[objectType] += 1
      onProgress(objectType, counts[objectType])
    })
  }
  return counts
}
