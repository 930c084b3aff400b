import type { Scope } from '../../core/principal.ts'
import { checkoutClient, plain } from '../../gateways/checkout/checkout.client.ts'
import {
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
 * customer next: the payment's own `success_url` or `cancel_url`.
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
  let settled = false
  if (ckoId) {
    const ctx = await gatewayContext(deps, scope, 'checkout')
    const client = await checkoutClient(ctx)
    // A decline changes nothing here (the page stays open for another card), so its
    // reason, which only the payment's actions carry, is not fetched.
    const fetched = readCheckoutPayment(plain(await client.payments.get(ckoId).catch(() => null)))
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
