import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import {
  amountRemaining,
  assertInvoiceTransition,
  type InvoiceAmounts,
  isPaidStatus,
  paymentStatusFor,
} from '../../core/invoice-state.ts'
import {
  assertWithinLimit,
  formatMinorUnits,
  normalizeCurrency,
  toMinorUnits,
} from '../../core/money.ts'
import type { Access, Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type {
  BillingReason,
  CollectionMethod,
  Invoice,
  InvoiceLine,
  InvoicePaymentStatus,
  StringMap,
} from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { newMetadata } from '../../http/schema-types.ts'
import { getCustomer } from '../customers/service.ts'
import { discountAmount, findRedeemableDiscount, redeemDiscount } from '../discounts/service.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import {
  findInvoice,
  type InvoiceFilters,
  type InvoiceSortField,
  insertInvoice,
  insertInvoiceLines,
  linesOf,
  listInvoices as listInvoiceRows,
  lockInvoice,
  nextInvoiceNumber,
  updateInvoice,
} from './repository.ts'
import { type CreateInvoiceBody, toInvoiceResponse } from './schemas.ts'

const DAY_MS = 24 * 60 * 60 * 1000

export interface InvoiceWithLines {
  invoice: Invoice
  lines: InvoiceLine[]
}

export interface DraftLine {
  description: string
  quantity: number
  unitAmount: bigint
  priceId?: string | null
  periodStart?: Date | null
  periodEnd?: Date | null
}

export interface InvoiceDraft {
  customerId: string
  currency: string
  lines: DraftLine[]
  billingReason: BillingReason
  collectionMethod?: CollectionMethod | undefined
  dueDate?: Date | null | undefined
  paymentWindowDays?: number | null | undefined
  discountCode?: string | null | undefined
  description?: string | null | undefined
  metadata?: StringMap | undefined
  orderId?: string | null | undefined
  subscriptionId?: string | null | undefined
  periodStart?: Date | null | undefined
  periodEnd?: Date | null | undefined
}

/**
 * Writes a DRAFT invoice with its lines in the caller's transaction: subtotal from
 * the lines, a discount code applied (and one use of it taken) on the subtotal.
 *
 * @example
 * const { invoice } = await insertDraftInvoice(trx, scope, { customerId, currency: 'usd', billingReason: 'manual',
 *   lines: [{ description: 'Setup', quantity: 1, unitAmount: 5000n }] }, clock)
 */
export async function insertDraftInvoice(
  trx: Db,
  scope: Scope,
  draft: InvoiceDraft,
  clock: Clock,
): Promise<InvoiceWithLines> {
  const now = clock.now()
  const id = newId('invoice')
  const lineAmounts = draft.lines.map((line) => line.unitAmount * BigInt(line.quantity))
  const subtotal = assertWithinLimit(
    lineAmounts.reduce((sum, amount) => sum + amount, 0n),
    'subtotal',
  )
  const discount = draft.discountCode
    ? await findRedeemableDiscount(trx, scope, draft.discountCode, now)
    : undefined
  const totalDiscount = discount ? discountAmount(discount, subtotal, draft.currency) : 0n
  const total = subtotal - totalDiscount
  const invoice = await insertInvoice(trx, {
    id,
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    customer_id: draft.customerId,
    number: null,
    currency: draft.currency,
    invoice_status: 'DRAFT',
    payment_status: 'PENDING',
    collection_method: draft.collectionMethod ?? 'send_invoice',
    billing_reason: draft.billingReason,
    subtotal,
    total_discount: totalDiscount,
    total,
    amount_due: total,
    amount_remaining: total,
    due_date: draft.dueDate ?? null,
    payment_window_days: draft.paymentWindowDays ?? null,
    discount_id: discount?.id ?? null,
    discount_code: discount?.code ?? null,
    order_id: draft.orderId ?? null,
    subscription_id: draft.subscriptionId ?? null,
    period_start: draft.periodStart ?? null,
    period_end: draft.periodEnd ?? null,
    description: draft.description ?? null,
    metadata: newMetadata(draft.metadata),
    created_at: now,
    updated_at: now,
  })
  const lines = await insertInvoiceLines(
    trx,
    draft.lines.map((line, index) => ({
      id: newId('invoiceLine'),
      invoice_id: id,
      position: index,
      description: line.description,
      quantity: line.quantity,
      unit_amount: line.unitAmount,
      amount: lineAmounts[index] ?? 0n,
      price_id: line.priceId ?? null,
      period_start: line.periodStart ?? null,
      period_end: line.periodEnd ?? null,
    })),
  )
  if (discount) {
    await redeemDiscount(
      trx,
      scope,
      discount,
      { invoiceId: id, customerId: draft.customerId, amount: totalDiscount },
      now,
    )
  }
  await recordEvents(trx, scope, clock.now(), [invoiceEvent('invoice.created', invoice, lines)])
  return { invoice, lines }
}

/** `POST /v1/invoices`: a DRAFT invoice from decimal line amounts. */
export async function createInvoice(
  db: Db,
  scope: Scope,
  body: CreateInvoiceBody,
  clock: Clock,
): Promise<InvoiceWithLines> {
  const currency = normalizeCurrency(body.currency)
  const lines = body.lines.map((line, index) => {
    const unitAmount = toMinorUnits(line.unit_amount, currency, `lines[${index}].unit_amount`)
    if (unitAmount < 0n) {
      throw validationError(`lines[${index}].unit_amount must not be negative`, {
        field: `lines[${index}].unit_amount`,
      })
    }
    return { description: line.description, quantity: line.quantity, unitAmount }
  })
  const dueDate = body.due_date ? new Date(body.due_date) : null
  if (dueDate && dueDate.getTime() <= clock.now().getTime()) {
    throw validationError('due_date must be in the future', { field: 'due_date' })
  }
  await getCustomer(db, scope, body.customer_id)
  return inTransaction(db, (trx) =>
    insertDraftInvoice(
      trx,
      scope,
      {
        customerId: body.customer_id,
        currency,
        lines,
        billingReason: 'manual',
        collectionMethod: body.collection_method,
        dueDate,
        paymentWindowDays: body.payment_window_days ?? null,
        discountCode: body.discount_code ?? null,
        description: body.description ?? null,
        metadata: body.metadata,
      },
      clock,
    ),
  )
}

export interface InvoiceChange {
  before: Invoice
  invoice: Invoice
  /** True when this change took the invoice from unpaid to SUCCEEDED/OVERPAID. */
  becamePaid: boolean
}

/**
 * DRAFT → FINALIZED on a locked invoice: takes the next number, opens the payment
 * window. An invoice with nothing to pay is paid at once (`becamePaid`). `chargeAt` queues
 * its automatic charge (`next_payment_attempt`) in the same change, so `invoice.finalized`
 * shows it (a renewal of a subscription charged automatically).
 */
export async function finalizeLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  clock: Clock,
  options: { chargeAt?: Date | undefined } = {},
): Promise<InvoiceChange> {
  assertInvoiceTransition(before.invoice_status, 'FINALIZED', before.id)
  const now = clock.now()
  const number = await nextInvoiceNumber(trx, scope.environmentId)
  const paymentStatus = paymentStatusFor(amountsOf(before), before.payment_status)
  const becamePaid = isPaidStatus(paymentStatus)
  const invoice = await updateInvoice(trx, before.id, {
    invoice_status: 'FINALIZED',
    number: formatInvoiceNumber(number),
    finalized_at: now,
    payment_window_ends_at: before.payment_window_days
      ? new Date(now.getTime() + before.payment_window_days * DAY_MS)
      : null,
    payment_status: paymentStatus,
    paid_at: becamePaid ? now : null,
    ...(options.chargeAt && !becamePaid && { next_payment_attempt: options.chargeAt }),
    updated_at: now,
  })
  const lines = await linesOf(trx, [invoice.id])
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.finalized', invoice, lines),
    ...(becamePaid ? [invoiceEvent('invoice.paid', invoice, lines)] : []),
  ])
  return { before, invoice, becamePaid }
}

/**
 * An invoice a discount code has left with nothing to pay is paid by it, as finalizing an
 * invoice of nothing is: SUCCEEDED, `paid_at` now, `invoice.paid`. `becamePaid` is false when
 * something is still owed, or it was paid already.
 */
export async function paidByDiscountLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  clock: Clock,
): Promise<InvoiceChange> {
  const status = paymentStatusFor(amountsOf(before), before.payment_status)
  if (
    before.invoice_status !== 'FINALIZED' ||
    before.amount_remaining !== 0n ||
    isPaidStatus(before.payment_status) ||
    !isPaidStatus(status)
  )
    return { before, invoice: before, becamePaid: false }
  const now = clock.now()
  const invoice = await updateInvoice(trx, before.id, {
    payment_status: status,
    paid_at: now,
    next_payment_attempt: null,
    updated_at: now,
  })
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.paid', invoice, await linesOf(trx, [invoice.id])),
  ])
  return { before, invoice, becamePaid: true }
}

/**
 * A mirrored Stripe invoice is voided or written off in Stripe, and its mirror follows
 * (`invoice.voided`, `invoice.marked_uncollectible`): done here, Stripe went on collecting it,
 * and the mirror then read voided and paid. 409 `conflict`.
 */
function assertNotStripeMirror(invoice: Invoice, action: string): void {
  if (invoice.source !== 'stripe') return
  throw new AppError(
    'conflict',
    `Invoice ${invoice.id} mirrors Stripe invoice ${invoice.stripe_invoice_id}: ${action} it in Stripe, and the mirror follows`,
    {
      invoice_id: invoice.id,
      stripe_invoice_id: invoice.stripe_invoice_id,
      source: invoice.source,
    },
  )
}

/** FINALIZED/UNCOLLECTIBLE → VOIDED; an invoice with money on it cannot be voided (refund it instead). */
export async function voidLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  clock: Clock,
): Promise<InvoiceChange> {
  assertInvoiceTransition(before.invoice_status, 'VOIDED', before.id)
  assertNotStripeMirror(before, 'void')
  // What its payments left on it: money refunded in full (before it was ever paid in full)
  // is owed again, and such an invoice keeps nothing a void would lose.
  if (before.amount_paid > before.amount_refunded) {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${before.id} has payments; refund them instead of voiding`,
      {
        invoice_id: before.id,
        amount_paid: formatMinorUnits(before.amount_paid, before.currency),
        amount_refunded: formatMinorUnits(before.amount_refunded, before.currency),
      },
    )
  }
  // Paid with nothing to pay (a zero total, a 100% discount code): what it billed for was
  // delivered (an order fulfilled, credit granted, a subscription started), and a void would
  // leave all that standing on a VOIDED invoice still marked paid. As Stripe, only an unpaid
  // invoice is voided; `mark_uncollectible` refuses a paid one too.
  if (isPaidStatus(before.payment_status) || before.paid_at !== null) {
    throw new AppError('invalid_state_transition', `Invoice ${before.id} was paid`, {
      invoice_id: before.id,
      payment_status: before.payment_status,
    })
  }
  const now = clock.now()
  const invoice = await updateInvoice(trx, before.id, {
    invoice_status: 'VOIDED',
    voided_at: now,
    amount_remaining: 0n,
    next_payment_attempt: null,
    updated_at: now,
  })
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.voided', invoice, await linesOf(trx, [invoice.id])),
  ])
  return { before, invoice, becamePaid: false }
}

/** FINALIZED → UNCOLLECTIBLE: written off; only unpaid invoices. */
export async function markUncollectibleLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  clock: Clock,
): Promise<InvoiceChange> {
  assertInvoiceTransition(before.invoice_status, 'UNCOLLECTIBLE', before.id)
  assertNotStripeMirror(before, 'mark it uncollectible')
  // Paid once (refunded since, or not), it owes nothing to write off.
  if (isPaidStatus(before.payment_status) || before.paid_at !== null) {
    throw new AppError('invalid_state_transition', `Invoice ${before.id} was paid`, {
      invoice_id: before.id,
    })
  }
  const now = clock.now()
  const invoice = await updateInvoice(trx, before.id, {
    invoice_status: 'UNCOLLECTIBLE',
    marked_uncollectible_at: now,
    next_payment_attempt: null,
    updated_at: now,
  })
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.marked_uncollectible', invoice, await linesOf(trx, [invoice.id])),
  ])
  return { before, invoice, becamePaid: false }
}

/**
 * Moves a locked invoice's `payment_status` as its payments move (`followPaymentMove`: in
 * flight, failed, neither), announced as `invoice.updated` with the invoice as it now is.
 * Before, these moves were silent: an invoice left `FAILED` by a declined charge was last
 * announced `PENDING`.
 */
export async function setPaymentStatusLocked(
  trx: Db,
  scope: Scope,
  invoiceId: string,
  paymentStatus: InvoicePaymentStatus,
  clock: Clock,
): Promise<Invoice> {
  const invoice = await updateInvoice(trx, invoiceId, {
    payment_status: paymentStatus,
    updated_at: clock.now(),
  })
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.updated', invoice, await linesOf(trx, [invoice.id])),
  ])
  return invoice
}

/**
 * Adds an applied payment to a locked invoice: `amount_paid`, `amount_remaining`
 * and `payment_status` move together. Money that arrives is always recorded, even
 * after the payment window closed or above the amount due (OVERPAID).
 */
export async function recordPaymentLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  if (amount <= 0n)
    throw validationError('A payment amount must be positive', {
      amount: formatMinorUnits(amount, before.currency),
    })
  // Money that arrives for a voided invoice (a payment in flight when Stripe voided the
  // invoice it mirrors) is recorded on it all the same, for the merchant to refund: refusing
  // it would fail its notification on every delivery and leave the money unrecorded. A
  // voided invoice is never fulfilled by it (`becamePaid`).
  if (before.invoice_status === 'DRAFT') {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${before.id} is ${before.invoice_status} and takes no payments`,
      {
        invoice_id: before.id,
        invoice_status: before.invoice_status,
      },
    )
  }
  const amountPaid = before.amount_paid + amount
  const amounts = { ...amountsOf(before), amountPaid }
  // Money applied: the invoice's last payment did not fail (FAILED said it had), whatever
  // failed before it. One still in flight keeps it PROCESSING.
  const paymentStatus = paymentStatusFor(
    amounts,
    before.payment_status === 'FAILED' ? 'PENDING' : before.payment_status,
  )
  return moneyOnInvoice(
    trx,
    scope,
    before,
    { amount_paid: amountPaid },
    { amounts, paymentStatus, event: 'invoice.payment_applied' },
    clock,
  )
}

/**
 * Writes money that reached a locked invoice (a payment applied, a refund its provider failed
 * taken back): its amounts, what it owes, its `payment_status` and `paid_at`, and its events.
 * An invoice this leaves paid in full for the first time is paid (`becamePaid`,
 * `invoice.paid`), else `event`; `invoice.overpaid` when it becomes so.
 */
async function moneyOnInvoice(
  trx: Db,
  scope: Scope,
  before: Invoice,
  changed: { amount_paid: bigint } | { amount_refunded: bigint },
  after: {
    amounts: Parameters<typeof amountRemaining>[0]
    paymentStatus: InvoicePaymentStatus
    event: EventType
  },
  clock: Clock,
): Promise<InvoiceChange> {
  const { amounts, paymentStatus } = after
  const now = clock.now()
  const becamePaid =
    isPaidStatus(paymentStatus) &&
    !isPaidStatus(before.payment_status) &&
    before.paid_at === null &&
    before.invoice_status !== 'VOIDED'
  const invoice = await updateInvoice(trx, before.id, {
    ...changed,
    amount_remaining: owedAfter(before, amounts),
    payment_status: paymentStatus,
    paid_at: before.paid_at ?? (isPaidStatus(paymentStatus) ? now : null),
    next_payment_attempt: isPaidStatus(paymentStatus) ? null : before.next_payment_attempt,
    updated_at: now,
  })
  const lines = await linesOf(trx, [invoice.id])
  await recordEvents(trx, scope, now, [
    invoiceEvent(becamePaid ? 'invoice.paid' : after.event, invoice, lines),
    ...(paymentStatus === 'OVERPAID' && before.payment_status !== 'OVERPAID'
      ? [invoiceEvent('invoice.overpaid', invoice, lines)]
      : []),
  ])
  return { before, invoice, becamePaid }
}

/**
 * What the invoice owes once money moved on it: nothing once voided (money that reaches a
 * voided invoice, a payment in flight when it was voided, is recorded for the merchant to
 * refund, and asks nobody to pay the rest), else what its amounts leave.
 */
function owedAfter(before: Invoice, amounts: Parameters<typeof amountRemaining>[0]): bigint {
  return before.invoice_status === 'VOIDED' ? 0n : amountRemaining(amounts)
}

/** Adds a refund to a locked invoice; never more than was paid. */
export async function recordRefundLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  if (amount <= 0n)
    throw validationError('A refund amount must be positive', {
      amount: formatMinorUnits(amount, before.currency),
    })
  const amountRefunded = before.amount_refunded + amount
  if (amountRefunded > before.amount_paid) {
    throw new AppError('conflict', `Refunds on invoice ${before.id} would exceed what was paid`, {
      invoice_id: before.id,
      amount_paid: formatMinorUnits(before.amount_paid, before.currency),
      amount_refunded: formatMinorUnits(before.amount_refunded, before.currency),
    })
  }
  const now = clock.now()
  // Before it was paid in full, what is refunded is owed again (`amountRemaining`).
  const amounts = { ...amountsOf(before), amountRefunded }
  const paymentStatus = paymentStatusFor(amounts, before.payment_status)
  const invoice = await updateInvoice(trx, before.id, {
    amount_refunded: amountRefunded,
    amount_remaining: owedAfter(before, amounts),
    payment_status: paymentStatus,
    updated_at: now,
  })
  await recordEvents(trx, scope, clock.now(), [
    invoiceEvent('invoice.refunded', invoice, await linesOf(trx, [invoice.id])),
  ])
  return { before, invoice, becamePaid: false }
}

/**
 * Takes a refund back off a locked invoice: its provider failed it after it had succeeded,
 * so the money is the invoice's again. `amount_refunded` goes down and the amounts and
 * `payment_status` follow, as a payment would move them: an invoice this leaves paid in full
 * for the first time is paid (`becamePaid`, `invoice.paid`), else `invoice.updated`.
 */
export async function reverseRefundLocked(
  trx: Db,
  scope: Scope,
  before: Invoice,
  amount: bigint,
  clock: Clock,
): Promise<InvoiceChange> {
  if (amount <= 0n || amount > before.amount_refunded)
    throw new AppError('conflict', `Invoice ${before.id} has no refund of this amount to undo`, {
      invoice_id: before.id,
      amount: formatMinorUnits(amount, before.currency),
      amount_refunded: formatMinorUnits(before.amount_refunded, before.currency),
    })
  const amountRefunded = before.amount_refunded - amount
  const amounts = { ...amountsOf(before), amountRefunded }
  const paymentStatus = paymentStatusFor(amounts, before.payment_status)
  return moneyOnInvoice(
    trx,
    scope,
    before,
    { amount_refunded: amountRefunded },
    { amounts, paymentStatus, event: 'invoice.updated' },
    clock,
  )
}

/**
 * Applies a discount code to a locked, not yet paid invoice at payment time: the
 * totals are recomputed from the subtotal and one use of the code is taken. The
 * same code again is a no-op; another code on a discounted invoice is 409.
 */
export async function applyDiscountCode(
  trx: Db,
  scope: Scope,
  invoice: Invoice,
  code: string,
  clock: Clock,
): Promise<Invoice> {
  if (invoice.source === 'stripe') {
    // Its amounts are Stripe's (the mirror follows Stripe's invoice): a Payrail code would
    // lower what Payrail collects while Stripe still asks for the whole.
    throw validationError(
      `Invoice ${invoice.id} mirrors a Stripe invoice: discounts are applied in Stripe`,
      { field: 'discount_code', invoice_id: invoice.id },
    )
  }
  if (invoice.discount_code?.toLowerCase() === code.toLowerCase()) return invoice
  if (invoice.discount_id) {
    throw new AppError(
      'conflict',
      `Invoice ${invoice.id} already has discount ${invoice.discount_code}`,
      {
        invoice_id: invoice.id,
        discount_code: invoice.discount_code,
      },
    )
  }
  if (invoice.amount_paid > 0n) {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${invoice.id} has payments; a discount applies only before the first`,
      {
        invoice_id: invoice.id,
      },
    )
  }
  const now = clock.now()
  const discount = await findRedeemableDiscount(trx, scope, code, now)
  const totalDiscount = discountAmount(discount, invoice.subtotal, invoice.currency)
  const total = invoice.subtotal - totalDiscount
  await redeemDiscount(
    trx,
    scope,
    discount,
    { invoiceId: invoice.id, customerId: invoice.customer_id, amount: totalDiscount },
    now,
  )
  const updated = await updateInvoice(trx, invoice.id, {
    discount_id: discount.id,
    discount_code: discount.code,
    total_discount: totalDiscount,
    total,
    amount_due: total,
    amount_remaining: amountRemaining({ ...amountsOf(invoice), amountDue: total }),
    updated_at: now,
  })
  await recordEvents(trx, scope, now, [
    invoiceEvent('invoice.updated', updated, await linesOf(trx, [invoice.id])),
  ])
  return updated
}

/**
 * Refuses a new payment unless the invoice is FINALIZED, has something left to pay
 * and its payment window is open.
 */
export function assertPayable(invoice: Invoice, now: Date): void {
  if (invoice.invoice_status !== 'FINALIZED') {
    throw new AppError(
      'invalid_state_transition',
      `Invoice ${invoice.id} is ${invoice.invoice_status}; only finalized invoices can be paid`,
      {
        invoice_id: invoice.id,
        invoice_status: invoice.invoice_status,
      },
    )
  }
  if (isPaidStatus(invoice.payment_status) || invoice.amount_remaining === 0n) {
    throw new AppError('conflict', `Invoice ${invoice.id} is already paid`, {
      invoice_id: invoice.id,
      payment_status: invoice.payment_status,
    })
  }
  if (invoice.payment_window_ends_at && invoice.payment_window_ends_at.getTime() <= now.getTime()) {
    throw new AppError(
      'invalid_state_transition',
      `The payment window of invoice ${invoice.id} has ended`,
      {
        invoice_id: invoice.id,
        payment_window_ends_at: invoice.payment_window_ends_at.toISOString(),
      },
    )
  }
}

/**
 * Marks an invoice for the automatic charge (customer with `auto_pay` and a default
 * payment method): the payments job charges invoices whose `next_payment_attempt` has come.
 */
export async function queueAutomaticPayment(trx: Db, invoiceId: string, at: Date): Promise<void> {
  await updateInvoice(trx, invoiceId, { next_payment_attempt: at })
}

export async function lockInvoiceOrFail(trx: Db, scope: Scope, id: string): Promise<Invoice> {
  const invoice = await lockInvoice(trx, scope.environmentId, id)
  if (!invoice) throw notFound('invoice', id)
  return invoice
}

/** An invoice the caller may see: a customer token sees only its customer's (others are 404). */
export async function getInvoice(db: Db, access: Access, id: string): Promise<InvoiceWithLines> {
  const invoice = await findInvoice(db, access.environmentId, id, access.customerId)
  if (!invoice) throw notFound('invoice', id)
  return { invoice, lines: await linesOf(db, [id]) }
}

export async function listInvoices(
  db: Db,
  access: Access,
  filters: InvoiceFilters,
  request: ListRequest<InvoiceSortField>,
): Promise<{ items: InvoiceWithLines[]; total: number }> {
  if (
    access.customerId !== null &&
    filters.customerId !== undefined &&
    filters.customerId !== access.customerId
  ) {
    return { items: [], total: 0 }
  }
  const scoped =
    access.customerId === null ? filters : { ...filters, customerId: access.customerId }
  const { items, total } = await listInvoiceRows(db, access.environmentId, scoped, request)
  return { items: await withLines(db, items), total }
}

export async function linesOfInvoice(db: Db, invoiceId: string): Promise<InvoiceLine[]> {
  return linesOf(db, [invoiceId])
}

export async function withLines(db: Db, invoices: Invoice[]): Promise<InvoiceWithLines[]> {
  const lines = await linesOf(
    db,
    invoices.map((i) => i.id),
  )
  const byInvoice = new Map<string, InvoiceLine[]>()
  for (const line of lines)
    byInvoice.set(line.invoice_id, [...(byInvoice.get(line.invoice_id) ?? []), line])
  return invoices.map((invoice) => ({ invoice, lines: byInvoice.get(invoice.id) ?? [] }))
}

export function formatInvoiceNumber(sequence: bigint): string {
  return `INV-${sequence.toString().padStart(6, '0')}`
}

function invoiceEvent(type: EventType, invoice: Invoice, lines: InvoiceLine[]) {
  return {
    type,
    objectType: 'invoice',
    objectId: invoice.id,
    data: toInvoiceResponse(invoice, lines),
  }
}

/** The invoice's amounts, as `paymentStatusFor` and `amountRemaining` read them. */
function amountsOf(invoice: Invoice): InvoiceAmounts {
  return {
    amountDue: invoice.amount_due,
    amountPaid: invoice.amount_paid,
    amountRefunded: invoice.amount_refunded,
    paidBefore: invoice.paid_at !== null,
  }
}
