import type { Clock } from '../../core/clock.ts'
import { isPaidStatus } from '../../core/invoice-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import { inTransaction } from '../../db/transaction.ts'
import { recordEvents } from '../events/service.ts'
import { linesOf, updateInvoice } from '../invoices/repository.ts'
import { toInvoiceResponse } from '../invoices/schemas.ts'
import { lockInvoiceOrFail } from '../invoices/service.ts'
import { invoicesWithQueuedCharge } from './repository.ts'

/**
 * Sets when an invoice's next automatic charge is due (`null`: none is queued) on the invoice
 * the caller's transaction holds locked, announced as `invoice.updated` with the invoice as
 * GET then shows it. An invoice no longer owed (paid, voided, written off meanwhile) gets no
 * next attempt. `ifStill`: only while the invoice still holds that time (the charge job
 * releasing its claim, unless a provider's report has queued a retry since).
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
): Promise<void> {
  const invoice = await lockInvoiceOrFail(trx, scope, invoiceId)
  const current = invoice.next_payment_attempt?.getTime() ?? null
  if (options.ifStill !== undefined && current !== options.ifStill.getTime()) return
  const owed = invoice.invoice_status === 'FINALIZED' && !isPaidStatus(invoice.payment_status)
  const next = owed ? at : null
  if ((next?.getTime() ?? null) === current) return
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
