import { AppError } from '../../core/errors.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import { gatewayContext, gatewayFor, isGatewayName } from '../../gateways/registry.ts'
import { findCustomer } from '../../modules/customers/repository.ts'
import { findPaymentMethod } from '../../modules/payment-methods/repository.ts'
import type { PaymentDeps } from '../../modules/payments/service.ts'
import { stringFields } from '../payload.ts'
import { createJobQueue } from '../queue.ts'

export const SYNC_DEFAULT_PAYMENT_METHOD = 'sync_default_payment_method'

/**
 * Makes the customer's default payment method in Payrail its default at the method's
 * provider too (Stripe Billing charges the customer's default there). Queued in the
 * transaction that changes the default, one per customer (a job key): it reads the default
 * as it stands when it runs, so two changes close together leave the provider on the
 * newer, whatever order they ran in, and a redelivered report of an older card changes
 * nothing. A gateway no longer connected, or a provider that refuses for good (the customer
 * deleted there), ends the job; anything else throws, and graphile-worker retries with backoff.
 */
export async function syncDefaultPaymentMethod(
  deps: PaymentDeps,
  payload: unknown,
): Promise<'synced' | 'nothing_to_sync' | 'not_connected' | 'refused'> {
  const job = stringFields(SYNC_DEFAULT_PAYMENT_METHOD, payload, [
    'tenantId',
    'environmentId',
    'customerId',
  ])
  const customer = await findCustomer(deps.db, job.environmentId, job.customerId)
  const methodId = customer?.default_payment_method_id
  if (!customer || !methodId) return 'nothing_to_sync'
  const method = await findPaymentMethod(deps.db, job.environmentId, customer.id, methodId)
  if (!method || !isGatewayName(method.gateway)) return 'nothing_to_sync'
  const gateway = gatewayFor(method.gateway)
  const gatewayCustomerId = customer.gateway_customer_ids[method.gateway]
  if (!gateway.makeDefaultMethod || typeof gatewayCustomerId !== 'string') return 'nothing_to_sync'
  // The gateway disconnected since: nothing to tell until it is connected again.
  const ctx = await gatewayContext(
    deps,
    { tenantId: job.tenantId, environmentId: job.environmentId },
    method.gateway,
  ).catch((error: unknown) => {
    // Not connected (any more) is a 4xx; anything else (the database, a sealed credential that
    // cannot be opened) may pass, and the job is tried again.
    if (error instanceof AppError && error.status < 500) return undefined
    throw error
  })
  if (!ctx) return 'not_connected'
  const outcome = await gateway.makeDefaultMethod(
    ctx,
    gatewayCustomerId,
    method.gateway_payment_method_id,
  )
  if (outcome === 'refused') {
    deps.logger.warn(
      { customer_id: customer.id, payment_method_id: method.id, gateway: method.gateway },
      "the provider refused the customer's default payment method; left as it is there",
    )
    return 'refused'
  }
  return 'synced'
}

/** Queues `syncDefaultPaymentMethod` for the customer in `trx`: it runs once that commits. */
export async function queueDefaultMethodSync(
  trx: Db,
  scope: Scope,
  customerId: string,
): Promise<void> {
  await createJobQueue(trx).add(
    SYNC_DEFAULT_PAYMENT_METHOD,
    { tenantId: scope.tenantId, environmentId: scope.environmentId, customerId },
    { jobKey: `default-method-${customerId}`, maxAttempts: 25 },
  )
}
