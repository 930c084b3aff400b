import type { Clock } from '../../core/clock.ts'
import { isPaidStatus } from '../../core/invoice-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Invoice } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import { recordEvents } from '../events/service.ts'
import { linesOf, updateInvoice } from '../invoices/repository.ts'
import { toInvoiceResponse } from '../invoices/schemas.ts'
import { lockInvoiceOrFail } from '../invoices/service.ts'
import { invoicesWithQueuedCharge, lockSubscription } from './repository.ts'

/**
 * Sets when an invoice's next automatic charge is due (`null`: none is queued) on the invoice
 * the caller's transaction holds locked, announced as `invoice.updated` with the invoice as
 * GET then shows it, and returns what the invoice then holds. An invoice no longer owed
 * (paid, voided, written off meanwhile) gets no next attempt, nor does one whose subscription
 * is cancelled: a charge that was running as it was cancelled must not queue a retry after
 * the cancel cleared it, which the job would skip and the invoice would show for good.
 * `ifStill`: only while the invoice still holds that time (the charge job's claim: unless a
 * cancel, a provider's report or a lookup has moved it since).
 *
 * Before, the charge job queued a retry or stopped the charges without an event, and the
 * invoice's last event still showed the job's one-hour claim (`claimDueAutomaticCharges`),
 * itself never announced: it is the job's lease on the invoice, not a charge scheduled.
 *
 * @example
 * await inTransaction(db, (trx) => setNextPaymentAttemptLocked(trx, scope, invoiceId, retryAt, clock))
 */
export async function setNextPaymentAttemptLocked(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  at: Date | null,
  clock: Clock,
  options: { ifStill?: Date } = {},
): Promise<Date | null> {
  const invoice = await lockInvoiceOrFail(trx, scope, invoiceId)
  const current = invoice.next_payment_attempt
  if (options.ifStill !== undefined && current?.getTime() !== options.ifStill.getTime())
    return current
  const owed = invoice.invoice_status === 'FINALIZED' && !isPaidStatus(invoice.payment_status)
  const next =
    owed && at !== null && !(await subscriptionCancelled(trx, scope, invoice)) ? at : null
  if (next?.getTime() === current?.getTime()) return current
  const now = clock.now()
  const updated = await updateInvoice(trx, invoiceId, {
    next_payment_attempt: next,
    updated_at: now,
  })
  await recordEvents(trx, scope, now, [
    {
      type: 'invoice.updated',
      objectType: 'invoice',
      objectId: invoiceId,
      data: toInvoiceResponse(updated, await linesOf(trx, [invoiceId])),
    },
  ])
  return next
}

/**
 * The locked invoice belongs to a cancelled subscription. Its row is locked after the
 * invoice's, the order settling an invoice takes: a cancel committing meanwhile is waited
 * for, and one that comes after finds the attempt queued here and clears it.
 */
async function subscriptionCancelled(trx: Db, scope: Scope, invoice: Invoice): Promise<boolean> {
  if (invoice.subscription_id === null) return false
  const subscription = await lockSubscription(trx, scope.environmentId, invoice.subscription_id)
  return subscription?.status === 'canceled'
}

/**
 * Stops the automatic charges of a subscription's invoices (it was cancelled, or ended at
 * its period end): each is left open, to be paid by hand, as Stripe turns off `auto_advance`
 * on a cancelled subscription's invoices, and each one that had a charge queued is announced
 * (`invoice.updated`, `next_payment_attempt: null`). Each in a transaction of its own, after
 * the subscription's commit: settling an invoice locks it, then its subscription.
 */
export async function stopAutomaticChargesOf(
  db: Db,
  scope: Scope,
  subscriptionId: string,
  clock: Clock,
): Promise<void> {
  for (const invoiceId of await invoicesWithQueuedCharge(db, scope.environmentId, subscriptionId)) {
    await inTransaction(db, (trx) =>
      setNextPaymentAttemptLocked(trx, scope, invoiceId, null, clock),
    )
  }
}
