import { periodEndAfter } from '../../core/billing-period.ts'
import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { assertWithinLimit } from '../../core/money.ts'
import type { Access, Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type {
  CollectionMethod,
  Invoice,
  Price,
  Product,
  Subscription,
  SubscriptionSchedule,
} from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { parseTimeBound } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import type { Logger } from '../../logger.ts'
import { getCustomer } from '../customers/service.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import { finalizeLocked, insertDraftInvoice } from '../invoices/service.ts'
import { getPriceWithProduct } from '../products/service.ts'
import { stopAutomaticChargesOf } from './next-payment-attempt.ts'
import {
  countUnpaidInvoices,
  dueSchedules,
  findDueSubscriptions,
  findSubscription,
  insertSchedule,
  insertSubscription,
  listSubscriptions as listSubscriptionRows,
  lockSubscription,
  markSchedules,
  type SubscriptionFilters,
  schedulesOf,
  updateSubscription,
} from './repository.ts'
import { toSubscriptionResponse, type UpdateSubscriptionBody } from './schemas.ts'

export interface SubscriptionWithSchedules {
  subscription: Subscription
  schedules: SubscriptionSchedule[]
}

/**
 * A subscription as an order creates it: `incomplete`, its first period running
 * from `start`; paying the first invoice activates it.
 */
export async function insertIncompleteSubscription(
  trx: Db,
  scope: Scope,
  input: {
    id: string
    customerId: string
    price: Price
    product: Product
    quantity: number
    collectionMethod: CollectionMethod
    orderId: string
    latestInvoiceId: string
    start: Date
    metadata?: Record<string, string> | undefined
  },
): Promise<Subscription> {
  const { price } = input
  if (!price.interval)
    throw validationError(`Price ${price.id} is not recurring`, { field: 'price_id' })
  const end = periodEndAfter(input.start, price.interval, price.interval_count, input.start)
  const subscription = await insertSubscription(trx, {
    id: input.id,
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    customer_id: input.customerId,
    product_id: input.product.id,
    price_id: price.id,
    quantity: input.quantity,
    status: 'incomplete',
    currency: price.currency,
    collection_method: input.collectionMethod,
    interval: price.interval,
    interval_count: price.interval_count,
    amount: price.amount * BigInt(input.quantity),
    billing_cycle_anchor: input.start,
    current_period_start: input.start,
    current_period_end: end,
    order_id: input.orderId,
    latest_invoice_id: input.latestInvoiceId,
    metadata: newMetadata(input.metadata),
    created_at: input.start,
    updated_at: input.start,
  })
  await recordEvents(trx, scope, input.start, [
    await subscriptionEvent(trx, 'subscription.created', subscription, []),
  ])
  return subscription
}

/** The first period of a subscription, for its first invoice's line. */
export function firstPeriod(price: Price, start: Date): { start: Date; end: Date } {
  if (!price.interval)
    throw validationError(`Price ${price.id} is not recurring`, { field: 'price_id' })
  return { start, end: periodEndAfter(start, price.interval, price.interval_count, start) }
}

/**
 * Called when one of the subscription's invoices is paid: an `incomplete`
 * subscription starts, a `past_due` one becomes `active` once nothing else is unpaid.
 */
export async function onSubscriptionInvoicePaid(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  clock: Clock,
): Promise<void> {
  if (!invoice.subscription_id) return
  const subscription = await lockSubscription(trx, scope.environmentId, invoice.subscription_id)
  if (!subscription) return
  const now = clock.now()
  if (subscription.status === 'incomplete') {
    // Paid after its first period had passed: the customer had no service for it, so the
    // periods start again from now; otherwise the renewal would at once bill every period
    // that passed while it was unpaid.
    const late = now.getTime() >= subscription.current_period_end.getTime()
    const end = late
      ? periodEndAfter(now, subscription.interval, subscription.interval_count, now)
      : undefined
    const updated = await updateSubscription(trx, subscription.id, {
      status: 'active',
      started_at: now,
      ...(end && {
        billing_cycle_anchor: now,
        current_period_start: now,
        current_period_end: end,
      }),
      updated_at: now,
    })
    await recordEvents(trx, scope, clock.now(), [
      await subscriptionEvent(trx, 'subscription.activated', updated),
    ])
  } else {
    await activeOnceNothingOwed(trx, scope, subscription, invoice.id, clock)
  }
}

/** A `past_due` subscription with no unpaid invoice left but `invoiceId` is `active` again. */
async function activeOnceNothingOwed(
  trx: Db,
  scope: Scope,
  subscription: Subscription,
  invoiceId: string,
  clock: Clock,
): Promise<void> {
  if (
    subscription.status !== 'past_due' ||
    (await countUnpaidInvoices(trx, subscription.id, invoiceId)) > 0
  )
    return
  const now = clock.now()
  const updated = await updateSubscription(trx, subscription.id, {
    status: 'active',
    updated_at: now,
  })
  await recordEvents(trx, scope, clock.now(), [
    await subscriptionEvent(trx, 'subscription.updated', updated),
  ])
}

/**
 * Called when a subscription's invoice is voided: the first, and the subscription never
 * started, so it ends; a later one, and a `past_due` subscription owing nothing else is
 * `active` again.
 */
export async function onSubscriptionInvoiceVoided(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  clock: Clock,
): Promise<void> {
  if (!invoice.subscription_id) return
  const subscription = await lockSubscription(trx, scope.environmentId, invoice.subscription_id)
  if (!subscription) return
  // A later invoice voided: owed no more, like one paid.
  if (invoice.billing_reason !== 'subscription_create') {
    await activeOnceNothingOwed(trx, scope, subscription, invoice.id, clock)
    return
  }
  if (subscription.status !== 'incomplete') return
  const now = clock.now()
  // Cancelled at a period end that has passed: it ended then, whenever this catches it up.
  const endedAt = isDueIncompleteCancellation(subscription, now)
    ? subscription.current_period_end
    : now
  // Ended: its pending changes will never apply, as when a started subscription is cancelled.
  await endLocked(trx, scope, subscription, endedAt, clock)
}

/**
 * An `incomplete` subscription (its first invoice never paid) set to cancel at the end of a
 * period that has passed: the merchant ended it, whether or not the renewal job has written
 * that yet. It is ended as a cancel now ends it (`endDueIncompleteCancellation`, its first
 * invoice voided); until then nothing may start it (`assertStartsNoEndedSubscription`) or
 * change it.
 */
export function isDueIncompleteCancellation(subscription: Subscription, now: Date): boolean {
  return (
    subscription.status === 'incomplete' &&
    subscription.cancel_at_period_end &&
    subscription.current_period_end.getTime() <= now.getTime()
  )
}

/**
 * Ends `id`, under its row lock, if it is still an `incomplete` subscription whose cancel at
 * the period end has come (`isDueIncompleteCancellation`): `canceled`, ended at that period
 * end. One a payment has started meanwhile, or whose cancel the merchant took back, is left
 * as it is (undefined). Its first invoice is the caller's
 * (`endIncompleteCancellationAndFirstInvoice`).
 */
export async function endIncompleteCancellation(
  db: Db,
  scope: Scope,
  id: string,
  clock: Clock,
): Promise<SubscriptionWithSchedules | undefined> {
  const ended = await inTransaction(db, async (trx) => {
    const current = await lockSubscription(trx, scope.environmentId, id)
    if (!current || !isDueIncompleteCancellation(current, clock.now())) return undefined
    return endLocked(trx, scope, current, current.current_period_end, clock)
  })
  if (ended) await stopAutomaticChargesOf(db, scope, id, clock)
  return ended
}

/**
 * Ends a locked subscription at `endedAt`: `canceled` (`canceled_at` kept when the cancel was
 * asked before, for the period end), its scheduled changes `cancelled`, `subscription.canceled`.
 */
async function endLocked(
  trx: Db,
  scope: Scope,
  current: Subscription,
  endedAt: Date,
  clock: Clock,
): Promise<SubscriptionWithSchedules> {
  const now = clock.now()
  const subscription = await updateSubscription(trx, current.id, {
    status: 'canceled',
    canceled_at: current.canceled_at ?? now,
    ended_at: endedAt,
    updated_at: now,
  })
  await markSchedules(trx, current.id, 'all-scheduled', 'cancelled', now)
  const schedules = await schedulesOf(trx, [current.id])
  await recordEvents(trx, scope, now, [
    await subscriptionEvent(trx, 'subscription.canceled', subscription, schedules),
  ])
  return { subscription, schedules }
}

export interface RenewalDeps {
  db: Db
  clock: Clock
  logger: Logger
}

/**
 * The renewal job: every subscription whose period has ended gets its next period
 * and that period's invoice, one period per transaction (a worker that was down
 * catches up period by period). Returns how many periods were renewed or ended.
 * `environmentId` limits it to one environment (the demo seeder, tests).
 */
export async function renewDueSubscriptions(
  deps: RenewalDeps,
  options: { batchSize?: number; environmentId?: string } = {},
): Promise<number> {
  let handled = 0
  // One subscription that cannot renew (its error logged) is left for the next run, and
  // the others renew: it must not stop every renewal behind it.
  const failed = new Set<string>()
  for (;;) {
    const due = await findDueSubscriptions(
      deps.db,
      deps.clock.now(),
      options.batchSize ?? 100,
      options.environmentId,
      [...failed],
    )
    if (due.length === 0) return handled
    for (const row of due) {
      const scope = { tenantId: row.tenant_id, environmentId: row.environment_id }
      try {
        const done = await inTransaction(deps.db, (trx) => renewOne(trx, scope, row.id, deps.clock))
        if (done) handled += 1
        // Ended: its unpaid invoices stay open to be paid by hand, and no attempt shows
        // queued (as cancelling now clears them). After the commit, as `cancelSubscription`
        // does: settling an invoice locks it, then its subscription.
        if (done === 'ended') await stopAutomaticChargesOf(deps.db, scope, row.id, deps.clock)
      } catch (error) {
        deps.logger.error({ err: error, subscription_id: row.id }, 'subscription renewal failed')
        failed.add(row.id)
      }
    }
  }
}

/**
 * Makes the renewals that fell due while the renewal job was behind (a worker down for a
 * period or more), each committed as the job would commit it, before a change or a cancel:
 * which then acts on the period running now. Before, it acted on a period long over: periods
 * served went unbilled (a cancel ended the subscription at the stale period end) or were
 * billed at the new price. A subscription that reaches the end it was set to cancel at is
 * ended here too, and a change or cancel then finds it canceled. An `incomplete` one whose
 * cancel at the period end has come is ended before, by the caller (`changeSubscription`,
 * `cancelSubscriptionNow`: its first invoice is voided and that invoice's unprocessed
 * payments cancelled, which this module cannot do), and refused all the same if not.
 */
async function catchUp(db: Db, scope: Scope, id: string, clock: Clock): Promise<void> {
  for (let renewed = 0; renewed < MAX_CATCH_UP; renewed++) {
    const done = await inTransaction(db, (trx) => renewOne(trx, scope, id, clock))
    if (!done) return
    if (done === 'ended') {
      await stopAutomaticChargesOf(db, scope, id, clock)
      return
    }
  }
  throw new AppError('conflict', `Subscription ${id} has too many periods to renew at once`, {
    subscription_id: id,
  })
}

/** Periods one request renews at most before it changes a subscription (years of months). */
const MAX_CATCH_UP = 1000

/** Renews (or ends) one due subscription under its row lock; false when another worker already did. */
async function renewOne(
  trx: Db,
  scope: Scope,
  id: string,
  clock: Clock,
): Promise<'renewed' | 'ended' | false> {
  const subscription = await lockSubscription(trx, scope.environmentId, id)
  const now = clock.now()
  if (!subscription || (subscription.status !== 'active' && subscription.status !== 'past_due'))
    return false
  if (subscription.current_period_end.getTime() > now.getTime()) return false

  if (subscription.cancel_at_period_end) {
    await endLocked(trx, scope, subscription, subscription.current_period_end, clock)
    return 'ended'
  }

  const periodStart = subscription.current_period_end
  const { price, product, quantity, applied } = await priceForPeriod(
    trx,
    scope,
    subscription,
    periodStart,
  )
  const periodEnd = periodEndAfter(
    subscription.billing_cycle_anchor,
    subscription.interval,
    subscription.interval_count,
    periodStart,
  )
  const customer = await getCustomer(trx, scope, subscription.customer_id)
  const autoCharge =
    subscription.collection_method === 'charge_automatically' &&
    customer.auto_pay &&
    customer.default_payment_method_id !== null

  const { invoice: draft } = await insertDraftInvoice(
    trx,
    scope,
    {
      customerId: subscription.customer_id,
      currency: subscription.currency,
      billingReason: 'subscription_cycle',
      collectionMethod: subscription.collection_method,
      subscriptionId: id,
      periodStart,
      periodEnd,
      lines: [
        {
          description: `${product.name} (${formatPeriod(periodStart, periodEnd)})`,
          quantity,
          unitAmount: price.amount,
          priceId: price.id,
          periodStart,
          periodEnd,
        },
      ],
    },
    clock,
  )
  // Charged automatically: queued with the finalization, which `invoice.finalized` then shows.
  const { invoice } = await finalizeLocked(trx, scope, draft, clock, {
    chargeAt: autoCharge ? now : undefined,
  })
  const previousUnpaid = await countUnpaidInvoices(trx, id, invoice.id)
  const renewed = await updateSubscription(trx, id, {
    current_period_start: periodStart,
    current_period_end: periodEnd,
    price_id: price.id,
    product_id: product.id,
    quantity,
    amount: price.amount * BigInt(quantity),
    latest_invoice_id: invoice.id,
    status:
      previousUnpaid > 0
        ? 'past_due'
        : subscription.status === 'past_due'
          ? 'active'
          : subscription.status,
    updated_at: now,
  })
  await markSchedules(
    trx,
    id,
    applied.map((s) => s.id),
    'applied',
    now,
  )
  await recordEvents(trx, scope, clock.now(), [
    await subscriptionEvent(trx, 'subscription.renewed', renewed),
  ])
  return 'renewed'
}

/** The price for a period starting at `periodStart`: the current one, or the last scheduled change due by then. */
async function priceForPeriod(
  trx: Db,
  scope: Scope,
  subscription: Subscription,
  periodStart: Date,
) {
  const applied = await dueSchedules(trx, subscription.id, periodStart)
  // The changes due, in order, each changing only what it names.
  let priceId = subscription.price_id
  let quantity = subscription.quantity
  for (const change of applied) {
    priceId = change.price_id ?? priceId
    quantity = change.quantity ?? quantity
  }
  const { price, product } = await getPriceWithProduct(trx, scope, priceId)
  return { price, product, quantity, applied }
}

export async function getSubscription(
  db: Db,
  access: Access,
  id: string,
): Promise<SubscriptionWithSchedules> {
  const subscription = await findSubscription(db, access.environmentId, id, access.customerId)
  if (!subscription) throw notFound('subscription', id)
  return { subscription, schedules: await schedulesOf(db, [id]) }
}

export async function listSubscriptions(
  db: Db,
  access: Access,
  filters: SubscriptionFilters,
  request: ListRequest<'created_at' | 'current_period_end'>,
): Promise<{ items: SubscriptionWithSchedules[]; total: number }> {
  const scoped =
    access.customerId === null ? filters : { ...filters, customerId: access.customerId }
  const { items, total } = await listSubscriptionRows(db, access.environmentId, scoped, request)
  const schedules = await schedulesOf(
    db,
    items.map((s) => s.id),
  )
  return {
    items: items.map((subscription) => ({
      subscription,
      schedules: schedules.filter((s) => s.subscription_id === subscription.id),
    })),
    total,
  }
}

/**
 * Changes a subscription. A new price or quantity is scheduled (a subscription
 * schedule), taking effect at the period end or at the first renewal on or after
 * `change_at`; `cancel_at_period_end`, `collection_method` and `metadata` apply now.
 */
export async function updateSubscriptionSettings(
  db: Db,
  scope: Scope,
  id: string,
  body: UpdateSubscriptionBody,
  clock: Clock,
): Promise<SubscriptionWithSchedules> {
  // `change_at` is when a price or quantity change applies: checked whenever it is sent, and
  // alone it schedules nothing (before, it was not read at all, and the PATCH answered 200).
  if (body.change_at !== undefined) {
    if (body.change_at !== 'period_end') parseTimeBound(body.change_at, 'change_at')
    if (body.price_id === undefined && body.quantity === undefined) {
      throw validationError(
        'change_at needs a price_id or quantity: it is when such a change takes effect',
        { field: 'change_at' },
      )
    }
  }
  await catchUp(db, scope, id, clock)
  return inTransaction(db, async (trx) => {
    const current = await lockSubscription(trx, scope.environmentId, id)
    if (!current) throw notFound('subscription', id)
    const now = clock.now()
    // Set to cancel at a period end that has passed, it has ended (`changeSubscription` ends
    // it first): a take-back of that cancel, or any change, comes too late.
    if (current.status === 'canceled' || isDueIncompleteCancellation(current, now)) {
      throw new AppError('invalid_state_transition', `Subscription ${id} is canceled`, {
        subscription_id: id,
      })
    }
    if (body.cancel_scheduled_changes)
      await markSchedules(trx, id, 'all-scheduled', 'cancelled', now)
    if (body.price_id !== undefined || body.quantity !== undefined) {
      const priceId = body.price_id ?? current.price_id
      const { price, product } = await getPriceWithProduct(trx, scope, priceId)
      // A new price must be one an order could take (active, of an active product). A change
      // of the quantity alone keeps the price the subscription bills, retired or not: it was
      // refused once the price was deactivated, though renewals go on billing it.
      if (!price.interval || (body.price_id !== undefined && (!price.active || !product.active))) {
        throw validationError(`Price ${priceId} or its product is not an active recurring price`, {
          field: 'price_id',
        })
      }
      if (price.currency !== current.currency) {
        throw validationError(
          `Price ${priceId} is in ${price.currency}, the subscription in ${current.currency}`,
          {
            field: 'price_id',
          },
        )
      }
      // The periods follow the subscription's interval: a price billed on another would be
      // charged at its amount on the old cycle (a yearly price every month).
      if (price.interval !== current.interval || price.interval_count !== current.interval_count) {
        throw validationError(
          `Price ${priceId} bills every ${price.interval_count} ${price.interval}, the subscription every ${current.interval_count} ${current.interval}: start a new subscription to change the interval`,
          { field: 'price_id' },
        )
      }
      const effectiveAt = effectiveDate(body.change_at, current, now)
      await assertAmountsWithinLimit(trx, scope, current, {
        price_id: body.price_id ?? null,
        quantity: body.quantity ?? null,
        effective_at: effectiveAt,
      })
      await insertSchedule(trx, {
        id: newId('subscriptionSchedule'),
        environment_id: scope.environmentId,
        subscription_id: id,
        price_id: body.price_id ?? null,
        quantity: body.quantity ?? null,
        effective_at: effectiveAt,
        status: 'scheduled',
        created_at: now,
      })
    }
    const updated = await updateSubscription(trx, id, {
      ...(body.cancel_at_period_end !== undefined && {
        cancel_at_period_end: body.cancel_at_period_end,
        canceled_at: body.cancel_at_period_end ? now : null,
      }),
      ...(body.collection_method !== undefined && { collection_method: body.collection_method }),
      ...(body.metadata !== undefined && {
        metadata: JSON.stringify(mergeMetadata(current.metadata, body.metadata)),
      }),
      updated_at: now,
    })
    const schedules = await schedulesOf(trx, [id])
    await recordEvents(trx, scope, clock.now(), [
      await subscriptionEvent(trx, 'subscription.updated', updated, schedules),
    ])
    return { subscription: updated, schedules }
  })
}

/** Cancels now (the subscription ends at once) or at the end of the current period. */
export async function cancelSubscription(
  db: Db,
  scope: Scope,
  id: string,
  atPeriodEnd: boolean,
  clock: Clock,
): Promise<SubscriptionWithSchedules> {
  await catchUp(db, scope, id, clock)
  const cancelled = await inTransaction(db, async (trx) => {
    const current = await lockSubscription(trx, scope.environmentId, id)
    if (!current) throw notFound('subscription', id)
    const now = clock.now()
    // Set to cancel at a period end that has passed, it has ended already
    // (`endIncompleteCancellation` writes it so).
    if (current.status === 'canceled' || isDueIncompleteCancellation(current, now)) {
      throw new AppError('invalid_state_transition', `Subscription ${id} is already canceled`, {
        subscription_id: id,
      })
    }
    // Asked before for the period end (the renewal job ends it so): that request's time.
    if (!atPeriodEnd) return endLocked(trx, scope, current, now, clock)
    const updated = await updateSubscription(trx, id, {
      cancel_at_period_end: true,
      canceled_at: now,
      updated_at: now,
    })
    const schedules = await schedulesOf(trx, [id])
    await recordEvents(trx, scope, clock.now(), [
      await subscriptionEvent(trx, 'subscription.updated', updated, schedules),
    ])
    return { subscription: updated, schedules }
  })
  // Its unpaid invoices stay open, to be paid by hand; the charge job skips a cancelled
  // subscription's invoices, and their next attempt is cleared too (each announced). After the
  // commit, not under the subscription's lock: settling an invoice locks it, then its
  // subscription.
  if (!atPeriodEnd) await stopAutomaticChargesOf(db, scope, id, clock)
  return cancelled
}

/**
 * Every amount the subscription would bill once its scheduled changes and `change` apply, in
 * order (as `priceForPeriod` folds them), is one Payrail accepts: a renewal over the limit
 * could not be invoiced, and the subscription would run on unbilled.
 */
async function assertAmountsWithinLimit(
  trx: Db,
  scope: Scope,
  subscription: Subscription,
  change: { price_id: string | null; quantity: number | null; effective_at: Date },
): Promise<void> {
  type Step = { price_id: string | null; quantity: number | null; effective_at: Date }
  const steps: Step[] = (await schedulesOf(trx, [subscription.id])).filter(
    (s) => s.status === 'scheduled',
  )
  // In the order they apply; the new change after those due at the same time (a stable sort).
  const pending = [...steps, change].sort(
    (a, b) => a.effective_at.getTime() - b.effective_at.getTime(),
  )
  const amounts = new Map<string, bigint>()
  let priceId = subscription.price_id
  let quantity = subscription.quantity
  for (const step of pending) {
    priceId = step.price_id ?? priceId
    quantity = step.quantity ?? quantity
    let amount = amounts.get(priceId)
    if (amount === undefined) {
      amount = (await getPriceWithProduct(trx, scope, priceId)).price.amount
      amounts.set(priceId, amount)
    }
    assertWithinLimit(amount * BigInt(quantity), 'quantity')
  }
}

function effectiveDate(changeAt: string | undefined, subscription: Subscription, now: Date): Date {
  if (changeAt === undefined || changeAt === 'period_end') return subscription.current_period_end
  const date = parseTimeBound(changeAt, 'change_at')
  if (date.getTime() <= now.getTime())
    throw validationError('change_at must be in the future', { field: 'change_at' })
  return date
}

function formatPeriod(start: Date, end: Date): string {
  return `${start.toISOString().slice(0, 10)} – ${end.toISOString().slice(0, 10)}`
}

/**
 * An event about `subscription`, carrying it as GET shows it: its scheduled changes read in
 * the transaction that recorded them (`schedules` when the caller holds them). Before, every
 * event said `scheduled_changes: []`, even the one of a PATCH that scheduled a change.
 */
async function subscriptionEvent(
  trx: Db,
  type: EventType,
  subscription: Subscription,
  schedules?: SubscriptionSchedule[],
) {
  return {
    type,
    objectType: 'subscription',
    objectId: subscription.id,
    data: toSubscriptionResponse(
      subscription,
      schedules ?? (await schedulesOf(trx, [subscription.id])),
    ),
  }
}
