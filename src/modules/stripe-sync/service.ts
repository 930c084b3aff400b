import type { Clock } from '../../core/clock.ts'
import { newId } from '../../core/ids.ts'
import { canTransitionInvoice, isPaidStatus } from '../../core/invoice-state.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Invoice, InvoiceStatus } from '../../db/database.ts'
import type { BillingObject } from '../../gateways/gateway.ts'
import { fromStripeAmount } from '../../gateways/stripe/stripe.money.ts'
import { insertCustomer } from '../customers/repository.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import {
  insertInvoice,
  insertInvoiceLines,
  linesOf,
  updateInvoice,
} from '../invoices/repository.ts'
import { toInvoiceResponse } from '../invoices/schemas.ts'
import { settlePaidInvoice } from '../settlement/service.ts'
import {
  findCustomerByStripeId,
  invoiceNumberTaken,
  lockInvoiceByStripeId,
  lockStripeCustomer,
  moneyAppliedBy,
  upsertReplica,
} from './repository.ts'

/**
 * Mirrors a Stripe billing object in the caller's transaction: every object is kept
 * as Stripe shows it (`stripe_replicas`), and an invoice also becomes a Payrail
 * invoice (source `stripe`, linked by `stripe_invoice_id`) that other rails can pay.
 * Applying the same object twice changes nothing; money Payrail already recorded is
 * never lowered by an older Stripe view.
 *
 * @example
 * await applyBillingObject(trx, scope, { objectType: 'invoice', object: stripeInvoice }, clock)
 */
export async function applyBillingObject(
  trx: Db,
  scope: Scope,
  billing: BillingObject,
  clock: Clock,
): Promise<string> {
  const created =
    typeof billing.object.created === 'number' ? new Date(billing.object.created * 1000) : null
  const kept = await upsertReplica(trx, {
    environmentId: scope.environmentId,
    objectType: billing.objectType,
    stripeId: billing.object.id,
    data: billing.object,
    stripeCreated: created,
    seenAt:
      billing.seenAt !== undefined
        ? new Date(billing.seenAt * 1000)
        : new Date(clock.now().getTime() - BACKFILL_LEEWAY_MS),
    at: clock.now(),
  })
  // An invoice is still mirrored: the mirror moves only forward on its own terms (below).
  if (billing.objectType !== 'invoice') return kept ? 'synced' : 'stale'
  const invoice = readStripeInvoice(billing.object)
  if (invoice) await mirrorInvoice(trx, scope, invoice, kept, clock, billing.seenAt !== undefined)
  // Older than the newest view seen: its outcome says so, as for any other object (it read
  // `synced` whether or not the replica was kept).
  return kept ? 'synced' : 'stale'
}

/**
 * A backfilled object (fetched, not from an event) counts as seen this long before it is
 * applied: it was fetched a page earlier, Stripe's clock may run behind Payrail's, and
 * events carry whole seconds. An event Stripe made after the fetch then always replaces it
 * (one made a little before may too, as every event did before replicas kept their time).
 */
const BACKFILL_LEEWAY_MS = 10 * 60 * 1000

/** The fields Payrail reads from a Stripe invoice, checked rather than assumed. */
export interface StripeInvoiceView {
  id: string
  customer: string
  customerName: string | null
  customerEmail: string | null
  currency: string
  number: string | null
  status: 'draft' | 'open' | 'paid' | 'void' | 'uncollectible'
  collectionMethod: 'charge_automatically' | 'send_invoice'
  subtotal: bigint
  total: bigint
  /** Stripe's discounts (`total_discount_amounts`); `null` when the snapshot lists none. */
  discount: bigint | null
  amountDue: bigint
  amountPaid: bigint
  /** Marked paid by the merchant (Payrail's job, or by hand): no money moved at Stripe. */
  paidOutOfBand: boolean
  amountRemaining: bigint
  dueDate: Date | null
  periodStart: Date | null
  periodEnd: Date | null
  billingReason: string | null
  lines: { description: string; quantity: number; amount: bigint }[]
}

export function readStripeInvoice(object: unknown): StripeInvoiceView | undefined {
  if (typeof object !== 'object' || object === null) return undefined
  const o = object as Record<string, unknown>
  const customer =
    typeof o.customer === 'string' ? o.customer : (o.customer as { id?: unknown } | null)?.id
  const status = o.status
  if (typeof o.id !== 'string' || typeof customer !== 'string' || typeof o.currency !== 'string')
    return undefined
  if (
    status !== 'draft' &&
    status !== 'open' &&
    status !== 'paid' &&
    status !== 'void' &&
    status !== 'uncollectible'
  )
    return undefined
  // Stripe's amounts in Payrail's minor units (ISK is two-decimal at Stripe, MGA whole); a
  // field that is not a whole number makes the snapshot unreadable (no mirror is written).
  const currency = o.currency
  let malformed = false
  const int = (value: unknown) => {
    if (value === undefined || value === null) return 0n
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      malformed = true
      return 0n
    }
    return fromStripeAmount(value, currency)
  }
  // Stripe's quantities are whole numbers; a line without one counts once.
  const quantity = (value: unknown) => {
    if (value === undefined || value === null || value === 0) return 1
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      malformed = true
      return 1
    }
    return value
  }
  const data = (o.lines as { data?: unknown } | null | undefined)?.data ?? []
  if (!Array.isArray(data)) return undefined
  if (data.some((line: unknown) => typeof line !== 'object' || line === null)) return undefined
  const lines = (data as Record<string, unknown>[]).map((l) => ({
    description:
      typeof l.description === 'string' && l.description ? l.description : 'Stripe invoice line',
    quantity: quantity(l.quantity),
    amount: int(l.amount),
  }))
  const date = (value: unknown) => (typeof value === 'number' ? new Date(value * 1000) : null)
  const view: StripeInvoiceView = {
    id: o.id,
    customer,
    customerName: typeof o.customer_name === 'string' ? o.customer_name : null,
    customerEmail: typeof o.customer_email === 'string' ? o.customer_email : null,
    currency: o.currency.toLowerCase(),
    number: typeof o.number === 'string' ? o.number : null,
    status,
    collectionMethod:
      o.collection_method === 'charge_automatically' ? 'charge_automatically' : 'send_invoice',
    subtotal: int(o.subtotal),
    total: int(o.total),
    discount: Array.isArray(o.total_discount_amounts)
      ? (o.total_discount_amounts as unknown[]).reduce<bigint>(
          (sum, d) => sum + int((d as { amount?: unknown } | null)?.amount),
          0n,
        )
      : null,
    amountDue: int(o.amount_due),
    amountPaid: int(o.amount_paid),
    paidOutOfBand: o.paid_out_of_band === true,
    amountRemaining: int(o.amount_remaining),
    dueDate: date(o.due_date),
    periodStart: date(o.period_start),
    periodEnd: date(o.period_end),
    billingReason: typeof o.billing_reason === 'string' ? o.billing_reason : null,
    lines,
  }
  if (malformed) return undefined
  // A credit that takes the invoice below zero is Stripe's to hold (the customer's balance);
  // Payrail's invoices owe nothing negative. Its replica is kept; no Payrail invoice.
  const amounts = [view.subtotal, view.total, view.amountDue, view.amountPaid, view.amountRemaining]
  if (amounts.some((amount) => amount < 0n)) return undefined
  // A credit line (a proration's "unused time") cannot be a Payrail line, which charges: the
  // mirror shows the lines as one, their net, which is the subtotal.
  if (view.lines.some((line) => line.amount < 0n)) {
    view.lines = [
      {
        description: `Stripe invoice ${view.number ?? view.id}, net of its credits`,
        quantity: 1,
        amount: view.subtotal,
      },
    ]
  }
  return view
}

const STATUS: Record<StripeInvoiceView['status'], InvoiceStatus> = {
  draft: 'DRAFT',
  open: 'FINALIZED',
  paid: 'FINALIZED',
  void: 'VOIDED',
  uncollectible: 'UNCOLLECTIBLE',
}

/**
 * Makes or moves the Payrail invoice of a Stripe invoice. `fresh` says whether the snapshot
 * is the newest Stripe view seen (its replica kept): an older one, delivered late, moves
 * only what moves forward (the status, the money paid) and leaves what Stripe may have
 * lowered since (what is due, after a credit note) as the newer view set it. A draft is
 * not mirrored until Stripe finalizes it: its lines and totals can still change, and
 * nothing can pay it.
 */
async function mirrorInvoice(
  trx: Db,
  scope: Scope,
  stripe: StripeInvoiceView,
  fresh: boolean,
  clock: Clock,
  fromEvent: boolean,
): Promise<Invoice | undefined> {
  const now = clock.now()
  const existing = await lockInvoiceByStripeId(trx, scope.environmentId, stripe.id)
  if (!existing && stripe.status === 'draft') return undefined
  // Invoice numbers are unique in an environment: a Stripe number a Payrail invoice already
  // has is kept on Stripe's side only (the mirror is made without it), where it made every
  // delivery of the invoice fail and it was never mirrored.
  if (
    stripe.number !== null &&
    (await invoiceNumberTaken(trx, scope.environmentId, stripe.number, existing?.id))
  )
    stripe = { ...stripe, number: null }
  const paidAtStripe = stripe.status === 'paid'
  if (existing) {
    // Stripe collected it itself while Payrail had taken money for it too (before its job
    // could mark it paid at Stripe): the customer paid twice, and both are recorded.
    const collectedAtStripe = paidAtStripe && !stripe.paidOutOfBand ? stripe.amountPaid : 0n
    const payrailKept = existing.amount_paid > 0n ? await moneyAppliedBy(trx, existing.id) : 0n
    // `amount_paid` counts money as it came in, refunds apart in `amount_refunded`; what
    // Payrail keeps is net of them, so they are added back (taken off twice, a 10.00 refund
    // left the invoice keeping 10.00 less than the merchant holds).
    const amountPaid = [
      existing.amount_paid,
      stripe.amountPaid,
      payrailKept + existing.amount_refunded + collectedAtStripe,
    ].reduce((a, b) => (a > b ? a : b))
    const amountDue = fresh ? stripe.amountDue : existing.amount_due
    // More than is due now: paid twice (Stripe collected too), or a credit note at Stripe
    // lowered what is due after Payrail was paid in full (it stayed SUCCEEDED, unflagged).
    const paidTwice = payrailKept > 0n && payrailKept + collectedAtStripe > amountDue
    // Paid once, it stays paid: a stale "open" snapshot (Stripe's own retry) reopens
    // nothing, and refunds after it neither (as for Payrail's own invoices).
    // Through the same lifecycle as Payrail's own invoices: a snapshot that would move it
    // back (a late invoice.finalized after invoice.voided) is older than what is mirrored; and
    // a paid invoice is not written off (Stripe's late "uncollectible", older than its "paid"),
    // as Payrail's own refuses it.
    const target = STATUS[stripe.status]
    const status =
      existing.invoice_status === target ||
      (canTransitionInvoice(existing.invoice_status, target) &&
        !(target === 'UNCOLLECTIBLE' && (paidAtStripe || existing.paid_at !== null)))
        ? target
        : existing.invoice_status
    const paidBefore = existing.paid_at !== null
    // Paid by Payrail's payments as it is now: a credit note at Stripe lowered what is due to
    // what Payrail already holds (it stayed PENDING, owing nothing, and Stripe collected too).
    const coveredNow = payrailKept > 0n && payrailKept >= amountDue && status !== 'VOIDED'
    const paid = paidAtStripe || paidBefore || isPaidStatus(existing.payment_status) || coveredNow
    const refunded =
      existing.payment_status === 'PARTIALLY_REFUNDED' || existing.payment_status === 'REFUNDED'
    const updated = await updateInvoice(trx, existing.id, {
      invoice_status: status,
      number: stripe.number ?? existing.number,
      // A draft mirrored by an earlier version takes the totals Stripe finalized it with
      // (its lines stay those it was first seen with).
      ...(fresh && existing.invoice_status === 'DRAFT' && totalsOf(stripe)),
      ...(existing.finalized_at === null && status !== 'DRAFT' && { finalized_at: now }),
      amount_due: amountDue,
      amount_paid: amountPaid,
      // What Payrail keeps of what it was paid: a refund before the invoice was paid in full
      // leaves that much owed again, as on Payrail's own invoices.
      amount_remaining:
        paid || status === 'VOIDED'
          ? 0n
          : amountDue > amountPaid - existing.amount_refunded
            ? amountDue - (amountPaid - existing.amount_refunded)
            : 0n,
      // A refund recorded here is kept: Stripe's later "paid" does not undo it.
      payment_status:
        refunded || !paid
          ? existing.payment_status
          : paidTwice || existing.payment_status === 'OVERPAID'
            ? 'OVERPAID'
            : 'SUCCEEDED',
      paid_at: paid ? (existing.paid_at ?? now) : existing.paid_at,
      // Voided or marked uncollectible at Stripe: dated as Payrail's own are (they stayed null).
      ...(status === 'VOIDED' && { voided_at: existing.voided_at ?? now }),
      ...(status === 'UNCOLLECTIBLE' && {
        marked_uncollectible_at: existing.marked_uncollectible_at ?? now,
      }),
      updated_at: now,
    })
    const data = toInvoiceResponse(updated, await linesOf(trx, [updated.id]))
    const overpaidNow =
      updated.payment_status === 'OVERPAID' && existing.payment_status !== 'OVERPAID'
    // Paid now (Stripe collected it), as a Payrail invoice's payment says it: `invoice.paid`.
    const paidNow = paid && !paidBefore && !isPaidStatus(existing.payment_status)
    // Paid now by what Payrail already holds: what it was for is settled, and Stripe is told
    // (the job that marks it paid there), as when a Payrail payment completes it.
    if (paidNow && coveredNow && !paidAtStripe) await settlePaidInvoice(trx, scope, updated, clock)
    const movedTo = (to: InvoiceStatus) =>
      updated.invoice_status === to && existing.invoice_status !== to
    const also: EventType[] = [
      ...(paidNow ? (['invoice.paid'] as const) : []),
      ...(overpaidNow ? (['invoice.overpaid'] as const) : []),
      // As Payrail's own voids and write-offs tell them (no event said so).
      ...(movedTo('VOIDED') ? (['invoice.voided'] as const) : []),
      ...(movedTo('UNCOLLECTIBLE') ? (['invoice.marked_uncollectible'] as const) : []),
    ]
    await recordEvents(trx, scope, now, [
      { type: 'invoice.updated', objectType: 'invoice', objectId: updated.id, data },
      ...also.map((type) => ({ type, objectType: 'invoice' as const, objectId: updated.id, data })),
    ])
    return updated
  }
  const customerId = await customerFor(trx, scope, stripe, now)
  const invoice = await insertInvoice(trx, {
    id: newId('invoice'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    customer_id: customerId,
    number: stripe.number,
    currency: stripe.currency,
    invoice_status: STATUS[stripe.status],
    payment_status: paidAtStripe ? 'SUCCEEDED' : 'PENDING',
    collection_method: stripe.collectionMethod,
    billing_reason:
      stripe.billingReason === 'subscription_cycle' ||
      stripe.billingReason === 'subscription_create'
        ? stripe.billingReason
        : 'manual',
    ...totalsOf(stripe),
    amount_due: stripe.amountDue,
    amount_paid: stripe.amountPaid,
    amount_remaining: paidAtStripe || stripe.status === 'void' ? 0n : stripe.amountRemaining,
    due_date: stripe.dueDate,
    period_start: stripe.periodStart,
    period_end: stripe.periodEnd,
    source: 'stripe',
    stripe_invoice_id: stripe.id,
    finalized_at: now,
    paid_at: paidAtStripe ? now : null,
    voided_at: stripe.status === 'void' ? now : null,
    marked_uncollectible_at: stripe.status === 'uncollectible' ? now : null,
    created_at: now,
    updated_at: now,
  })
  const lines = await insertInvoiceLines(
    trx,
    stripe.lines.map((line, position) => ({
      id: newId('invoiceLine'),
      invoice_id: invoice.id,
      position,
      ...lineAmounts(line),
    })),
  )
  const data = toInvoiceResponse(invoice, lines)
  await recordEvents(trx, scope, now, [
    { type: 'invoice.created', objectType: 'invoice', objectId: invoice.id, data },
    // First seen already paid, from Stripe's report (its "paid" delivered before its
    // "finalized"): the merchant is told it was paid, once, as for any invoice. Not from a
    // backfill, whose invoices were paid long ago.
    ...(fromEvent
      ? firstSeenEvents(stripe.status).map((type) => ({
          type,
          objectType: 'invoice' as const,
          objectId: invoice.id,
          data,
        }))
      : []),
  ])
  return invoice
}

/** The largest quantity a Payrail line holds (`invoice_lines.quantity` is a PostgreSQL integer). */
const MAX_LINE_QUANTITY = 2_147_483_647

/**
 * A Stripe line as a Payrail line, whose quantity times unit amount is its amount: 3 for 10.00
 * (a unit of 3.333…) is one line of 10.00 whose description names the quantity (it was 3 ×
 * 3.33, 9.99, against an amount of 10.00). So is a quantity past what a Payrail line holds
 * (metered usage: 3,000,000,000 API calls), which PostgreSQL refused on every delivery.
 */
function lineAmounts(line: StripeInvoiceView['lines'][number]) {
  const quantity = BigInt(line.quantity)
  if (line.quantity <= MAX_LINE_QUANTITY && line.amount % quantity === 0n)
    return {
      description: line.description,
      quantity: line.quantity,
      unit_amount: line.amount / quantity,
      amount: line.amount,
    }
  return {
    description: `${line.description} (× ${line.quantity})`,
    quantity: 1,
    unit_amount: line.amount,
    amount: line.amount,
  }
}

/**
 * What a mirror first seen from Stripe's report (its "paid" or "voided" delivered before its
 * "finalized") tells beside `invoice.created`, as the later report would have: not from a
 * backfill, whose invoices were settled long ago.
 */
function firstSeenEvents(status: StripeInvoiceView['status']): EventType[] {
  if (status === 'paid') return ['invoice.paid']
  if (status === 'void') return ['invoice.voided']
  if (status === 'uncollectible') return ['invoice.marked_uncollectible']
  return []
}

/** A Stripe invoice's subtotal, total and the discount between them, as a Payrail invoice holds them. */
function totalsOf(stripe: StripeInvoiceView) {
  return {
    subtotal: stripe.subtotal,
    // What Stripe's discounts took off; the subtotal less the total counts tax against it (a
    // 10.00 coupon with 9.00 of tax read as a 1.00 discount), so only a snapshot without
    // Stripe's list falls back to it.
    total_discount:
      stripe.discount !== null
        ? stripe.discount < stripe.subtotal
          ? stripe.discount
          : stripe.subtotal
        : stripe.subtotal > stripe.total
          ? stripe.subtotal - stripe.total
          : 0n,
    total: stripe.total,
  }
}

/** The Payrail customer linked to the Stripe customer, created from the invoice's details when none is. */
async function customerFor(
  trx: Db,
  scope: Scope,
  stripe: StripeInvoiceView,
  now: Date,
): Promise<string> {
  // Two first-seen invoices of one new Stripe customer, mirrored at once, make one customer.
  await lockStripeCustomer(trx, scope.environmentId, stripe.customer)
  const found = await findCustomerByStripeId(trx, scope.environmentId, stripe.customer)
  if (found) return found.id
  const customer = await insertCustomer(trx, {
    id: newId('customer'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    name: stripe.customerName ?? stripe.customerEmail ?? stripe.customer,
    email: stripe.customerEmail,
    gateway_customer_ids: JSON.stringify({ stripe: stripe.customer }),
    created_at: now,
    updated_at: now,
  })
  return customer.id
}
