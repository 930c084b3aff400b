import type { Scope } from '../../core/principal.ts'
import { checkoutClient, plain } from '../../gateways/checkout/checkout.client.ts'
import {
  type CheckoutPaymentView,
  readCheckoutPayment,
  updateFromStatus,
} from '../../gateways/checkout/checkout.transformers.ts'
import { gatewayContext } from '../../gateways/registry.ts'
import { applyPaymentUpdate } from '../payments/gateway-updates.ts'
import { findPaymentById } from '../payments/repository.ts'
import { type PaymentDeps, withLockedPayment } from '../payments/service.ts'

const MONEY_TAKEN: ReadonlySet<string> = new Set(['SUCCEEDED', 'OVERPAID', 'RESERVED', 'CAPTURED'])

export interface CheckoutReturn {
  paymentId: string | undefined
  ckoPaymentId: string | undefined
  ckoSessionId: string | undefined
  ckoPaymentSessionId: string | undefined
}

/**
 * Where Checkout.com's hosted page sends the customer back. The query string is
 * only a hint: the payment is asked for with `GET /payments/{id}`, and applied
 * only if Checkout.com says it belongs to this Payrail payment with its amount and
 * currency (a forged `cko-payment-id` changes nothing). Returns where to send the
 * customer next: the payment's own `success_url` or `cancel_url`. A return that cannot
 * be verified (the connection deleted with `?force=true` while the page was open,
 * Checkout.com not answering) changes nothing and goes where the payment's record says:
 * `success_url` once a webhook has settled it, else `cancel_url`. The route is a
 * browser's, answered with a redirect, never an error body.
 */
export async function handleCheckoutReturn(
  deps: PaymentDeps,
  outcome: 'success' | 'failure',
  query: CheckoutReturn,
): Promise<string> {
  const neutral = (id: string, done: boolean) =>
    `${deps.config.publicUrl}/pay/${encodeURIComponent(id)}/${done ? 'complete' : 'cancelled'}`
  const payment = query.paymentId ? await findPaymentById(deps.db, query.paymentId) : undefined
  if (payment?.payment_gateway !== 'checkout')
    return `${deps.config.publicUrl}/pay/unknown/cancelled`
  const scope: Scope = { tenantId: payment.tenant_id, environmentId: payment.environment_id }
  const ckoId = query.ckoPaymentId ?? query.ckoSessionId ?? query.ckoPaymentSessionId
  const fetched = ckoId ? await askCheckout(deps, scope, payment.id, ckoId) : 'unverified'
  // Unasked, the payment's own record decides: one a webhook has already settled is paid.
  let settled = fetched === 'unverified' && MONEY_TAKEN.has(payment.payment_status)
  if (ckoId && fetched !== 'unverified') {
    const genuine =
      fetched !== undefined &&
      fetched.paymentId === payment.id &&
      fetched.amount === payment.amount &&
      fetched.currency === payment.currency
    const update = genuine ? updateFromStatus(fetched) : undefined
    if (update) {
      const view = await withLockedPayment(deps, scope, payment.id, async (trx, locked) => {
        const applied = await applyPaymentUpdate(
          trx,
          scope,
          locked,
          update,
          { cause: 'gateway', causeId: ckoId },
          deps,
        )
        return applied.payment
      })
      // Money taken or held: an overpaid payment (paid twice over) is paid all the same.
      settled = MONEY_TAKEN.has(view.payment.payment_status)
    } else if (!genuine) {
      deps.logger.warn(
        { payment_id: payment.id, cko_id: ckoId },
        'checkout return does not match its payment; ignored',
      )
    }
  }
  const success = outcome === 'success' && settled
  return (success ? payment.success_url : payment.cancel_url) ?? neutral(payment.id, success)
}

/**
 * Checkout.com's own view of `ckoId` (`undefined`: it answered with no payment of Payrail's
 * shape), or `'unverified'` when it cannot be asked: the environment has no active
 * connection (deleted with `?force=true` while the page was open) or the call failed.
 * Logged, and the payment is left as it is.
 */
async function askCheckout(
  deps: PaymentDeps,
  scope: Scope,
  paymentId: string,
  ckoId: string,
): Promise<CheckoutPaymentView | undefined | 'unverified'> {
  try {
    const ctx = await gatewayContext(deps, scope, 'checkout')
    const client = await checkoutClient(ctx)
    // A decline changes nothing here (the page stays open for another card), so its
    // reason, which only the payment's actions carry, is not fetched.
    return readCheckoutPayment(plain(await client.payments.get(ckoId)))
  } catch (error) {
    deps.logger.warn(
      { payment_id: paymentId, cko_id: ckoId, err: error },
      'checkout return cannot be verified with Checkout.com; the payment is left as it is',
    )
    return 'unverified'
  }
}
