import type { Scope } from '../../core/principal.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { BillingObject } from '../../gateways/gateway.ts'
import { type GatewayDeps, gatewayContext } from '../../gateways/registry.ts'
import {
  BILLING_OBJECT_TYPES,
  eachBillingObject,
  type ListRetry,
  withAllLines,
} from '../../gateways/stripe/stripe.billing.ts'
import { stripeClient } from '../../gateways/stripe/stripe.client.ts'
import type { Logger } from '../../logger.ts'
import { applyBillingObject } from './service.ts'

/** Objects synced by type, and `failed`: those that could not be (each logged). */
export type BackfillCounts = Record<BillingObject['objectType'] | 'failed', number>

/**
 * `payrail sync stripe`: copies every product, price, subscription, schedule,
 * invoice and balance transaction of the connected Stripe account into the
 * environment, one transaction per object. Safe to run again: it updates what is there.
 * A list page Stripe still refuses after its retries (`retry`) is logged and counted
 * `failed`, and the sync goes on with the next type.
 */
export async function backfillStripe(
  deps: GatewayDeps & { logger: Logger },
  scope: Scope,
  onProgress: (objectType: BillingObject['objectType'], done: number) => void = () => undefined,
  retry: ListRetry = {},
): Promise<BackfillCounts> {
  const ctx = await gatewayContext(deps, scope, 'stripe')
  const stripe = await stripeClient(ctx)
  const counts: BackfillCounts = {
    product: 0,
    price: 0,
    subscription: 0,
    subscription_schedule: 0,
    invoice: 0,
    balance_transaction: 0,
    failed: 0,
  }
  for (const objectType of BILLING_OBJECT_TYPES) {
    try {
      await eachBillingObject(ctx, objectType, (billing) => syncOne(objectType, billing), retry)
    } catch (error) {
      // A list page Stripe kept refusing (rate limited, down): the rest of this type is not
      // read, and the next types are (before, the sync stopped here, nothing after it synced).
      deps.logger.error(
        { err: error, object_type: objectType },
        'Stripe list not synced past this page',
      )
      counts.failed += 1
    }
  }
  return counts

  async function syncOne(
    objectType: BillingObject['objectType'],
    billing: BillingObject,
  ): Promise<void> {
    // One object that cannot be mirrored is logged and counted, and the sync goes on: it
    // stopped there, and every object after it (older invoices, every balance
    // transaction) was never synced.
    try {
      // An invoice's lines past the ten Stripe embeds are read here, where a failure to
      // read them counts this object failed rather than stopping the sync.
      const full =
        objectType === 'invoice'
          ? { ...billing, object: await withAllLines(stripe, billing.object) }
          : billing
      await inTransaction(deps.db, (trx) => applyBillingObject(trx, scope, full, deps.clock))
    } catch (error) {
      deps.logger.error(
        { err: error, object_type: objectType, stripe_id: billing.object.id },
        'Stripe object not synced',
      )
      counts.failed += 1
      return
    }
    counts[objectType] += 1
    onProgress(objectType, counts[objectType])
  }
}
