import type { Updateable } from 'kysely'
import type { Clock } from '../../core/clock.ts'
import { checkTransition, isSettled, type PaymentStatus } from '../../core/payment-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Payment, PaymentTable, TransitionCause } from '../../db/database.ts'
import type { Logger } from '../../logger.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import {
  applyInvoicePayment,
  applyInvoiceRefund,
  followPaymentMove,
} from '../settlement/service.ts'
import {
  allocationsLockingInvoices,
  attemptsOf,
  insertTransition,
  setAllocationApplied,
  updatePayment,
} from './repository.ts'
import { toPaymentResponse } from './schemas.ts'

export interface Cause {
  cause: TransitionCause
  /** Request id, webhook event id or job id. */
  causeId: string | null
  note?: string | undefined
}

export type MoveResult =
  | { kind: 'applied'; payment: Payment }
  | { kind: 'repeat'; payment: Payment }
  | { kind: 'illegal'; payment: Payment; reason: string }

export interface StateDeps {
  clock: Clock
  logger: Logger
}

const EVENT_TYPES: Record<PaymentStatus, EventType> = {
  INITIATED: 'payment.created',
  PENDING: 'payment.pending',
  PROCESSING: 'payment.processing',
  RESERVED: 'payment.reserved',
  CAPTURED: 'payment.captured',
  SUCCEEDED: 'payment.succeeded',
  OVERPAID: 'payment.succeeded',
  FAILED: 'payment.failed',
  ON_RETRY: 'payment.on_retry',
  CANCELLED: 'payment.cancelled',
  PENDING_REFUND: 'payment.pending_refund',
  PARTIALLY_REFUNDED: 'payment.partially_refunded',
  REFUNDED: 'payment.refunded',
  REFUND_FAILED: 'payment.refund_failed',
}

/**
 * Moves a payment that the caller holds under `SELECT … FOR UPDATE` through the
 * state machine, in the caller's transaction: the row, its history entry and its
 * event change together. Reporting the current status again is a no-op
 * (`repeat`); a move the table does not allow is refused and logged (`illegal`),
 * and nothing is written. Becoming SUCCEEDED/OVERPAID reconciles its invoices.
 *
 * @example
 * const result = await movePayment(trx, scope, locked, 'SUCCEEDED', { amount_paid: locked.amount }, cause, deps)
 */
export async function movePayment(
  trx: Db,
  scope: Scope,
  locked: Payment,
  to: PaymentStatus,
  changes: Updateable<PaymentTable>,
  cause: Cause,
  deps: StateDeps,
): Promise<MoveResult> {
  const check = checkTransition(locked.payment_status, to)
  if (check.kind === 'repeat') return { kind: 'repeat', payment: locked }
  if (check.kind === 'illegal') {
    deps.logger.warn(
      {
        payment_id: locked.id,
        from: locked.payment_status,
        to,
        cause: cause.cause,
        cause_id: cause.causeId,
      },
      'illegal payment transition refused',
    )
    return { kind: 'illegal', payment: locked, reason: check.reason }
  }
  const now = deps.clock.now()
  const payment = await updatePayment(trx, locked.id, {
    // Funds held only while RESERVED: captured, voided or failed, nothing is held any more
    // (Stripe's `amount_capturable` goes to zero the same way).
    ...(locked.payment_status === 'RESERVED' && to !== 'RESERVED' && { amount_reserved: 0n }),
    ...changes,
    payment_status: to,
    ...timestampFor(to, now),
    updated_at: now,
  })
  await insertTransition(trx, {
    payment_id: payment.id,
    from_status: locked.payment_status,
    to_status: to,
    cause: cause.cause,
    cause_id: cause.causeId,
    note: cause.note ?? null,
    created_at: now,
  })
  // The invoices follow the move first (no longer in flight, failed), then take the money:
  // the event the money writes (`invoice.payment_applied`, `invoice.paid`) shows each
  // invoice as it ends, not a status the move then changes.
  await followPaymentMove(
    trx,
    scope,
    payment.invoice_ids,
    { paymentId: payment.id, from: locked.payment_status, to },
    deps.clock,
  )
  if (isSettled(to) && !isSettled(locked.payment_status)) {
    await reconcilePayment(trx, scope, payment, payment.amount_paid, deps.clock)
  }
  await recordPaymentEvent(trx, scope, payment, EVENT_TYPES[to], deps.clock)
  return { kind: 'applied', payment }
}

/** Records the first history entry of a new payment (nothing → INITIATED) and its `payment.created` event. */
export async function recordCreation(
  trx: Db,
  scope: Scope,
  payment: Payment,
  cause: Cause,
  clock: Clock,
): Promise<void> {
  await insertTransition(trx, {
    payment_id: payment.id,
    from_status: null,
    to_status: payment.payment_status,
    cause: cause.cause,
    cause_id: cause.causeId,
    note: cause.note ?? null,
    created_at: clock.now(),
  })
  await recordPaymentEvent(trx, scope, payment, 'payment.created', clock)
}

/**
 * Puts received money on the payment's invoices, in allocation order: each gets up
 * to its allocated amount and the last takes any excess (an overpayment is
 * recorded, never dropped). Each invoice is reconciled under its own row lock.
 */
async function reconcilePayment(
  trx: Db,
  scope: Scope,
  payment: Payment,
  received: bigint,
  clock: Clock,
): Promise<void> {
  await spreadOverAllocations(
    trx,
    scope,
    payment,
    received,
    (allocation) => allocation.amount,
    (invoiceId, share) => applyInvoicePayment(trx, scope, invoiceId, share, clock),
  )
}

/**
 * Spreads money over the payment's invoices (locked, in allocation order): each takes up to
 * `room` of its allocation and the last any rest, then `apply` reconciles its share, and the
 * allocation counts it applied.
 */
export async function spreadOverAllocations(
  trx: Db,
  scope: Scope,
  payment: Payment,
  amount: bigint,
  room: (allocation: { amount: bigint; applied_amount: bigint }) => bigint,
  apply: (invoiceId: string, share: bigint) => Promise<unknown>,
): Promise<void> {
  const allocations = await allocationsLockingInvoices(trx, scope.environmentId, payment)
  let left = amount
  for (const [index, allocation] of allocations.entries()) {
    const last = index === allocations.length - 1
    const cap = room(allocation)
    const share = last ? left : left < cap ? left : cap
    if (share <= 0n) continue
    await apply(allocation.invoice_id, share)
    await setAllocationApplied(
      trx,
      payment.id,
      allocation.invoice_id,
      allocation.applied_amount + share,
    )
    left -= share
  }
}

/** Takes a refunded amount back off the payment's invoices, last allocation first. */
export async function reconcileRefund(
  trx: Db,
  scope: Scope,
  payment: Payment,
  amount: bigint,
  clock: Clock,
): Promise<void> {
  const allocations = (
    await allocationsLockingInvoices(trx, scope.environmentId, payment)
  ).reverse()
  let left = amount
  for (const allocation of allocations) {
    const share = left < allocation.applied_amount ? left : allocation.applied_amount
    if (share <= 0n) continue
    await applyInvoiceRefund(trx, scope, allocation.invoice_id, share, clock)
    await setAllocationApplied(
      trx,
      payment.id,
      allocation.invoice_id,
      allocation.applied_amount - share,
    )
    left -= share
  }
}

export async function recordPaymentEvent(
  trx: Db,
  scope: Scope,
  payment: Payment,
  type: EventType,
  clock: Clock,
): Promise<void> {
  const attempts = await attemptsOf(trx, [payment.id])
  await recordEvents(trx, scope, clock.now(), [
    {
      type,
      objectType: 'payment',
      objectId: payment.id,
      data: toPaymentResponse(payment, attempts, payment.invoice_ids),
    },
  ])
}

function timestampFor(status: PaymentStatus, now: Date): Updateable<PaymentTable> {
  switch (status) {
    case 'SUCCEEDED':
    case 'OVERPAID':
      return { succeeded_at: now }
    case 'FAILED':
      return { failed_at: now }
    case 'CANCELLED':
      return { cancelled_at: now }
    case 'REFUNDED':
    case 'PARTIALLY_REFUNDED':
      return { refunded_at: now }
    default:
      return {}
  }
}
