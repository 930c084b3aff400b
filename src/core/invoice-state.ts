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
}

/**
 * The payment status that follows from the money moved: nothing refunded and paid
 * in full is SUCCEEDED (OVERPAID above the amount due); refunds give
 * PARTIALLY_REFUNDED or REFUNDED; otherwise the invoice is still PENDING (or keeps
 * PROCESSING/FAILED, which only payments set).
 */
export function paymentStatusFor(
  amounts: InvoiceAmounts,
  current: InvoicePaymentStatus,
): InvoicePaymentStatus {
  const { amountDue, amountPaid, amountRefunded } = amounts
  if (amountRefunded > 0n) return amountRefunded >= amountPaid ? 'REFUNDED' : 'PARTIALLY_REFUNDED'
  if (amountPaid > amountDue) return 'OVERPAID'
  if (amountPaid === amountDue && amountDue > 0n) return 'SUCCEEDED'
  if (amountDue === 0n) return 'SUCCEEDED'
  return current === 'PROCESSING' || current === 'FAILED' ? current : 'PENDING'
}

export function isPaidStatus(status: InvoicePaymentStatus): boolean {
  return status === 'SUCCEEDED' || status === 'OVERPAID'
}

export function amountRemaining(amountDue: bigint, amountPaid: bigint): bigint {
  return amountPaid >= amountDue ? 0n : amountDue - amountPaid
}
