import { sql } from 'kysely'
import type { Access } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import { getCustomer } from '../customers/service.ts'
import { getInvoice } from '../invoices/service.ts'
import { findCustomerPaymentMethod } from '../payment-methods/service.ts'
import {
  createPaymentRecord,
  type PaymentDeps,
  type PaymentView,
  processPayment,
} from './service.ts'
import type { Cause } from './state.ts'

export const AUTOMATIC_METADATA_KEY = 'automatic_charge'

/**
 * Charges an invoice's remaining amount to the customer's default card,
 * off-session. Throws the decline (402) like any card payment.
 */
export async function payInvoiceAutomatically(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  cause: Cause,
): Promise<PaymentView> {
  const { invoice } = await getInvoice(deps.db, access, invoiceId)
  const customer = await getCustomer(deps.db, access, invoice.customer_id)
  const method = customer.default_payment_method_id
    ? await findCustomerPaymentMethod(
        deps.db,
        access,
        customer.id,
        customer.default_payment_method_id,
      )
    : undefined
  const view = await createPaymentRecord(deps, access, {
    allocations: [{ invoiceId, amount: invoice.amount_remaining }],
    destinationType: 'INVOICE',
    destinationId: invoiceId,
    subject: null,
    methodType: 'CARD',
    gateway: method?.gateway,
    paymentMethodId: method?.id,
    currency: invoice.currency,
    metadata: { [AUTOMATIC_METADATA_KEY]: 'true' },
    createdBy: cause.causeId,
  })
  return processPayment(deps, access, view.payment.id, cause)
}

/** How many automatic charges an invoice has had. */
export async function countAutomaticAttempts(db: Db, invoiceId: string): Promise<number> {
  const result = await sql<{ n: string }>`
    select count(*) as n from payments p
    join payment_allocations a on a.payment_id = p.id
    where a.invoice_id = ${invoiceId} and p.metadata ->> ${AUTOMATIC_METADATA_KEY} = 'true'
  `.execute(db)
  return Number(result.rows[0]?.n ?? 0)
}
