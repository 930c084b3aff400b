import { applyBalanceChange } from '../../modules/balances/service.ts'
import type { Gateway } from '../gateway.ts'

/**
 * The customer's own account balance (`CREDITS`, or `PLATFORM` on the invoice
 * on-ramp): a payment debits the balance through the ledger in the payment's
 * transaction, and a refund credits it back. A balance that does not cover the
 * payment declines it with `insufficient_funds`; it never goes negative.
 */
export const platformGateway: Gateway = {
  name: 'platform',
  capabilities: {
    hostedCheckout: false,
    savedMethodCharge: false,
    refund: true,
    statusSync: false,
    webhookVerification: false,
    methodTypes: ['CREDITS'],
    internal: true,
    withdrawsPages: false,
    paysAfterFailure: false,
  },
  async settleInternal(trx, ctx, payment) {
    const debit = await applyBalanceChange(
      trx,
      ctx.scope,
      {
        customerId: payment.customer_id,
        currency: payment.currency,
        amount: -payment.amount,
        type: 'payment',
        source: { type: 'payment', id: payment.id },
        description: payment.invoice_number ? `Payment of ${payment.invoice_number}` : 'Payment',
      },
      ctx.clock,
    )
    if (debit) return { ok: true }
    return {
      ok: false,
      decline: {
        code: 'insufficient_funds',
        message: 'The account balance does not cover this payment',
      },
    }
  },
  async refundInternal(trx, ctx, payment, refund) {
    await applyBalanceChange(
      trx,
      ctx.scope,
      {
        customerId: payment.customer_id,
        currency: payment.currency,
        amount: refund.amount,
        type: 'refund',
        source: { type: 'refund', id: refund.id },
        description: 'Refund to balance',
      },
      ctx.clock,
    )
  },
}
