import { AppError, isRefusalOrUnreachable } from '../../core/errors.ts'
import { type Access, scopeOf } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Payment } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import { assertMayTakeMoney, gatewayContext, isGatewayName } from '../../gateways/registry.ts'
import { getCustomer } from '../customers/service.ts'
import { assertPayable, getInvoice } from '../invoices/service.ts'
import { findCustomerPaymentMethod } from '../payment-methods/service.ts'
import { assertStartsNoEndedSubscription } from '../settlement/service.ts'
import { setNextPaymentAttemptLocked } from '../subscriptions/next-payment-attempt.ts'
import {
  countFailedFlaggedAttempts,
  newestFlaggedPayment,
  openPaymentsForInvoice,
} from './repository.ts'
import { AUTOMATIC_METADATA_KEY } from './schemas.ts'
import {
  cancelPayment,
  createPaymentRecord,
  isDeclineCode,
  type PaymentDeps,
  type PaymentView,
  processPayment,
} from './service.ts'
import type { Cause } from './state.ts'

/** Attempts per invoice before Payrail stops and leaves it to the customer, like Stripe's retry schedule. */
export const MAX_AUTOMATIC_ATTEMPTS = 4
/** After a decline, the next attempt (a new payment) comes three days later. */
export const RETRY_AFTER_MS = 3 * 24 * 60 * 60 * 1000

/**
 * Charges an invoice's remaining amount to the customer's default card, off-session.
 * Throws the decline (402) like any card payment, and 502 `gateway_error` when the
 * provider's answer was lost (the payment stays PROCESSING).
 *
 * The charge is a new payment only when the invoice has no automatic charge yet or
 * its last one ended in a definitive answer (a decline, a cancellation). Otherwise the
 * last one is processed again: one left PROCESSING by a lost answer or a crash, or
 * FAILED by an error rather than a decline, is asked again with the same idempotency
 * key, so the provider replays a charge it took instead of taking a second. The
 * invoice's open pages are withdrawn first (`withdrawOpenPages`), once the charge is known
 * to be possible (the invoice payable, a default card, its gateway connected).
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
    // A charge in flight keeps any page from opening beside it; a FAILED one does not.
    if (last.payment_status !== 'PROCESSING') {
      await payableInvoice(deps, access, invoiceId)
      if (last.payment_gateway !== null) await assertCanCharge(deps, access, last.payment_gateway)
      await withdrawOpenPages(deps, access, invoiceId, cause)
    }
    // Asked again with the same key while the provider surely remembers it; later, looked up.
    return processPayment(deps, access, last, cause)
  }
  const invoice = await payableInvoice(deps, access, invoiceId)
  const customer = await getCustomer(deps.db, access, invoice.customer_id)
  const method = customer.default_payment_method_id
    ? await findCustomerPaymentMethod(
        deps.db,
        access,
        customer.id,
        customer.default_payment_method_id,
      )
    : undefined
  if (!method) {
    // Before any page is withdrawn: a charge that cannot run must not close the customer's.
    throw new AppError('no_default_payment_method', 'The customer has no default card to charge', {
      invoice_id: invoiceId,
      customer_id: customer.id,
    })
  }
  await assertCanCharge(deps, access, method.gateway)
  await withdrawOpenPages(deps, access, invoiceId, cause)
  const view = await createPaymentRecord(deps, access, {
    // What is owed when the invoice is locked: money that landed since it was read above
    // (while its pages were withdrawn) is not charged again, nor does it fail the charge.
    allocations: [{ invoiceId, amount: 'remaining' }],
    destinationType: 'INVOICE',
    destinationId: invoiceId,
    subject: null,
    methodType: 'CARD',
    gateway: method.gateway,
    paymentMethodId: method.id,
    currency: invoice.currency,
    metadata: { [AUTOMATIC_METADATA_KEY]: 'true' },
    createdBy: cause.causeId,
  })
  return processPayment(deps, access, view.payment.id, cause)
}

/**
 * The invoice, if a payment of it may be made now (`assertPayable`: finalized, owing, its
 * payment window open), checked before any page is withdrawn: a charge that cannot run must
 * not close the customer's pages. Before, an invoice past its window had its pages withdrawn,
 * and then its charge refused. The charge checks again under the invoice's lock.
 */
async function payableInvoice(deps: PaymentDeps, access: Access, invoiceId: string) {
  const { invoice } = await getInvoice(deps.db, access, invoiceId)
  assertPayable(invoice, deps.clock.now())
  // The first invoice of a subscription whose cancel at its period end has come pays nothing
  // either (the payment would be refused after the page was withdrawn).
  await assertStartsNoEndedSubscription(deps.db, scopeOf(access), invoice, deps.clock.now())
  return invoice
}

/**
 * The card's gateway can charge it now (connected, and not the sandbox in a live
 * environment), checked before any page is withdrawn: a charge that cannot run must not
 * close the customer's pages. Before, a disconnected gateway's card left the invoice with
 * neither, on a first charge and on a retry alike.
 */
async function assertCanCharge(deps: PaymentDeps, access: Access, gateway: string) {
  if (!isGatewayName(gateway)) return
  await gatewayContext(deps, scopeOf(access), gateway)
  await assertMayTakeMoney(deps, scopeOf(access), gateway)
}

/**
 * A page younger than this may be the customer paying right now: the charge waits for it.
 * Stripe's Checkout Sessions live at most 24 hours.
 */
export const OPEN_PAGE_GRACE_MS = 24 * 60 * 60 * 1000

/**
 * Withdraws the invoice's open pages before its card is charged: a hosted checkout, a
 * crypto invoice or an external payment still PENDING. Paid as well as the card, the
 * invoice would take the money twice (OVERPAID).
 *
 * - A page opened in the last 24 hours may be in the customer's hands: the charge waits
 *   (409, `open_payment_id`, `deferred: true`), and the job asks again an hour later,
 *   not counting it as an attempt.
 * - An older one is cancelled, as `POST /v1/payments/:id/cancel` would. One that cannot
 *   be (its provider cannot withdraw it, or the customer has just paid it) keeps the card
 *   from being charged beside it (409, `open_payment_id`): the invoice is left to it.
 */
async function withdrawOpenPages(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  cause: Cause,
): Promise<void> {
  const open = await openPaymentsForInvoice(deps.db, access.environmentId, invoiceId)
  const now = deps.clock.now().getTime()
  for (const payment of open.filter((p) => p.payment_status === 'PENDING')) {
    if (now - payment.created_at.getTime() < OPEN_PAGE_GRACE_MS) {
      throw new AppError(
        'conflict',
        `Invoice ${invoiceId} has an open ${payment.payment_method_type} payment ${payment.id} the customer may be paying; its card is not charged beside it yet`,
        { invoice_id: invoiceId, [OPEN_PAYMENT_DETAIL]: payment.id, deferred: true },
      )
    }
    try {
      await cancelPayment(deps, access, payment.id, cause)
    } catch (error) {
      if (!isRefusalOrUnreachable(error)) throw error
      // A provider that could not be reached is asked again later; a refusal (the page paid,
      // a provider that cannot withdraw it) leaves the invoice to the page.
      throw new AppError(
        'conflict',
        `Invoice ${invoiceId} has an open ${payment.payment_method_type} payment ${payment.id} that could not be withdrawn (${error.message}); its card is not charged beside it`,
        {
          invoice_id: invoiceId,
          [OPEN_PAYMENT_DETAIL]: payment.id,
          deferred: error.code === 'gateway_error',
        },
      )
    }
  }
}

/** In a 409 of an automatic charge: the open payment that kept the card from being charged. */
export const OPEN_PAYMENT_DETAIL = 'open_payment_id'

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

/**
 * A decline, a cancellation, or a failure the provider reported for a charge it had made (an
 * authorization that expired): the next automatic attempt is a new payment, with a key of its
 * own. A payment FAILED by an error, with no charge at the provider, is asked again instead.
 */
function endedDefinitively(payment: Payment): boolean {
  if (payment.payment_status === 'CANCELLED') return true
  return (
    payment.payment_status === 'FAILED' &&
    (isDeclineCode(payment.status_code) || payment.gateway_payment_id !== null)
  )
}

/**
 * An automatic charge its provider answered `processing` or authorized, and later reported
 * failed (a webhook): the job counted it as made, so the invoice gets its next attempt here,
 * as after a decline, three days later and within the four attempts. `db` is the report's
 * transaction, which holds the invoice's lock (its payment status followed the failure): the
 * next attempt is queued in the commit that records the failure, so a process that stops
 * after that commit loses neither (from the pool, `resolveLostCharges`, in a transaction of
 * its own).
 */
export async function retryAfterLateFailure(
  db: Db,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
  access: Access,
  failed: Payment,
): Promise<void> {
  if (failed.metadata[AUTOMATIC_METADATA_KEY] !== 'true' || failed.destination_type !== 'INVOICE')
    return
  const invoiceId = failed.destination_id
  const attempts = await countAutomaticAttempts(db, access, invoiceId)
  if (attempts >= MAX_AUTOMATIC_ATTEMPTS) return
  // Announced (`invoice.updated`), as the job's retry after a decline is. None for an invoice
  // no longer owed, or whose subscription is cancelled.
  const queue = (trx: Db) =>
    setNextPaymentAttemptLocked(
      trx,
      scopeOf(access),
      invoiceId,
      new Date(deps.clock.now().getTime() + RETRY_AFTER_MS),
      deps.clock,
    )
  const next = await (db.isTransaction ? queue(db) : inTransaction(db, queue))
  deps.logger.info(
    { invoice_id: invoiceId, payment_id: failed.id, attempts, next_payment_attempt: next },
    next
      ? 'automatic charge failed after its answer; retry queued'
      : 'automatic charge failed after its answer; the invoice is no longer charged automatically',
  )
}
