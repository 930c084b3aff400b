import { AppError } from './errors.ts'

export const PAYMENT_STATUSES = [
  'INITIATED',
  'PENDING',
  'PROCESSING',
  'RESERVED',
  'CAPTURED',
  'SUCCEEDED',
  'OVERPAID',
  'FAILED',
  'ON_RETRY',
  'CANCELLED',
  'PENDING_REFUND',
  'PARTIALLY_REFUNDED',
  'REFUNDED',
  'REFUND_FAILED',
] as const
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number]

/**
 * The payment state machine: the one table every write is checked against.
 * `PENDING` waits on the customer (hosted page open, crypto invoice unpaid),
 * `RESERVED` is authorized with funds held, `CAPTURED` captured but not final.
 */
export const PAYMENT_TRANSITIONS: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  INITIATED: ['PENDING', 'PROCESSING', 'RESERVED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'CANCELLED'],
  PENDING: ['PROCESSING', 'RESERVED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'CANCELLED'],
  PROCESSING: ['RESERVED', 'CAPTURED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'ON_RETRY'],
  RESERVED: ['CAPTURED', 'SUCCEEDED', 'CANCELLED', 'FAILED'],
  CAPTURED: ['SUCCEEDED', 'OVERPAID'],
  FAILED: ['ON_RETRY'],
  ON_RETRY: ['PROCESSING', 'FAILED', 'CANCELLED'],
  SUCCEEDED: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  OVERPAID: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  PENDING_REFUND: ['PARTIALLY_REFUNDED', 'REFUNDED', 'REFUND_FAILED'],
  PARTIALLY_REFUNDED: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  REFUND_FAILED: ['PENDING_REFUND'],
  REFUNDED: [],
  CANCELLED: [],
}

/** The outcome of asking to move a payment: apply it, ignore a repeat, or refuse it. */
export type TransitionCheck =
  | { kind: 'apply' }
  | { kind: 'repeat' }
  | { kind: 'illegal'; reason: string }

/**
 * Checks a move against the table. Reporting the status a payment already has is a
 * repeat (a no-op), except PARTIALLY_REFUNDED → PARTIALLY_REFUNDED, which the table
 * allows because each further partial refund is a real change.
 */
export function checkTransition(from: PaymentStatus, to: PaymentStatus): TransitionCheck {
  if (PAYMENT_TRANSITIONS[from].includes(to)) return { kind: 'apply' }
  if (from === to) return { kind: 'repeat' }
  return { kind: 'illegal', reason: `${from} cannot move to ${to}` }
}

export function assertTransition(
  from: PaymentStatus,
  to: PaymentStatus,
  paymentId: string,
): 'apply' | 'repeat' {
  const check = checkTransition(from, to)
  if (check.kind === 'illegal') {
    throw new AppError('invalid_state_transition', `Payment ${paymentId}: ${check.reason}`, {
      payment_id: paymentId,
      from,
      to,
    })
  }
  return check.kind
}

export const CURRENT_STATES = {
  INITIATED: 'created',
  PENDING: 'pending',
  PROCESSING: 'processing',
  RESERVED: 'reserved',
  CAPTURED: 'captured',
  SUCCEEDED: 'succeeded',
  OVERPAID: 'succeeded',
  FAILED: 'failed',
  ON_RETRY: 'on_retry',
  CANCELLED: 'cancelled',
  PENDING_REFUND: 'pending_refund',
  PARTIALLY_REFUNDED: 'partial_refund',
  REFUNDED: 'refunded',
  REFUND_FAILED: 'refund_failed',
} as const satisfies Record<PaymentStatus, string>

/** The lowercase view order and subscription clients use. */
export function currentStateOf(status: PaymentStatus): (typeof CURRENT_STATES)[PaymentStatus] {
  return CURRENT_STATES[status]
}

/** Money has been received: the payment counts toward its invoice. */
export function isSettled(status: PaymentStatus): boolean {
  return (
    status === 'SUCCEEDED' ||
    status === 'OVERPAID' ||
    status === 'PENDING_REFUND' ||
    status === 'PARTIALLY_REFUNDED' ||
    status === 'REFUNDED' ||
    status === 'REFUND_FAILED'
  )
}

/** No further customer or gateway action can change the outcome. */
export function isTerminal(status: PaymentStatus): boolean {
  return PAYMENT_TRANSITIONS[status].length === 0
}
