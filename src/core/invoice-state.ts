import type { InvoicePaymentStatus, InvoiceStatus } from '../db/database.ts'
import { AppError } from './errors.ts'

/**
 * The invoice lifecycle. Drafts are edited and finalized; a finalized invoice is
 * payable until it is paid, voided or marked uncollectible; an uncollectible one
 * can still be voided.
 */
export const INVOICE_TRANSITIONS: Readonly<Record<InvoiceStatus, readonly InvoiceStatus[]>> = {
  DRAFT: ['FINALIZED'],
  FINALIZED: ['VOIDED', 'UNCOLLECTIBLE'],
  UNCOLLECTIBLE: ['VOIDED'],
  VOIDED: [],
}

export function canTransitionInvoice(from: InvoiceStatus, to: InvoiceStatus): boolean {
  return INVOICE_TRANSITIONS[from].includes(to)
}

export function assertInvoiceTransition(
  from: InvoiceStatus,
  to: InvoiceStatus,
  invoiceId: string,
): void {
  if (!canTransitionInvoice(from, to)) {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${invoiceId} cannot go from ${from} to ${to}`,
      {
        invoice_id: invoiceId,
        from,
        to,
      },
    )
  }
}

export interface InvoiceAmounts {
  amountDue: bigint
  amountPaid: bigint
  amountRefunded: bigint
  /** Whether it was paid in full once (`paid_at`): refunds then no longer reopen what it owes. */
  paidBefore: boolean
}

/**
 * The payment status that follows from the money moved. Before the invoice is first paid
 * in full, a refund gives back what was paid and the invoice owes it again: it is paid
 * (SUCCEEDED, OVERPAID above the amount due) when what it keeps covers the amount due,
 * and PENDING (or PROCESSING/FAILED, which only payments set) until then. Once paid, a
 * refund makes it PARTIALLY_REFUNDED or REFUNDED, unless what it keeps still covers the
 * amount due (the excess of an overpayment given back): SUCCEEDED, or OVERPAID above it.
 */
export function paymentStatusFor(
  amounts: InvoiceAmounts,
  current: InvoicePaymentStatus,
): InvoicePaymentStatus {
  const { amountDue, amountPaid, amountRefunded, paidBefore } = amounts
  const kept = amountPaid - amountRefunded
  if (paidBefore && amountRefunded > 0n) {
    // What it keeps still covers what is due (an overpayment's excess given back): paid,
    // not refunded. It read PARTIALLY_REFUNDED though it kept exactly the amount due.
    if (amountDue > 0n && kept >= amountDue) return kept > amountDue ? 'OVERPAID' : 'SUCCEEDED'
    return amountRefunded >= amountPaid ? 'REFUNDED' : 'PARTIALLY_REFUNDED'
  }
  if (kept > amountDue) return 'OVERPAID'
  if (kept === amountDue) return 'SUCCEEDED'
  return current === 'PROCESSING' || current === 'FAILED' ? current : 'PENDING'
}

export function isPaidStatus(status: InvoicePaymentStatus): boolean {
  return status === 'SUCCEEDED' || status === 'OVERPAID'
}

/**
 * What the invoice still owes: the amount due less what it keeps of its payments (less
 * what it was paid, once paid in full: refunds after that do not reopen it).
 */
export function amountRemaining(amounts: InvoiceAmounts): bigint {
  const kept = amounts.paidBefore ? amounts.amountPaid : amounts.amountPaid - amounts.amountRefunded
  return kept >= amounts.amountDue ? 0n : amounts.amountDue - kept
}
