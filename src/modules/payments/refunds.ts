import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { formatMinorUnits, toMinorUnits } from '../../core/money.ts'
import { isSettled } from '../../core/payment-state.ts'
import { type Access, type Scope, scopeOf } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Payment, Refund } from '../../db/database.ts'
import { gatewayContext, resolveGateway } from '../../gateways/registry.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata } from '../../http/schema-types.ts'
import { stringFields } from '../../jobs/payload.ts'
import { createJobQueue } from '../../jobs/queue.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import { reverseInvoiceRefund } from '../settlement/service.ts'
import {
  allocationsLockingInvoices,
  findPayment,
  findRefund,
  insertRefund,
  listRefunds as listRefundRows,
  refundsOf,
  updatePayment,
  updateRefund,
} from './repository.ts'
import type { CreateRefundBody } from './schemas.ts'
import { toRefundResponse } from './schemas.ts'
import type { PaymentDeps } from './service.ts'
import { withLockedPayment } from './service.ts'
import {
  type Cause,
  movePayment,
  reconcileRefund,
  recordPaymentEvent,
  spreadOverAllocations,
} from './state.ts'

/**
 * Refunds a settled payment, fully (no amount: all that is still refundable) or in
 * part. Under the payment's row lock the refundable amount counts refunds still
 * pending, so concurrent refunds can never add up to more than was paid. Internal
 * rails complete at once; a gateway refund is asked for after the lock is released
 * and recorded when it answers (or when its webhook arrives).
 *
 * @example
 * const refund = await createRefund(deps, access, paymentId, { amount: '5.00', reason: 'requested_by_customer' }, cause)
 */
export async function createRefund(
  deps: PaymentDeps,
  access: Access,
  paymentId: string,
  body: CreateRefundBody,
  cause: Cause,
): Promise<Refund> {
  const scope = scopeOf(access)
  const existing = await findPayment(deps.db, scope.environmentId, paymentId, access.customerId)
  if (!existing) throw notFound('payment', paymentId)
  const gateway = resolveGateway(
    existing.payment_method_type,
    existing.payment_gateway ?? undefined,
  )
  if (!gateway.capabilities.refund) {
    throw new AppError(
      'not_supported',
      `The ${gateway.name} gateway does not take refunds through Payrail`,
      {
        payment_gateway: gateway.name,
      },
    )
  }
  const ctx = await gatewayContext(deps, scope, gateway.name)
  let created: Refund | undefined
  await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    if (locked.payment_status === 'REFUNDED') {
      if (locked.amount_refunded < locked.amount_paid) {
        // A refund of it failed after it succeeded (`failSucceededRefundLocked`): REFUNDED is
        // final, so what that refund gave back is refunded in the provider's dashboard, and
        // recorded when its webhook arrives.
        const left = formatMinorUnits(locked.amount_paid - locked.amount_refunded, locked.currency)
        throw new AppError(
          'invalid_state_transition',
          `Payment ${locked.id} is REFUNDED, which is final, though a refund of it failed after it succeeded: refund the ${left} left in the provider's dashboard, and Payrail records it from the provider's webhook`,
          {
            payment_id: locked.id,
            payment_status: locked.payment_status,
            not_refunded: left,
          },
        )
      }
      throw new AppError('conflict', `Nothing is left to refund on payment ${locked.id}`, {
        refundable: '0.00',
      })
    }
    if (!isSettled(locked.payment_status)) {
      throw new AppError(
        'invalid_state_transition',
        `Payment ${locked.id} is ${locked.payment_status}; only received money can be refunded`,
        {
          payment_id: locked.id,
          payment_status: locked.payment_status,
        },
      )
    }
    const pending = (await refundsOf(trx, locked.id))
      .filter((r) => r.status === 'pending')
      .reduce((sum, r) => sum + r.amount, 0n)
    const refundable = locked.amount_paid - locked.amount_refunded - pending
    const amount =
      body.amount === undefined ? refundable : toMinorUnits(body.amount, locked.currency)
    if (amount <= 0n) {
      throw refundable <= 0n
        ? new AppError('conflict', `Nothing is left to refund on payment ${locked.id}`, {
            refundable: formatMinorUnits(0n, locked.currency),
          })
        : validationError('amount must be greater than zero', { field: 'amount' })
    }
    if (amount > refundable) {
      const shown = formatMinorUnits(refundable, locked.currency)
      throw new AppError('conflict', `amount is more than the ${shown} still refundable`, {
        field: 'amount',
        refundable: shown,
      })
    }
    gateway.checkAmount?.(amount, locked.currency)
    const now = deps.clock.now()
    const refund = await insertPendingRefund(trx, scope, locked, amount, now, {
      reason: body.reason ?? null,
      metadata: mergeMetadata({}, body.metadata ?? {}),
    })
    if (gateway.capabilities.internal) {
      // The invoices before the balance, in the order a balance payment takes them: the
      // other way round, a refund and a payment of the same invoice deadlock.
      await allocationsLockingInvoices(trx, scope.environmentId, locked)
      await gateway.refundInternal?.(trx, ctx, locked, refund)
      created = (await completeRefundLocked(trx, scope, locked, refund, null, cause, deps)).refund
      return locked
    }
    // With the refund: if this process dies before the provider's answer is recorded, the
    // job asks again (the same key), so the refund never stays pending with nothing to settle it.
    await queueAskAgain(trx, scope, refund.id, new Date(now.getTime() + REFUND_CALL_LIMIT_MS))
    created = refund
    const moved = await movePayment(trx, scope, locked, 'PENDING_REFUND', {}, cause, deps)
    return moved.payment
  })
  if (!created) throw new Error('refund not created')
  if (gateway.capabilities.internal) return created
  return askGateway(deps, scope, paymentId, created, cause)
}

/** The job that asks a gateway again for a refund whose answer was lost (`askGateway`). */
export const ASK_REFUND_AGAIN = 'ask_refund_again'
/** When the job first asks again; graphile-worker's backoff spaces the later tries. */
const ASK_AGAIN_AFTER_MS = 30_000

/**
 * Longer than a refund call can take (the SDKs' timeouts and retries): the job queued with
 * a refund runs after it, so it never asks beside a call still waiting for its answer.
 */
const REFUND_CALL_LIMIT_MS = 5 * 60 * 1000

/** Queues (or moves) the refund's `ASK_REFUND_AGAIN` job: one per refund, by its key. */
async function queueAskAgain(trx: Db, scope: Scope, refundId: string, runAt: Date): Promise<void> {
  await createJobQueue(trx).add(
    ASK_REFUND_AGAIN,
    { tenantId: scope.tenantId, environmentId: scope.environmentId, refundId },
    { jobKey: `refund-ask-${refundId}`, runAt, maxAttempts: 25 },
  )
}

/**
 * Asks the payment's gateway for `refund` (with its idempotency key, `payrail-refund-<id>`:
 * asked again, the provider answers with the refund it made, or makes it once) and records
 * the answer under the payment's lock. An answer that was lost (a timeout, a reset, a 5xx:
 * `retryable`) says nothing about whether the provider refunded, so the refund stays
 * `pending`, counted against what is refundable: its webhook, or `ASK_REFUND_AGAIN`,
 * settles it. Failing it would let the same amount be refunded a second time. In that job
 * (`inJob`), a lost answer throws, and graphile-worker asks again later.
 */
async function askGateway(
  deps: PaymentDeps,
  scope: Scope,
  paymentId: string,
  refund: Refund,
  cause: Cause,
  options: { inJob?: boolean } = {},
): Promise<Refund> {
  const payment = await findPayment(deps.db, scope.environmentId, paymentId)
  if (!payment) throw notFound('payment', paymentId)
  const gateway = resolveGateway(payment.payment_method_type, payment.payment_gateway ?? undefined)
  const ctx = await gatewayContext(deps, scope, gateway.name)
  const result = await gateway.refund?.(ctx, payment, refund)
  let out = refund
  await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    const current = (await refundsOf(trx, locked.id)).find((r) => r.id === refund.id)
    if (current?.status !== 'pending') {
      // The provider's webhook got here first and settled it.
      out = current ?? refund
      return locked
    }
    if (result?.status === 'failed' && result.failure.retryable) {
      const now = deps.clock.now()
      out = await updateRefund(trx, refund.id, {
        failure_message: `No answer from ${gateway.name} (${result.failure.message}); asked again until it answers`,
        updated_at: now,
      })
      if (!options.inJob)
        await queueAskAgain(trx, scope, refund.id, new Date(now.getTime() + ASK_AGAIN_AFTER_MS))
      return locked
    }
    if (result?.status === 'succeeded' || result?.status === 'pending') {
      if (result.status === 'pending') {
        out = await updateRefund(trx, refund.id, {
          gateway_refund_id: result.gatewayRefundId,
          updated_at: deps.clock.now(),
        })
        return locked
      }
      const done = await completeRefundLocked(
        trx,
        scope,
        locked,
        current,
        result.gatewayRefundId,
        cause,
        deps,
      )
      out = done.refund
      return done.payment
    }
    const failed = await failRefundLocked(
      trx,
      scope,
      locked,
      current,
      result?.status === 'failed'
        ? { code: result.failure.code, message: result.failure.message }
        : { code: 'not_supported', message: 'refund not supported' },
      cause,
      deps,
    )
    out = failed.refund
    return failed.payment
  })
  if (options.inJob && out.status === 'pending' && result?.status === 'failed') {
    throw new Error(`refund ${refund.id}: still no answer from ${gateway.name}`)
  }
  return out
}

/**
 * `ASK_REFUND_AGAIN`: asks the gateway again for a refund still pending after a lost answer.
 * A refund settled meanwhile (its webhook) is left as it is. Returns the refund's status.
 */
export async function askRefundAgain(deps: PaymentDeps, payload: unknown): Promise<string> {
  const { tenantId, environmentId, refundId } = stringFields(ASK_REFUND_AGAIN, payload, [
    'tenantId',
    'environmentId',
    'refundId',
  ])
  const scope = { tenantId, environmentId }
  const refund = await findRefund(deps.db, environmentId, refundId)
  if (!refund) return 'gone'
  if (refund.status !== 'pending') return refund.status
  const cause: Cause = { cause: 'job', causeId: ASK_REFUND_AGAIN }
  const answered = await askGateway(deps, scope, refund.payment_id, refund, cause, { inJob: true })
  return answered.status
}

/**
 * Marks a pending refund succeeded on a locked payment: `amount_refunded` goes up,
 * the payment moves to PARTIALLY_REFUNDED or REFUNDED, and the invoices are
 * reconciled. A refund already succeeded is left alone (a repeated webhook).
 */
export async function completeRefundLocked(
  trx: Db,
  scope: Scope,
  locked: Payment,
  refund: Refund,
  gatewayRefundId: string | null,
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<{ payment: Payment; refund: Refund }> {
  if (refund.status !== 'pending') return { payment: locked, refund }
  const now = deps.clock.now()
  const done = await updateRefund(trx, refund.id, {
    status: 'succeeded',
    gateway_refund_id: gatewayRefundId ?? refund.gateway_refund_id,
    // A lost answer's note (`askGateway`) is history once the provider has answered.
    failure_message: null,
    updated_at: now,
  })
  const refunded = locked.amount_refunded + refund.amount
  // While another refund of the payment is pending, it stays PENDING_REFUND: the last to
  // settle moves it.
  const moved = (await anotherPending(trx, locked, refund))
    ? undefined
    : await movePayment(
        trx,
        scope,
        locked,
        refunded >= locked.amount_paid ? 'REFUNDED' : 'PARTIALLY_REFUNDED',
        { amount_refunded: refunded },
        cause,
        deps,
      )
  let payment: Payment
  if (moved?.kind === 'applied') payment = moved.payment
  else {
    payment = await updatePayment(trx, locked.id, { amount_refunded: refunded, updated_at: now })
    // `amount_refunded` rose without a move (another refund is still pending): no
    // transition's event shows it, `payment.updated` does.
    await recordPaymentEvent(trx, scope, payment, 'payment.updated', deps.clock)
  }
  await reconcileRefund(trx, scope, payment, refund.amount, deps.clock)
  await recordEvents(trx, scope, now, [refundEvent('refund.succeeded', done)])
  return { payment, refund: done }
}

/**
 * Records a refund the provider reports that Payrail did not ask for: one made in Stripe's
 * dashboard or Checkout.com's hub. The money has left the merchant, so the payment's
 * `amount_refunded` and its invoices must say so, as Stripe's own charge does. It is stored
 * as a refund like Payrail's (`metadata.recorded_from` names the provider) and settled at
 * once: its webhooks repeat it by the provider's refund id, which then finds it. A report
 * that overtakes the payment's own success is refused (409, the provider sends it again);
 * one of more than is left to refund, or on a payment that FAILED or was CANCELLED, is logged
 * and ignored: the provider refunds only what it took. Returns `undefined` when nothing was
 * recorded.
 */
export async function recordOutsideRefundLocked(
  trx: Db,
  scope: Scope,
  locked: Payment,
  reported: { gatewayRefundId: string; amount: bigint; reason?: string | undefined },
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<{ payment: Payment; refund: Refund } | undefined> {
  const status = locked.payment_status
  if (!isSettled(status) && status !== 'FAILED' && status !== 'CANCELLED') {
    // The refund's report overtook the payment's own (a success the provider is still
    // sending again): refused, so that the provider sends it again once the payment holds
    // the money. Ignored, the refund would be lost and the late success booked in full.
    throw new AppError(
      'conflict',
      `Payment ${locked.id} is ${locked.payment_status}: a refund of it is applied once it has settled; send it again`,
      { payment_id: locked.id, payment_status: locked.payment_status },
    )
  }
  const left = locked.amount_paid - locked.amount_refunded
  if (
    !isSettled(locked.payment_status) ||
    reported.gatewayRefundId === '' ||
    reported.amount <= 0n ||
    reported.amount > left
  ) {
    deps.logger.warn(
      {
        payment_id: locked.id,
        payment_status: locked.payment_status,
        gateway_refund_id: reported.gatewayRefundId,
        amount: String(reported.amount),
      },
      'a refund the provider reports does not fit the payment; not recorded',
    )
    return undefined
  }
  const refund = await insertPendingRefund(trx, scope, locked, reported.amount, deps.clock.now(), {
    reason: reported.reason ?? null,
    metadata: { recorded_from: locked.payment_gateway ?? 'gateway' },
    gateway_refund_id: reported.gatewayRefundId,
  })
  // REFUND_FAILED settles only through PENDING_REFUND (the state machine's one way out).
  const payment =
    locked.payment_status === 'REFUND_FAILED'
      ? (await movePayment(trx, scope, locked, 'PENDING_REFUND', {}, cause, deps)).payment
      : locked
  return completeRefundLocked(trx, scope, payment, refund, reported.gatewayRefundId, cause, deps)
}

/** Why a refund failed: the provider's code (`failure_code`) and its sentence (`failure_message`). */
export interface RefundFailure {
  code: string
  message: string
}

function markFailed(trx: Db, refund: Refund, failure: RefundFailure, now: Date): Promise<Refund> {
  return updateRefund(trx, refund.id, {
    status: 'failed',
    failure_code: failure.code,
    failure_message: failure.message,
    updated_at: now,
  })
}

/**
 * Marks a pending refund failed on a locked payment (the provider refused it): nothing was
 * refunded, so its amount can be refunded again.
 */
export async function failRefundLocked(
  trx: Db,
  scope: Scope,
  locked: Payment,
  refund: Refund,
  failure: RefundFailure,
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<{ payment: Payment; refund: Refund }> {
  const now = deps.clock.now()
  const failed = await markFailed(trx, refund, failure, now)
  // REFUND_FAILED only when nothing was refunded and no other refund is pending: a payment
  // partly refunded before stays PARTIALLY_REFUNDED (or REFUNDED), and one with another
  // refund pending stays PENDING_REFUND until that one settles.
  if (await anotherPending(trx, locked, refund)) {
    await recordEvents(trx, scope, now, [refundEvent('refund.failed', failed)])
    return { payment: locked, refund: failed }
  }
  const to =
    locked.amount_refunded === 0n
      ? 'REFUND_FAILED'
      : locked.amount_refunded >= locked.amount_paid
        ? 'REFUNDED'
        : 'PARTIALLY_REFUNDED'
  const moved = await movePayment(trx, scope, locked, to, {}, cause, deps)
  await recordEvents(trx, scope, now, [refundEvent('refund.failed', failed)])
  return { payment: moved.payment, refund: failed }
}

/**
 * Fails a refund its provider reported succeeded and now reports failed: Stripe's refund to
 * a closed card account fails days later, and the money goes back to the merchant's Stripe
 * balance (https://docs.stripe.com/refunds#failed-refunds). What it refunded is the
 * payment's again: `amount_refunded` goes down by it, its invoices take it back (first
 * allocation first, as they are paid) and it can be refunded again. The state machine
 * decides the payment's status: refunded in part by this refund only, it goes
 * PARTIALLY_REFUNDED → PENDING_REFUND → REFUND_FAILED (nothing refunded, refundable again);
 * with another refund that stands or is pending, its status stays and `payment.updated`
 * says what changed; REFUNDED is final and stays, so the rest is refunded in the provider's
 * dashboard (`createRefund` says so). Credit a refunded top-up took back is not given back.
 */
export async function failSucceededRefundLocked(
  trx: Db,
  scope: Scope,
  locked: Payment,
  refund: Refund,
  failure: RefundFailure,
  cause: Cause,
  deps: Pick<PaymentDeps, 'clock' | 'logger'>,
): Promise<{ payment: Payment; refund: Refund }> {
  const now = deps.clock.now()
  const failed = await markFailed(trx, refund, failure, now)
  const refunded =
    locked.amount_refunded > refund.amount ? locked.amount_refunded - refund.amount : 0n
  const failedCause = { ...cause, note: `refund ${refund.id} failed after it succeeded` }
  let payment: Payment
  if (
    locked.payment_status === 'PARTIALLY_REFUNDED' &&
    refunded === 0n &&
    !(await anotherPending(trx, locked, refund))
  ) {
    const changes = { amount_refunded: 0n, refunded_at: null }
    const pending = await movePayment(
      trx,
      scope,
      locked,
      'PENDING_REFUND',
      changes,
      failedCause,
      deps,
    )
    payment = (
      await movePayment(trx, scope, pending.payment, 'REFUND_FAILED', changes, failedCause, deps)
    ).payment
  } else {
    payment = await updatePayment(trx, locked.id, { amount_refunded: refunded, updated_at: now })
    await recordPaymentEvent(trx, scope, payment, 'payment.updated', deps.clock)
  }
  await reverseRefundOnInvoices(trx, scope, payment, refund.amount, deps.clock)
  await recordEvents(trx, scope, now, [refundEvent('refund.failed', failed)])
  deps.logger.warn(
    {
      payment_id: locked.id,
      refund_id: refund.id,
      gateway: locked.payment_gateway,
      gateway_refund_id: refund.gateway_refund_id,
      failure_code: failure.code,
      payment_status: payment.payment_status,
    },
    "the provider failed a refund it had reported succeeded; the money is the merchant's again",
  )
  return { payment, refund: failed }
}

/**
 * Puts a failed refund's amount back on the payment's invoices: undoes what
 * `reconcileRefund` took (last allocation first) by giving it back first allocation first,
 * each up to its allocated amount, the last taking any rest, as a payment is applied.
 */
async function reverseRefundOnInvoices(
  trx: Db,
  scope: Scope,
  payment: Payment,
  amount: bigint,
  clock: Clock,
): Promise<void> {
  await spreadOverAllocations(
    trx,
    scope,
    payment,
    amount,
    (allocation) => allocation.amount - allocation.applied_amount,
    (invoiceId, share) => reverseInvoiceRefund(trx, scope, invoiceId, share, clock),
  )
}

/** A new pending refund of `amount` on the locked payment, and its `refund.created` event. */
async function insertPendingRefund(
  trx: Db,
  scope: Scope,
  locked: Payment,
  amount: bigint,
  now: Date,
  fields: { reason: string | null; metadata: Record<string, string>; gateway_refund_id?: string },
): Promise<Refund> {
  const refund = await insertRefund(trx, {
    id: newId('refund'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    payment_id: locked.id,
    amount,
    currency: locked.currency,
    status: 'pending',
    reason: fields.reason,
    metadata: JSON.stringify(fields.metadata),
    gateway_refund_id: fields.gateway_refund_id ?? null,
    created_at: now,
    updated_at: now,
  })
  await recordEvents(trx, scope, now, [refundEvent('refund.created', refund)])
  return refund
}

/** Whether a refund of `payment` other than `refund` is still pending. */
async function anotherPending(trx: Db, payment: Payment, refund: Refund): Promise<boolean> {
  return (await refundsOf(trx, payment.id)).some(
    (r) => r.id !== refund.id && r.status === 'pending',
  )
}

export async function getRefund(db: Db, access: Access, id: string): Promise<Refund> {
  const refund = await findRefund(db, access.environmentId, id, access.customerId)
  if (!refund) throw notFound('refund', id)
  return refund
}

export async function listRefunds(
  db: Db,
  access: Access,
  filters: { paymentId?: string | undefined; status?: Refund['status'] | undefined },
  request: ListRequest<'created_at' | 'amount'>,
) {
  return listRefundRows(db, access.environmentId, filters, request)
}

function refundEvent(type: EventType, refund: Refund) {
  return { type, objectType: 'refund', objectId: refund.id, data: toRefundResponse(refund) }
}
