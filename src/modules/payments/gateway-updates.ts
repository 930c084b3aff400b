import type { Updateable } from 'kysely'
import { AppError } from '../../core/errors.ts'
import { toMinorUnits } from '../../core/money.ts'
import { checkTransition, isSettled, isTerminal } from '../../core/payment-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Payment, PaymentTable, Refund } from '../../db/database.ts'
import type { PaymentUpdate } from '../../gateways/gateway.ts'
import { gatewayFor, isGatewayName } from '../../gateways/registry.ts'
import {
  completeRefundLocked,
  failRefundLocked,
  failSucceededRefundLocked,
  recordOutsideRefundLocked,
} from './refunds.ts'
import { findRefundByGatewayId, insertAttempt, refundsOf, updatePayment } from './repository.ts'
import { attemptRecorded, attemptRow, type PaymentDeps, saveCardFromPayment } from './service.ts'
import { type Cause, movePayment } from './state.ts'

/** The failure of a charge its provider cancelled while it was in flight (PROCESSING). */
const CANCELLED_IN_FLIGHT = {
  status: 'failed',
  errorCode: 'cancelled',
  errorMessage: 'The provider cancelled the payment while it was in flight',
} as const

/** A payment whose money was received, then refunded in part or whole (or being refunded). */
const REFUND_STATES: ReadonlySet<string> = new Set([
  'PENDING_REFUND',
  'PARTIALLY_REFUNDED',
  'REFUNDED',
  'REFUND_FAILED',
])

/** Where a payment holds money or is taking it: a deleted one moved there is shown again. */
const HOLDS_MONEY: ReadonlySet<string> = new Set([
  'PROCESSING',
  'RESERVED',
  'CAPTURED',
  'SUCCEEDED',
  'OVERPAID',
])

export type UpdateOutcome =
  | 'applied'
  | 'repeat'
  | 'ignored'
  | 'attempt_recorded'
  | 'refund_applied'
  | 'money_refused'

/**
 * Applies what a verified gateway notification reports to a payment the caller
 * holds locked. A repeated report changes nothing; one the state machine refuses
 * (a late "pending" after success, say) is ignored and logged, never applied: a
 * payment never moves backwards.
 */
export async function applyPaymentUpdate(
  trx: Db,
  scope: Scope,
  locked: Payment,
  reported: PaymentUpdate,
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<{ payment: Payment; outcome: UpdateOutcome }> {
  let update = onOpenPage(locked, reported)
  let payment = locked
  if (update.mustMatch && !matches(locked, update.mustMatch)) {
    deps.logger.warn(
      { payment_id: locked.id, reported: update.mustMatch },
      'notification amount or currency does not match the payment; ignored',
    )
    return { payment, outcome: 'ignored' }
  }
  if (update.currency !== undefined && update.currency.toLowerCase() !== locked.currency) {
    deps.logger.warn(
      { payment_id: locked.id, currency: locked.currency, reported_currency: update.currency },
      'notification amounts are in another currency than the payment; ignored',
    )
    return { payment, outcome: 'ignored' }
  }
  if (
    (update.amountReceived !== undefined && update.amountReceived < 0n) ||
    (update.refund !== undefined && update.refund.amount <= 0n)
  ) {
    deps.logger.warn(
      { payment_id: locked.id, amount: String(update.amountReceived ?? update.refund?.amount) },
      'notification reports a negative amount; ignored',
    )
    return { payment, outcome: 'ignored' }
  }
  if (
    (update.status === 'SUCCEEDED' || update.status === 'OVERPAID') &&
    receivedOf(locked, update) === 0n
  ) {
    // A success with nothing received (an invoice confirmed with less than one minor unit
    // paid) has not paid the payment: like an underpaid crypto invoice that ends, it fails.
    deps.logger.warn(
      {
        payment_id: locked.id,
        gateway: locked.payment_gateway,
        gateway_payment_id: update.gatewayPaymentId ?? null,
      },
      'the provider reports the payment complete with nothing received; failed as underpaid',
    )
    update = nothingReceived(update)
  }
  let outcome: UpdateOutcome = 'repeat'
  const gateway = payment.payment_gateway ?? 'unknown'
  const recordAttempt = (current: Payment, attempt = update.attempt) =>
    insertAttempt(
      trx,
      attemptRow(
        current,
        gateway,
        attempt?.status ?? 'unknown',
        update.gatewayPaymentId ?? null,
        current.gateway_tracking_id ?? update.trackingId ?? null,
        attempt?.errorCode ?? null,
        attempt?.errorMessage ?? null,
        deps.clock,
      ),
    )

  if (update.refund) {
    const refund =
      (update.refund.refundId
        ? (await refundsOf(trx, payment.id)).find((r) => r.id === update.refund?.refundId)
        : undefined) ??
      (update.refund.gatewayRefundId
        ? await findRefundByGatewayId(trx, payment.id, update.refund.gatewayRefundId)
        : undefined) ??
      // The provider's webhook can arrive while Payrail is still waiting for the refund call to
      // answer, before the provider's id is stored: for a provider that names none of Payrail's
      // refunds, it is then the pending refund of that amount.
      (update.refund.matchByAmount
        ? await pendingOfAmount(trx, payment, update.refund.amount)
        : undefined)
    if (refund && refund.status === 'pending' && update.refund.status === 'succeeded') {
      const done = await completeRefundLocked(
        trx,
        scope,
        payment,
        refund,
        update.refund.gatewayRefundId,
        cause,
        deps,
      )
      return { payment: done.payment, outcome: 'refund_applied' }
    }
    // The provider declined a refund it had accepted (Checkout.com answers a refund with 202,
    // then `payment_refund_declined`; Stripe's `refund.failed`): it fails, and the payment can
    // be refunded again.
    const failure = {
      code: update.refund.failureCode ?? 'declined',
      message: update.refund.failureMessage ?? 'the provider declined the refund',
    }
    if (refund && refund.status === 'pending' && update.refund.status === 'failed') {
      const failed = await failRefundLocked(trx, scope, payment, refund, failure, cause, deps)
      return { payment: failed.payment, outcome: 'refund_applied' }
    }
    // A refund that failed after it succeeded (Stripe's, to a card account closed since): the
    // money went back to the merchant, so the refund is undone. A failed refund stays failed:
    // a success reported after it (an older event, delivered late) is a repeat.
    if (refund && refund.status === 'succeeded' && update.refund.status === 'failed') {
      const failed = await failSucceededRefundLocked(
        trx,
        scope,
        payment,
        refund,
        failure,
        cause,
        deps,
      )
      return { payment: failed.payment, outcome: 'refund_applied' }
    }
    // A refund Payrail did not make (the provider's dashboard): recorded, so that the payment
    // and its invoices count the money that left.
    if (!refund && update.refund.status === 'succeeded') {
      const recorded = await recordOutsideRefundLocked(
        trx,
        scope,
        payment,
        update.refund,
        cause,
        deps,
      )
      if (recorded) return { payment: recorded.payment, outcome: 'refund_applied' }
    }
    return { payment, outcome: refund ? 'repeat' : 'ignored' }
  }

  if (
    (update.status === 'FAILED' || update.status === 'CANCELLED') &&
    (payment.payment_method_type === 'PAYMENT_LINK' || payment.payment_method_type === 'CRYPTO') &&
    update.gatewayPaymentId !== undefined &&
    payment.gateway_payment_id !== null &&
    payment.gateway_payment_id !== update.gatewayPaymentId
  ) {
    // The end of another attempt on the page (one the customer abandoned, expiring) than
    // the provider payment that holds this payment's money: it ends nothing. Before, a page
    // paid with its capture still to come was failed by it, and the capture then refused.
    // So for a crypto payment: the invoice or transaction a retry made (the one tracked)
    // expiring unpaid while the coins are in flight on the one whose answer was lost.
    return { payment, outcome: 'ignored' }
  }
  if (update.status === 'FAILED' && (await failedBefore(trx, payment, update.gatewayPaymentId))) {
    // The failure of an earlier charge, already recorded, reported late: the payment was
    // retried since, and the new charge's outcome is its own (a late decline must not fail it).
    return { payment, outcome: 'repeat' }
  }
  if (update.status) {
    const received = receivedOf(payment, update)
    if (
      (update.status === 'SUCCEEDED' || update.status === 'OVERPAID') &&
      isSettled(payment.payment_status) &&
      update.gatewayPaymentId !== undefined &&
      payment.gateway_payment_id !== null &&
      payment.gateway_payment_id !== update.gatewayPaymentId
    ) {
      // Money on another provider object than the one that paid the payment (the crypto
      // invoice whose answer was lost and the one a retry made, both paid) is no repeat of
      // its success, and a settled payment cannot take it: never dropped silently.
      deps.logger.error(
        {
          payment_id: payment.id,
          payment_status: payment.payment_status,
          gateway: payment.payment_gateway,
          gateway_payment_id: update.gatewayPaymentId,
          paid_by: payment.gateway_payment_id,
          amount_received: String(received),
        },
        'the provider reports money the payment refuses; refund or record it by hand',
      )
      return { payment, outcome: 'money_refused' }
    }
    // Overpaid is decided in the payment's own minor units: a provider's OVERPAID for a few
    // satoshis more than due, worth less than a cent, is a payment of its amount.
    // A charge in flight that its provider cancels has failed: PROCESSING cannot become
    // CANCELLED in the state machine, and refused, the report left the payment in flight,
    // holding its invoice, until the provider reported something else.
    const cancelledInFlight =
      update.status === 'CANCELLED' && payment.payment_status === 'PROCESSING'
    const to =
      update.status === 'SUCCEEDED' || update.status === 'OVERPAID'
        ? received > payment.amount
          ? 'OVERPAID'
          : 'SUCCEEDED'
        : cancelledInFlight
          ? 'FAILED'
          : update.status
    const changes: Updateable<PaymentTable> = {
      ...(update.gatewayPaymentId && { gateway_payment_id: update.gatewayPaymentId }),
      ...(update.trackingId &&
        payment.gateway_tracking_id === null && { gateway_tracking_id: update.trackingId }),
      // Money received ends the story: an error left by a charge call whose answer was lost goes.
      ...((to === 'SUCCEEDED' || to === 'OVERPAID') && {
        amount_paid: received,
        status_code: null,
        error_message: null,
      }),
      ...(to === 'RESERVED' && { amount_reserved: received }),
      ...(to === 'FAILED' &&
        update.error && { status_code: update.error.code, error_message: update.error.message }),
      ...(cancelledInFlight && {
        status_code: CANCELLED_IN_FLIGHT.errorCode,
        error_message: CANCELLED_IN_FLIGHT.errorMessage,
      }),
      // A payment deleted before the provider took it on (an external payment whose system
      // had its details, a start whose answer was lost): the money it now holds or is taking
      // is shown, not hidden, as a payment deleted once it failed is when money comes late.
      ...(!payment.active && HOLDS_MONEY.has(to) && { active: true }),
    }
    if (!payment.active && HOLDS_MONEY.has(to))
      deps.logger.warn(
        { payment_id: payment.id, gateway: payment.payment_gateway, to },
        'the provider reports money for a deleted payment; shown again to record it',
      )
    if (
      (to === 'SUCCEEDED' || to === 'OVERPAID') &&
      payment.payment_status === 'FAILED' &&
      payment.payment_gateway !== null &&
      isGatewayName(payment.payment_gateway) &&
      gatewayFor(payment.payment_gateway).capabilities.paysAfterFailure
    )
      payment = await reopenForLateMoney(trx, scope, payment, cause, deps)
    const applies = checkTransition(payment.payment_status, to).kind === 'apply'
    // An attempt that comes with a move that takes effect is recorded first, so the move's
    // event shows the payment with it (as moveWithAttempt does); so is the card the payment
    // saves as it takes the money, so that `payment.succeeded` names it.
    // A charge its provider cancelled in flight ended there, as a decline does: its attempt
    // says so, and the payment processed again charges under a new key (`chargeKeyFor`),
    // where the old one would replay the cancelled authorization.
    const attempt = update.attempt ?? (cancelledInFlight ? CANCELLED_IN_FLIGHT : undefined)
    if (attempt && applies) await recordAttempt(payment, attempt)
    if (update.card && applies && isSettled(to) && payment.payment_method_id === null) {
      const method = await saveCardFromPayment(trx, scope, payment, update.card, deps.clock)
      changes.payment_method_id = method.id
    }
    const moved = await movePayment(trx, scope, payment, to, changes, cause, deps)
    // Money already recorded and refunded since (a coin refund recorded at once, then the
    // provider's own later success: BitPay's complete after confirmed) is a repeat, not money
    // refused.
    const refundedSince = REFUND_STATES.has(payment.payment_status)
    if (moved.kind === 'illegal' && to === 'FAILED' && isSettled(payment.payment_status)) {
      // Money recorded that the provider now says it will not settle (BitPay declines an
      // invoice it had confirmed, and refunds the buyer): SUCCEEDED cannot fail, and the
      // money may never arrive. For an operator, never only the state machine's warning.
      deps.logger.error(
        {
          payment_id: payment.id,
          payment_status: payment.payment_status,
          gateway: payment.payment_gateway,
          gateway_payment_id: update.gatewayPaymentId ?? null,
        },
        'the provider reports failed a payment recorded as paid; check the money with the provider',
      )
    }
    if (moved.kind === 'illegal' && isSettled(to) && !refundedSince) {
      // Money the provider says it took that the payment cannot record: for an operator,
      // never only a warning (as a card charge's answer says it: `recordCharge`).
      deps.logger.error(
        {
          payment_id: payment.id,
          payment_status: payment.payment_status,
          gateway: payment.payment_gateway,
          gateway_payment_id: update.gatewayPaymentId ?? null,
          amount_received: String(received),
        },
        'the provider reports money the payment refuses; refund or record it by hand',
      )
    }
    payment = moved.payment
    outcome = moved.kind === 'applied' ? 'applied' : moved.kind === 'repeat' ? 'repeat' : 'ignored'
  } else if (
    update.attempt &&
    !isSettled(payment.payment_status) &&
    !isTerminal(payment.payment_status)
  ) {
    // On its own (a declined card on a hosted page that stays open), while the payment is open.
    await recordAttempt(payment)
    outcome = 'attempt_recorded'
  }

  // The card may come with a report that repeats the status (Stripe sends payment_intent.succeeded
  // and checkout.session.completed in either order): save it once the payment has the money.
  if (
    update.card &&
    outcome !== 'ignored' &&
    isSettled(payment.payment_status) &&
    payment.payment_method_id === null
  ) {
    const method = await saveCardFromPayment(trx, scope, payment, update.card, deps.clock)
    payment = await updatePayment(trx, payment.id, { payment_method_id: method.id })
  }
  return { payment, outcome }
}

/**
 * A payment whose failure was recorded, for which its provider now reports money received,
 * as the providers whose gateways say `paysAfterFailure` document: BitPay completes an
 * invoice it had called `invalid` once the transaction confirms late, CoinPayments reopens a
 * timed-out transaction and completes it. The money is real, so it is recorded: FAILED is final in the state machine except towards ON_RETRY, so the payment is
 * reopened (ON_RETRY, then PROCESSING, in the report's transaction, with the report as their
 * cause) and the report's move then takes it to SUCCEEDED or OVERPAID like any other.
 */
async function reopenForLateMoney(
  trx: Db,
  scope: Scope,
  failed: Payment,
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<Payment> {
  const reopened = { ...cause, note: 'the provider reported money after the failure' }
  let payment = failed
  for (const to of ['ON_RETRY', 'PROCESSING'] as const) {
    // A payment deleted once it failed is shown again: it holds money now.
    const moved = await movePayment(trx, scope, payment, to, { active: true }, reopened, deps)
    payment = moved.payment
  }
  deps.logger.warn(
    { payment_id: payment.id, gateway: payment.payment_gateway },
    'money reported for a failed payment; reopened to record it',
  )
  return payment
}

/**
 * A card declined on a hosted page that stays open (`pageStaysOpen`) is, for a link, an
 * attempt: the customer may still pay on the same page, and only the page's expiry ends the
 * payment. Failing it would refuse the success that follows (FAILED is final) while the
 * provider keeps the money. An off-session charge's decline ends its payment.
 */
function onOpenPage(payment: Payment, update: PaymentUpdate): PaymentUpdate {
  if (
    !update.pageStaysOpen ||
    update.status !== 'FAILED' ||
    payment.payment_method_type !== 'PAYMENT_LINK'
  )
    return update
  return {
    gatewayPaymentId: update.gatewayPaymentId,
    attempt: {
      status: 'failed',
      errorCode: update.error?.code ?? null,
      errorMessage: update.error?.message ?? null,
    },
  }
}

/**
 * The money a report says the payment received, in the payment's minor units: the amount it
 * names, its share of the payment (coins paid of coins due, rounded down), else the payment's
 * amount.
 */
function receivedOf(payment: Payment, update: PaymentUpdate): bigint {
  const share = update.receivedShare
  return (
    update.amountReceived ??
    (share && share.due > 0n ? (payment.amount * share.paid) / share.due : payment.amount)
  )
}

/** A success that received nothing, as the failure it is (`underpaid`): no money, no card. */
function nothingReceived(update: PaymentUpdate): PaymentUpdate {
  const error = {
    code: 'underpaid',
    message: 'The provider reports the payment complete with nothing received',
  }
  return {
    ...update,
    status: 'FAILED',
    amountReceived: undefined,
    receivedShare: undefined,
    card: undefined,
    error,
    attempt: update.attempt && {
      status: 'failed',
      errorCode: error.code,
      errorMessage: error.message,
    },
  }
}

/** The provider's decimal amount and currency against the payment's (`10.00000000` equals `10.00`). */
function matches(payment: Payment, expected: { currency: string; amount: string }): boolean {
  if (expected.currency.toLowerCase() !== payment.currency) return false
  try {
    return (
      toMinorUnits(
        expected.amount.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, ''),
        payment.currency,
      ) === payment.amount
    )
  } catch {
    return false
  }
}

/** Whether `gatewayPaymentId` is a charge of the payment whose failure is already recorded. */
async function failedBefore(
  trx: Db,
  payment: Payment,
  gatewayPaymentId: string | undefined,
): Promise<boolean> {
  if (gatewayPaymentId === undefined || payment.payment_status === 'FAILED') return false
  return attemptRecorded(trx, payment.id, { status: 'failed', gatewayPaymentId })
}

/**
 * The one pending refund of `amount` whose provider id is not yet stored. Two of them would
 * make the match a guess: a report taken for the wrong one leaves the other pending for
 * good once its answer names the id already used. The report is then refused (409), and the
 * provider sends it again once the answers (or `ask_refund_again`) have stored the ids.
 */
async function pendingOfAmount(
  trx: Db,
  payment: Payment,
  amount: bigint,
): Promise<Refund | undefined> {
  const candidates = (await refundsOf(trx, payment.id)).filter(
    (r) => r.status === 'pending' && r.gateway_refund_id === null && r.amount === amount,
  )
  if (candidates.length > 1) {
    throw new AppError(
      'conflict',
      `Payment ${payment.id} has ${candidates.length} refunds of this amount still waiting for the provider's answer; send the report again`,
      { payment_id: payment.id },
    )
  }
  return candidates[0]
}
