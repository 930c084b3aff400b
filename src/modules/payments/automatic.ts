import { AppError } from '../../core/errors.ts'
import type { Access } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Payment } from '../../db/database.ts'
import { getCustomer } from '../customers/service.ts'
import { getInvoice } from '../invoices/service.ts'
import { findCustomerPaymentMethod } from '../payment-methods/service.ts'
import { countFailedFlaggedAttempts, newestFlaggedPayment } from './repository.ts'
import {
  createPaymentRecord,
  isDeclineCode,
  type PaymentDeps,
  type PaymentView,
  processPayment,
} from './service.ts'
import type { Cause } from './state.ts'

export const AUTOMATIC_METADATA_KEY = 'automatic_charge'

/**
 * How long after it was made a charge whose outcome is unknown is still asked again.
 * The retry is safe only while the provider still replays its idempotency key (Stripe
 * keeps a key at least 24 hours: https://docs.stripe.com/api/idempotent_requests);
 * later, the same key could be taken for a new charge.
 */
export const UNKNOWN_OUTCOME_RETRY_WINDOW_MS = 12 * 60 * 60 * 1000

/**
 * Charges an invoice's remaining amount to the customer's default card, off-session.
 * Throws the decline (402) like any card payment, and 502 `gateway_error` when the
 * provider's answer was lost (the payment stays PROCESSING).
 *
 * The charge is a new payment only when the invoice has no automatic charge yet or
 * its last one ended in a definitive answer (a decline, a cancellation). Otherwise the
 * last one is processed again: one left PROCESSING by a lost answer or a crash, or
 * FAILED by an error rather than a decline, is asked again with the same idempotency
 * key, so the provider replays a charge it took instead of taking a second.
 *
 * @example
 * await payInvoiceAutomatically(deps, access, invoiceId, { cause: 'job', causeId: 'charge_due_invoices' })
 */
export async function payInvoiceAutomatically(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  cause: Cause,
): Promise<PaymentView> {
  const last = await newestFlaggedPayment(
    deps.db,
    access.environmentId,
    invoiceId,
    AUTOMATIC_METADATA_KEY,
  )
  if (last && !endedDefinitively(last)) {
    assertStillReplayable(last, deps.clock.now())
    return processPayment(deps, access, last, cause)
  }
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

/**
 * The invoice's last automatic charge when it is still PROCESSING: the provider's
 * answer was lost or never recorded, so whether money moved is not known yet.
 */
export async function unansweredAutomaticCharge(
  db: Db,
  access: Access,
  invoiceId: string,
): Promise<Payment | undefined> {
  const last = await newestFlaggedPayment(
    db,
    access.environmentId,
    invoiceId,
    AUTOMATIC_METADATA_KEY,
  )
  return last?.payment_status === 'PROCESSING' ? last : undefined
}

/**
 * How many automatic charge attempts of an invoice failed: declines and calls that
 * got no answer, one each, whether they were new payments or a payment asked again.
 */
export async function countAutomaticAttempts(
  db: Db,
  access: Access,
  invoiceId: string,
): Promise<number> {
  return countFailedFlaggedAttempts(db, access.environmentId, invoiceId, AUTOMATIC_METADATA_KEY)
}

/** A decline or a cancellation: the next automatic attempt is a new payment, with a key of its own. */
function endedDefinitively(payment: Payment): boolean {
  if (payment.payment_status === 'CANCELLED') return true
  return payment.payment_status === 'FAILED' && isDeclineCode(payment.status_code)
}

/** A charge still PROCESSING is asked again only while the provider surely remembers its key. */
function assertStillReplayable(payment: Payment, now: Date): void {
  if (payment.payment_status !== 'PROCESSING') return
  if (now.getTime() - payment.created_at.getTime() <= UNKNOWN_OUTCOME_RETRY_WINDOW_MS) return
  throw new AppError(
    'conflict',
    `The outcome of payment ${payment.id} is unknown and too old to ask the provider again; its report settles it`,
    { payment_id: payment.id, payment_status: payment.payment_status },
  )
}
