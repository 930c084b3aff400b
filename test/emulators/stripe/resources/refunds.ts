import { invalidRequest } from '../errors.ts'
import { AUTOMATIC, type EventOrigin, previousAttributes } from '../events.ts'
import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import { formatMinorUnits } from '../money.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { insertBalanceTransaction } from './balance-transactions.ts'
import { type ChargeRecord, renderCharge } from './charges.ts'
import { requirePaymentIntent } from './payment-intents.ts'

export const REFUND_REASONS = ['duplicate', 'fraudulent', 'requested_by_customer'] as const
export type RefundReason = (typeof REFUND_REASONS)[number]

/** Stripe's `failure_reason` values (https://docs.stripe.com/api/refunds/object#refund_object-failure_reason). */
export const REFUND_FAILURE_REASONS = [
  'charge_for_pending_refund_disputed',
  'declined',
  'expired_or_canceled_card',
  'insufficient_funds',
  'lost_or_stolen_card',
  'merchant_request',
  'unknown',
] as const
export type RefundFailureReason = (typeof REFUND_FAILURE_REASONS)[number]

export interface RefundRecord extends StoredRecord {
  amount: number
  currency: string
  charge: string
  paymentIntent: string | null
  customer: string | null
  paymentMethod: string
  reason: RefundReason | null
  metadata: Metadata
  status: 'succeeded' | 'failed'
  balanceTransaction: string
  /** Set once the refund fails after it succeeded (`failRefund`). */
  failureReason: RefundFailureReason | null
  /** The balance transaction that gave the money back to the account when it failed. */
  failureBalanceTransaction: string | null
}

const CREATE_PARAMS = [
  'amount',
  'charge',
  'currency',
  'customer',
  'instructions_email',
  'metadata',
  'origin',
  'payment_intent',
  'reason',
  'refund_application_fee',
  'reverse_transfer',
] as const

export function renderRefund(record: RefundRecord): JsonObject {
  return withFields(template('refund'), {
    id: record.id,
    object: 'refund',
    amount: record.amount,
    balance_transaction: record.balanceTransaction,
    charge: record.charge,
    created: record.created,
    currency: record.currency,
    customer: record.customer,
    customer_account: null,
    destination_details: {
      card: {
        reference_status: 'pending',
        reference_type: 'acquirer_reference_number',
        type: 'refund',
      },
      type: 'card',
    },
    // Stripe shows these only on a failed refund.
    ...(record.status === 'failed' && {
      failure_balance_transaction: record.failureBalanceTransaction,
      failure_reason: record.failureReason,
    }),
    metadata: record.metadata,
    payment_intent: record.paymentIntent,
    payment_method: record.paymentMethod,
    reason: record.reason,
    receipt_number: null,
    source_transfer_reversal: null,
    status: record.status,
    transfer_reversal: null,
  })
}

/** The charge a refund request points at, through `charge` or `payment_intent`. */
function refundedCharge(state: EmulatorState, params: Params): ChargeRecord {
  const chargeId = params.string('charge')
  const paymentIntentId = params.string('payment_intent')
  if (chargeId === undefined && paymentIntentId === undefined) {
    throw invalidRequest(
      'One of the following params should be provided for this request: payment_intent or charge.',
    )
  }
  if (chargeId !== undefined) return requireRecord(state.charges, 'charge', chargeId, 'charge')
  const paymentIntent = requirePaymentIntent(state, paymentIntentId ?? '', 'payment_intent')
  const latest =
    paymentIntent.latestCharge === null ? undefined : state.charges.get(paymentIntent.latestCharge)
  if (paymentIntent.status !== 'succeeded' || latest === undefined) {
    throw invalidRequest(
      `This PaymentIntent (${paymentIntent.id}) does not have a successful charge to refund.`,
      'payment_intent',
      'charge_not_refundable',
    )
  }
  return latest
}

function createRefund(state: EmulatorState, params: Params, origin: EventOrigin): JsonObject {
  params.rejectUnknown(CREATE_PARAMS)
  const charge = refundedCharge(state, params)
  if (charge.status !== 'succeeded' || !charge.captured) {
    throw invalidRequest(
      `Charge ${charge.id} has not been captured or did not succeed, so it cannot be refunded.`,
      'charge',
      'charge_not_refundable',
    )
  }
  const refundable = charge.amountCaptured - charge.amountRefunded
  if (refundable <= 0) {
    throw invalidRequest(
      `Charge ${charge.id} has already been refunded.`,
      undefined,
      'charge_already_refunded',
    )
  }
  const amount = params.integer('amount') ?? refundable
  if (amount < 1) {
    throw invalidRequest('Amount must be at least 1.', 'amount', 'amount_too_small')
  }
  if (amount > refundable) {
    throw invalidRequest(
      `Refund amount (${formatMinorUnits(amount, charge.currency)}) is greater than unrefunded amount on charge (${formatMinorUnits(refundable, charge.currency)})`,
      'amount',
      'amount_too_large',
    )
  }
  const id = newId('refund')
  const transaction = insertBalanceTransaction(state, {
    amount: -amount,
    currency: charge.currency,
    type: 'refund',
    source: id,
    description: 'REFUND FOR CHARGE',
  })
  const record: RefundRecord = {
    id,
    created: state.nowSeconds(),
    seq: state.nextSeq(),
    amount,
    currency: charge.currency,
    charge: charge.id,
    paymentIntent: charge.paymentIntent,
    customer: charge.customer,
    paymentMethod: charge.paymentMethod,
    reason: params.oneOf('reason', REFUND_REASONS) ?? null,
    metadata: params.metadata(),
    status: 'succeeded',
    balanceTransaction: transaction.id,
    failureReason: null,
    failureBalanceTransaction: null,
  }
  const chargeBefore = renderCharge(state, charge)
  state.refunds.set(id, record)
  charge.amountRefunded += amount
  const chargeAfter = renderCharge(state, charge)
  state.events.emit('refund.created', renderRefund(record), origin)
  state.events.emit(
    'charge.refunded',
    chargeAfter,
    origin,
    previousAttributes(chargeBefore, chargeAfter),
  )
  return renderRefund(record)
}

/**
 * A succeeded refund fails, as Stripe's refund to a card account closed since does days
 * later (https://docs.stripe.com/refunds#failed-refunds): the refund is `failed` with
 * `failure_reason`, the money comes back to the account (`failure_balance_transaction`, a
 * `refund_failure` balance transaction), the charge's `amount_refunded` goes down by it, and
 * `refund.updated` then `refund.failed` are sent.
 */
export function failRefund(
  state: EmulatorState,
  id: string,
  reason: RefundFailureReason = 'expired_or_canceled_card',
  origin: EventOrigin = AUTOMATIC,
): JsonObject {
  const record = requireRecord(state.refunds, 'refund', id)
  if (record.status !== 'succeeded') {
    throw invalidRequest(`Refund ${id} is ${record.status}: only a succeeded refund can fail.`)
  }
  const charge = requireRecord(state.charges, 'charge', record.charge, 'charge')
  const transaction = insertBalanceTransaction(state, {
    amount: record.amount,
    currency: record.currency,
    type: 'refund_failure',
    source: id,
    description: 'REFUND FAILURE',
  })
  const before = renderRefund(record)
  record.status = 'failed'
  record.failureReason = reason
  record.failureBalanceTransaction = transaction.id
  charge.amountRefunded -= record.amount
  const after = renderRefund(record)
  state.events.emit('refund.updated', after, origin, previousAttributes(before, after))
  state.events.emit('refund.failed', after, origin)
  return after
}

export function registerRefundRoutes(router: Router): void {
  router.post('/v1/refunds', ({ state, params, origin }) => createRefund(state, params, origin))
  router.get('/v1/refunds', ({ state, params }) => {
    const charge = params.string('charge')
    const paymentIntent = params.string('payment_intent')
    return listResponse({
      params,
      url: '/v1/refunds',
      objectName: 'refund',
      records: state.refunds.values(),
      filter: (record) =>
        (charge === undefined || record.charge === charge) &&
        (paymentIntent === undefined || record.paymentIntent === paymentIntent),
      render: renderRefund,
    })
  })
  router.get('/v1/refunds/:id', ({ state, pathParam }) =>
    renderRefund(requireRecord(state.refunds, 'refund', pathParam('id'))),
  )
}
