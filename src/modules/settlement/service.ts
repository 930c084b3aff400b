import type { Clock } from '../../core/clock.ts'
import { AppError } from '../../core/errors.ts'
import { compareIds } from '../../core/ids.ts'
import { isPaidStatus } from '../../core/invoice-state.ts'
import type { PaymentStatus } from '../../core/payment-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Invoice, Order, Payment, Subscription } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import { createJobQueue } from '../../jobs/queue.ts'
import { STRIPE_PAID_OUT_OF_BAND } from '../../jobs/tasks/stripe-paid-out-of-band.ts'
import { takenBackFor } from '../balances/repository.ts'
import { applyBalanceChange, balanceOf } from '../balances/service.ts'
import { recordEvents } from '../events/service.ts'
import { findInvoice } from '../invoices/repository.ts'
import {
  applyDiscountCode,
  assertPayable,
  finalizeLocked,
  type InvoiceChange,
  lockInvoiceOrFail,
  markUncollectibleLocked,
  paidByDiscountLocked,
  recordPaymentLocked,
  recordRefundLocked,
  reverseRefundLocked,
  setPaymentStatusLocked,
  voidLocked,
} from '../invoices/service.ts'
import { lockOrderByInvoice, updateOrder } from '../orders/repository.ts'
import { toOrderResponse } from '../orders/schemas.ts'
import { inFlightAmount, openPaymentsForInvoice } from '../payments/repository.ts'
import { findSubscription, lockSubscription, schedulesOf } from '../subscriptions/repository.ts'
import {
  cancelSubscription,
  endIncompleteCancellation,
  isDueIncompleteCancellation,
  onSubscriptionInvoicePaid,
  onSubscriptionInvoiceVoided,
  type SubscriptionWithSchedules,
} from '../subscriptions/service.ts'

/**
 * What an invoice's lifecycle does to the things it bills for. Every function here
 * runs in one transaction with the invoice row locked, so the invoice and its
 * order, subscription and balance change together, exactly once.
 */

/**
 * Fulfils what a newly paid invoice was for: a credit top-up credits the balance,
 * a one-time order is fulfilled, a subscription order starts its subscription (and
 * a renewal invoice brings a past-due subscription back to active). An order is
 * fulfilled once: a second call finds it no longer PENDING and does nothing.
 */
export async function settlePaidInvoice(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  clock: Clock,
): Promise<void> {
  // An order's invoice carries its order_id; an invoice without one has no order to fulfil.
  const order = invoice.order_id
    ? await lockOrderByInvoice(trx, scope.environmentId, invoice.id)
    : undefined
  if (order?.status === 'PENDING') await fulfilOrder(trx, scope, order, clock)
  await onSubscriptionInvoicePaid(trx, scope, invoice, clock)
  if (invoice.source === 'stripe' && invoice.stripe_invoice_id) {
    // Stripe issued it and still tries to collect it: tell Stripe, once the payment commits.
    await createJobQueue(trx).add(
      STRIPE_PAID_OUT_OF_BAND,
      {
        tenantId: scope.tenantId,
        environmentId: scope.environmentId,
        stripeInvoiceId: invoice.stripe_invoice_id,
      },
      { jobKey: `stripe-oob-${invoice.id}`, maxAttempts: 25 },
    )
  }
}

async function fulfilOrder(trx: Db, scope: Scope, order: Order, clock: Clock): Promise<void> {
  if (order.type === 'CREDIT_TOP_UP') {
    await applyBalanceChange(
      trx,
      scope,
      {
        customerId: order.customer_id,
        currency: order.currency,
        amount: order.amount,
        type: 'top_up',
        source: { type: 'order', id: order.id },
        description: 'Credit top-up',
      },
      clock,
    )
  }
  await endOrder(trx, scope, order.id, 'FULFILLED', clock)
}

/** An order FULFILLED or CANCELLED, with its event. */
async function endOrder(
  trx: Db,
  scope: Scope,
  orderId: string,
  status: 'FULFILLED' | 'CANCELLED',
  clock: Clock,
): Promise<void> {
  const now = clock.now()
  const fulfilled = status === 'FULFILLED'
  const ended = await updateOrder(trx, orderId, {
    status,
    ...(fulfilled ? { fulfilled_at: now } : { cancelled_at: now }),
    updated_at: now,
  })
  await recordEvents(trx, scope, now, [
    {
      type: fulfilled ? 'order.fulfilled' : 'order.cancelled',
      objectType: 'order',
      objectId: orderId,
      data: toOrderResponse(ended),
    },
  ])
}

/** `POST /v1/invoices/:id/finalize`. */
export async function finalizeInvoice(
  db: Db,
  scope: Scope,
  invoiceId: string,
  clock: Clock,
): Promise<InvoiceChange> {
  return inTransaction(db, async (trx) => {
    const change = await finalizeLocked(
      trx,
      scope,
      await lockInvoiceOrFail(trx, scope, invoiceId),
      clock,
    )
    if (change.becamePaid) await settlePaidInvoice(trx, scope, change.invoice, clock)
    return change
  })
}

/** `POST /v1/invoices/:id/void`: the invoice's pending order is cancelled and a never-started subscription ends. */
export async function voidInvoice(
  db: Db,
  scope: Scope,
  invoiceId: string,
  clock: Clock,
): Promise<InvoiceChange> {
  return inTransaction(db, async (trx) =>
    voidWithWhatItBills(trx, scope, await lockInvoiceOrFail(trx, scope, invoiceId), clock),
  )
}

/** `voidInvoice` of an invoice the caller's transaction holds locked. */
async function voidWithWhatItBills(
  trx: Db,
  scope: Scope,
  locked: Invoice,
  clock: Clock,
): Promise<InvoiceChange> {
  await assertNoPaymentOpen(trx, scope, locked.id, 'voiding')
  const change = await voidLocked(trx, scope, locked, clock)
  const order = await lockOrderByInvoice(trx, scope.environmentId, locked.id)
  if (order?.status === 'PENDING') await endOrder(trx, scope, order.id, 'CANCELLED', clock)
  await onSubscriptionInvoiceVoided(trx, scope, change.invoice, clock)
  return change
}

/**
 * `POST /v1/subscriptions/:id/cancel`. An `incomplete` subscription (its first invoice never
 * paid) cancelled now has that invoice voided and its order cancelled, as voiding the invoice
 * would (`voidInvoice`, which ends the subscription): the customer can no longer pay for a
 * subscription that does not exist. A first invoice partly paid, or with a payment still
 * open on it, is left as it is (the subscription alone is cancelled): voiding it would lose
 * that money's invoice.
 */
export async function cancelSubscriptionAndFirstInvoice(
  db: Db,
  scope: Scope,
  id: string,
  atPeriodEnd: boolean,
  clock: Clock,
): Promise<SubscriptionWithSchedules> {
  const current = atPeriodEnd ? undefined : await findSubscription(db, scope.environmentId, id)
  const first = current && (await voidableFirstInvoice(db, scope, current))
  if (first && first.unprocessed.length === 0) {
    try {
      await voidInvoice(db, scope, first.invoice.id, clock)
    } catch (error) {
      // Paid, or a payment opened, meanwhile: the subscription is cancelled on its own.
      if (!(error instanceof AppError) || error.code !== 'invalid_state_transition') throw error
    }
    const ended = await findSubscription(db, scope.environmentId, id)
    if (ended?.status === 'canceled') {
      return { subscription: ended, schedules: await schedulesOf(db, [id]) }
    }
  }
  return cancelSubscription(db, scope, id, atPeriodEnd, clock)
}

/**
 * Ends an `incomplete` subscription whose cancel at the period end has come
 * (`isDueIncompleteCancellation`; the renewal job's work, or a request's that finds the job
 * behind) as `cancelSubscriptionAndFirstInvoice` cancels one now: its first invoice voided
 * and its order cancelled when nothing is kept on it, else the subscription alone ended.
 * Either is decided under the subscription's row lock (taken after the invoice's, as settling
 * takes them): a payment that started the subscription meanwhile, or a cancel taken back,
 * leaves it as it is (undefined). Before, the subscription read at the start was cancelled
 * whatever it had become, and a customer who had just paid had the period paid for ended the
 * same instant. The invoice's unprocessed payments are the caller's to cancel first
 * (`endDueIncompleteCancellation`).
 */
export async function endIncompleteCancellationAndFirstInvoice(
  db: Db,
  scope: Scope,
  id: string,
  clock: Clock,
): Promise<SubscriptionWithSchedules | undefined> {
  const current = await findSubscription(db, scope.environmentId, id)
  if (!current || !isDueIncompleteCancellation(current, clock.now())) return undefined
  const first = await voidableFirstInvoice(db, scope, current)
  if (first && first.unprocessed.length === 0) {
    try {
      const voided = await inTransaction(db, async (trx) => {
        const invoice = await lockInvoiceOrFail(trx, scope, first.invoice.id)
        const subscription = await lockSubscription(trx, scope.environmentId, id)
        if (!subscription || !isDueIncompleteCancellation(subscription, clock.now())) return false
        await voidWithWhatItBills(trx, scope, invoice, clock)
        return true
      })
      const ended = voided && (await findSubscription(db, scope.environmentId, id))
      if (ended) return { subscription: ended, schedules: await schedulesOf(db, [id]) }
    } catch (error) {
      // Part paid, or a payment opened, meanwhile: the subscription is ended on its own.
      if (!(error instanceof AppError) || error.code !== 'invalid_state_transition') throw error
    }
  }
  return endIncompleteCancellation(db, scope, id, clock)
}

/**
 * Refuses (422) a payment of the first invoice of a subscription the merchant has ended: an
 * `incomplete` one set to cancel at a period end that has passed, which the renewal job has
 * not ended yet (`isDueIncompleteCancellation`). Paid, the invoice would start it with a new
 * period. Called under the invoice's lock before money moves; a subscription's first invoice
 * costs one read, any other invoice none. The error names the subscription
 * (`ENDED_SUBSCRIPTION_DETAIL`), for the caller to end it as the job would.
 */
export async function assertStartsNoEndedSubscription(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  now: Date,
): Promise<void> {
  if (invoice.billing_reason !== 'subscription_create' || invoice.subscription_id === null) return
  const subscription = await findSubscription(trx, scope.environmentId, invoice.subscription_id)
  if (!subscription || !isDueIncompleteCancellation(subscription, now)) return
  throw new AppError(
    'invalid_state_transition',
    `Subscription ${subscription.id} was cancelled at the end of its period (${subscription.current_period_end.toISOString()}): its first invoice ${invoice.id} can no longer be paid`,
    {
      invoice_id: invoice.id,
      [ENDED_SUBSCRIPTION_DETAIL]: subscription.id,
      current_period_end: subscription.current_period_end.toISOString(),
    },
  )
}

/** In a 422 of `assertStartsNoEndedSubscription`: the subscription that has ended. */
export const ENDED_SUBSCRIPTION_DETAIL = 'ended_subscription_id'

/**
 * The first invoice of an `incomplete` subscription, when cancelling the subscription now may
 * void it: finalized, nothing kept on it (nothing paid, or all of it refunded), and no payment on it that may take money or that
 * pays other invoices too. `unprocessed` are its payments not yet processed (`INITIATED`),
 * which hold no money: the invoice is voided only once they are cancelled
 * (`cancelSubscriptionNow` does). Undefined when the invoice must be kept.
 */
export async function voidableFirstInvoice(
  db: Db,
  scope: Scope,
  subscription: Subscription,
): Promise<{ invoice: Invoice; unprocessed: Payment[] } | undefined> {
  if (subscription.status !== 'incomplete' || !subscription.latest_invoice_id) return undefined
  const invoice = await findInvoice(db, scope.environmentId, subscription.latest_invoice_id)
  if (
    invoice?.invoice_status !== 'FINALIZED' ||
    isPaidStatus(invoice.payment_status) ||
    invoice.amount_paid !== invoice.amount_refunded
  )
    return undefined
  const open = await openPaymentsForInvoice(db, scope.environmentId, invoice.id)
  const unprocessed = open.filter(
    (p) => p.payment_status === 'INITIATED' && p.invoice_ids.length === 1,
  )
  return unprocessed.length === open.length ? { invoice, unprocessed } : undefined
}

/**
 * Applies a discount code at payment time to a locked invoice. A code that leaves nothing to
 * pay settles the invoice there and then, as finalizing an invoice of nothing does (its order
 * fulfilled, its subscription activated): `paidByDiscount`, and no payment is needed. With a
 * payment still open on the invoice (a page that could take money) it is refused: cancel it
 * first.
 *
 * A code that lowers what is owed is refused (422) while another payment on the invoice can
 * still take the old amount (a page open at the provider, a charge in flight, funds held):
 * paid, it would leave the invoice OVERPAID. An INITIATED payment holds nothing, even one
 * whose page is being opened: that page is checked against what the invoice owes, under its
 * lock, when it is recorded, and withdrawn if the code left too little (`recordStart`).
 * `except` is the payment the code is applied with (`PATCH /v1/invoices/:id/payment`), whose
 * amount follows the code.
 */
export async function applyDiscountCodeLocked(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  code: string,
  clock: Clock,
  except?: string,
): Promise<{ invoice: Invoice; paidByDiscount: boolean }> {
  // A code is part of paying: an invoice that cannot be paid (its window ended, voided,
  // already paid, its subscription ended) cannot be paid by a code either, and a code
  // covering it all would settle it.
  assertPayable(invoice, clock.now())
  await assertStartsNoEndedSubscription(trx, scope, invoice, clock.now())
  const taking = (await openPaymentsForInvoice(trx, scope.environmentId, invoice.id)).find(
    (p) => p.id !== except && p.payment_status !== 'INITIATED',
  )
  if (taking) {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${invoice.id} has payment ${taking.id} (${taking.payment_status}) open for its full amount; cancel it before applying discount code ${code}`,
      { invoice_id: invoice.id, payment_id: taking.id, payment_status: taking.payment_status },
    )
  }
  const discounted = await applyDiscountCode(trx, scope, invoice, code, clock)
  if (discounted.amount_remaining !== 0n || isPaidStatus(discounted.payment_status))
    return { invoice: discounted, paidByDiscount: false }
  const [open] = await openPaymentsForInvoice(trx, scope.environmentId, discounted.id)
  if (open) {
    throw new AppError(
      'invalid_state_transition',
      `Discount code ${code} covers all of invoice ${discounted.id}, which has payment ${open.id} (${open.payment_status}) open; cancel it first`,
      { invoice_id: discounted.id, payment_id: open.id, payment_status: open.payment_status },
    )
  }
  const change = await paidByDiscountLocked(trx, scope, discounted, clock)
  if (!change.becamePaid) return { invoice: discounted, paidByDiscount: false }
  await settlePaidInvoice(trx, scope, change.invoice, clock)
  return { invoice: change.invoice, paidByDiscount: true }
}

/** `POST /v1/invoices/:id/mark_uncollectible`. */
export async function markInvoiceUncollectible(
  db: Db,
  scope: Scope,
  invoiceId: string,
  clock: Clock,
): Promise<InvoiceChange> {
  return inTransaction(db, async (trx) => {
    const locked = await lockInvoiceOrFail(trx, scope, invoiceId)
    await assertNoPaymentOpen(trx, scope, invoiceId, 'marking it uncollectible')
    return markUncollectibleLocked(trx, scope, locked, clock)
  })
}

/**
 * A payment that may still take money (a page open, a charge in flight) would find the
 * invoice voided or written off when it succeeds: the money would land on an invoice that
 * no longer asks for it. Refused (422): cancel the payment first.
 */
async function assertNoPaymentOpen(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  doing: string,
): Promise<void> {
  const [open] = await openPaymentsForInvoice(trx, scope.environmentId, invoiceId)
  if (open) {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${invoiceId} has payment ${open.id} (${open.payment_status}) that may still take money; cancel it before ${doing}`,
      { invoice_id: invoiceId, payment_id: open.id, payment_status: open.payment_status },
    )
  }
}

/**
 * An invoice's `payment_status` follows its payments' moves between the amounts it keeps:
 * `PROCESSING` while a payment on it is in flight (a card charge awaiting its answer, coins
 * awaiting confirmations), `FAILED` when its last payment failed. Called with each payment's
 * move; an invoice paid (or refunded) is left to `recordPaymentLocked`'s status.
 */
export async function followPaymentMove(
  trx: Db,
  scope: Scope,
  invoiceIds: readonly string[],
  move: { paymentId: string; from: PaymentStatus; to: PaymentStatus },
  clock: Clock,
): Promise<void> {
  const { paymentId, from, to } = move
  const starts = to === 'PROCESSING' && from !== 'PROCESSING'
  const ends = from === 'PROCESSING' && to !== 'PROCESSING'
  const fails = to === 'FAILED'
  if (!starts && !ends && !fails) return
  // In the order of their ids, as every path locks invoices.
  for (const invoiceId of [...invoiceIds].sort(compareIds)) {
    const invoice = await lockInvoiceOrFail(trx, scope, invoiceId)
    const status = invoice.payment_status
    if (status !== 'PENDING' && status !== 'PROCESSING' && status !== 'FAILED') continue
    let next = status
    if (starts) next = 'PROCESSING'
    else if (status === 'PROCESSING' || fails) {
      // Another payment still in flight keeps the invoice PROCESSING.
      const others = await inFlightAmount(trx, invoiceId, paymentId)
      next = others > 0n ? 'PROCESSING' : fails || to === 'ON_RETRY' ? 'FAILED' : 'PENDING'
    }
    if (next !== status) await setPaymentStatusLocked(trx, scope, invoiceId, next, clock)
  }
}

/**
 * Reconciles an applied payment with its invoice in the caller's transaction:
 * amounts and status move, and if this payment completed the invoice, what it
 * billed for is fulfilled. A payment that pays a refunded credit top-up again gives
 * back the credit refunds took (`recreditRepaidTopUp`).
 *
 * @example
 * await inTransaction(db, (trx) => applyInvoicePayment(trx, scope, invoiceId, 1500n, clock))
 */
export async function applyInvoicePayment(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  const before = await lockInvoiceOrFail(trx, scope, invoiceId)
  const changed = await recordPaymentLocked(trx, scope, before, amount, clock)
  if (changed.becamePaid) await settlePaidInvoice(trx, scope, changed.invoice, clock)
  // Only an order's invoice that refunds took money from can be a top-up whose credit was
  // taken back: any other payment reads nothing more.
  if (before.order_id && before.amount_refunded > 0n)
    await recreditRepaidTopUp(trx, scope, before, changed.invoice, clock)
  return changed
}

/**
 * The share of a credit top-up's credit (`order.amount`) its invoice is not paid for: the
 * credit times the share of `amount_due` its payments do not cover net after refunds.
 */
function uncoveredCredit(order: Order, invoice: Invoice): bigint {
  const netPaid = invoice.amount_paid - invoice.amount_refunded
  const price = invoice.amount_due
  const paid = netPaid < 0n ? 0n : netPaid > price ? price : netPaid
  return price > 0n ? (order.amount * (price - paid)) / price : 0n
}

/**
 * A payment applied to the invoice of a fulfilled credit top-up whose credit refunds took
 * back gives back the credit the invoice is paid for again: what refunds took back net of
 * what earlier payments gave back (`takenBackFor`) beyond what the invoice still leaves
 * uncovered, and no more than the share this payment covers again. A refund that found the
 * credit spent took back less than it uncovered: a payment first covers that spent credit,
 * so the customer never holds more than the invoice is net paid for, nor more than the
 * top-up's credit.
 */
async function recreditRepaidTopUp(
  trx: Db,
  scope: Scope,
  before: Invoice,
  after: Invoice,
  clock: Clock,
): Promise<void> {
  const order = await lockOrderByInvoice(trx, scope.environmentId, after.id)
  if (order?.type !== 'CREDIT_TOP_UP' || order.status !== 'FULFILLED') return
  const takenBack = await takenBackFor(trx, order.customer_id, after.id)
  // min(uncovered before, taken back) - uncovered after: a refund failed after it succeeded
  // (`reverseInvoiceRefund`) leaves more taken back than uncovered, given back by the merchant.
  const uncoveredBefore = uncoveredCredit(order, before)
  const owed = uncoveredBefore < takenBack ? uncoveredBefore : takenBack
  const credit = owed - uncoveredCredit(order, after)
  if (credit <= 0n) return
  await applyBalanceChange(
    trx,
    scope,
    {
      customerId: order.customer_id,
      currency: order.currency,
      amount: credit,
      type: 'top_up',
      // Unique per payment applied: each raises `amount_paid`.
      source: { type: 'invoice_payment', id: `${after.id}:${after.amount_paid}:${takenBack}` },
      description: 'Credit top-up paid again',
    },
    clock,
  )
}

/**
 * Reconciles an applied refund with its invoice in the caller's transaction. A
 * refunded credit top-up takes the credit back off the balance, as far as the
 * balance still holds it (credits already spent cannot be taken back; the ledger
 * shows what was).
 */
export async function applyInvoiceRefund(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  const change = await recordRefundLocked(
    trx,
    scope,
    await lockInvoiceOrFail(trx, scope, invoiceId),
    amount,
    clock,
  )
  const order = await lockOrderByInvoice(trx, scope.environmentId, invoiceId)
  if (order?.type === 'CREDIT_TOP_UP' && order.status === 'FULFILLED') {
    // The customer keeps the credit the invoice is still paid for (a refunded second payment
    // of a paid top-up takes nothing back), and no more than the balance holds: read under
    // its lock, so a payment from the balance committing meanwhile is counted.
    // The credit is the order's amount, bought for the invoice's `amount_due` (less when a
    // discount applied): what is no longer paid for takes back its share of the credit.
    const uncovered = uncoveredCredit(order, change.invoice)
    // Net of what payments of the invoice gave back since (`recreditRepaidTopUp`).
    const takenBack = await takenBackFor(trx, order.customer_id, invoiceId)
    const due = uncovered - takenBack
    const available = await balanceOf(trx, order.customer_id, order.currency, { lock: true })
    const takeBack = available < due ? available : due
    if (takeBack > 0n) {
      await applyBalanceChange(
        trx,
        scope,
        {
          customerId: order.customer_id,
          currency: order.currency,
          amount: -takeBack,
          type: 'refund',
          // Unique: a refund that failed after it succeeded (`reverseInvoiceRefund`) lowers
          // `amount_refunded`, and the next refund reaches the same amount again.
          source: {
            type: 'invoice_refund',
            id: `${invoiceId}:${change.invoice.amount_refunded}:${takenBack}`,
          },
          description: 'Refunded credit top-up',
        },
        clock,
      )
    }
  }
  return change
}

/**
 * Reconciles, in the caller's transaction, a refund its provider failed after it had
 * succeeded: the money is the invoice's again (`reverseRefundLocked`), and an invoice this
 * leaves paid in full for the first time is settled as a payment would settle it (its order
 * fulfilled). Credit a refunded top-up took back is not given back: the merchant still owes
 * it to the customer, which a balance adjustment settles, and it stays counted as taken back
 * (`takenBackFor`), so a later refund takes back only what was not.
 */
export async function reverseInvoiceRefund(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  const changed = await reverseRefundLocked(
    trx,
    scope,
    await lockInvoiceOrFail(trx, scope, invoiceId),
    amount,
    clock,
  )
  if (changed.becamePaid) await settlePaidInvoice(trx, scope, changed.invoice, clock)
  return changed
}
