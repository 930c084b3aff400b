import { invalidRequest } from '../errors.ts'
import { type EventOrigin, previousAttributes } from '../events.ts'
import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { requireCustomer } from './customers.ts'
import {
  confirmPaymentIntent,
  insertPaymentIntent,
  type PaymentIntentRecord,
} from './payment-intents.ts'
import { resolvePaymentMethod } from './payment-methods.ts'

export const INVOICE_STATUSES = ['draft', 'open', 'paid', 'uncollectible', 'void'] as const
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number]

export interface InvoiceLineRecord {
  id: string
  description: string
  amount: number
  quantity: number
  price: string | null
  periodStart: number
  periodEnd: number
}

export interface InvoiceRecord extends StoredRecord {
  customer: string
  currency: string
  status: InvoiceStatus
  lines: InvoiceLineRecord[]
  amountPaid: number
  subscription: string | null
  description: string | null
  metadata: Metadata
  number: string | null
  dueDate: number | null
  collectionMethod: 'charge_automatically' | 'send_invoice'
  billingReason: string
  defaultPaymentMethod: string | null
  attemptCount: number
  finalizedAt: number | null
  paidAt: number | null
  /** Paid with `paid_out_of_band: true` (the merchant collected it elsewhere). */
  paidOutOfBand: boolean
  voidedAt: number | null
  markedUncollectibleAt: number | null
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewInvoiceLine {
  description?: string
  amount: number
  quantity?: number
  price?: string | null
  periodStart?: number
  periodEnd?: number
}

export interface NewInvoice {
  id?: string
  customer: string
  /** One line of this amount when `lines` is not given. */
  amountDue?: number
  lines?: NewInvoiceLine[]
  currency?: string
  status?: InvoiceStatus
  subscription?: string | null
  description?: string | null
  metadata?: Metadata
  number?: string | null
  dueDate?: number | null
  collectionMethod?: 'charge_automatically' | 'send_invoice'
  billingReason?: string
  defaultPaymentMethod?: string | null
  created?: number
  overrides?: JsonObject
}

export function insertInvoice(state: EmulatorState, fields: NewInvoice): InvoiceRecord {
  const customer = requireCustomer(state, fields.customer, 'customer')
  const created = fields.created ?? state.nowSeconds()
  const lineInputs = fields.lines ?? [{ amount: fields.amountDue ?? 1000 }]
  const status = fields.status ?? 'open'
  const record: InvoiceRecord = {
    id: fields.id ?? newId('invoice'),
    created,
    seq: state.nextSeq(),
    customer: customer.id,
    currency: fields.currency ?? 'usd',
    status,
    lines: lineInputs.map((line) => ({
      id: newId('invoice_line_item'),
      description: line.description ?? 'Emulated invoice item',
      amount: line.amount,
      quantity: line.quantity ?? 1,
      price: line.price ?? null,
      periodStart: line.periodStart ?? created,
      periodEnd: line.periodEnd ?? created,
    })),
    amountPaid: 0,
    subscription: fields.subscription ?? null,
    description: fields.description ?? null,
    metadata: fields.metadata ?? {},
    number: null,
    dueDate: fields.dueDate ?? null,
    collectionMethod: fields.collectionMethod ?? 'charge_automatically',
    billingReason: fields.billingReason ?? (fields.subscription ? 'subscription_cycle' : 'manual'),
    defaultPaymentMethod: fields.defaultPaymentMethod ?? null,
    attemptCount: 0,
    finalizedAt: status === 'draft' ? null : created,
    paidAt: null,
    paidOutOfBand: false,
    voidedAt: status === 'void' ? created : null,
    markedUncollectibleAt: status === 'uncollectible' ? created : null,
    overrides: fields.overrides ?? {},
  }
  if (status !== 'draft') record.number = fields.number ?? invoiceNumber(state, customer.id)
  if (status === 'paid') {
    record.amountPaid = total(record)
    record.paidAt = created
    record.attemptCount = 1
  }
  state.invoices.set(record.id, record)
  return record
}

function total(record: InvoiceRecord): number {
  return record.lines.reduce((sum, line) => sum + line.amount, 0)
}

function amountRemaining(record: InvoiceRecord): number {
  if (record.status === 'void') return 0
  return Math.max(0, total(record) - record.amountPaid)
}

/** `PREFIX-0001`: the customer's invoice prefix and its count of numbered invoices. */
function invoiceNumber(state: EmulatorState, customerId: string): string {
  const prefix = state.customers.get(customerId)?.invoicePrefix ?? 'EMULATED'
  const numbered = [...state.invoices.values()].filter(
    (invoice) => invoice.customer === customerId && invoice.number !== null,
  ).length
  return `${prefix}-${String(numbered + 1).padStart(4, '0')}`
}

export function renderInvoice(state: EmulatorState, record: InvoiceRecord): JsonObject {
  const customer = state.customers.get(record.customer)
  const amount = total(record)
  const hostedToken = `test_${record.id.slice(3)}`
  const rendered = withFields(template('invoice'), {
    id: record.id,
    object: 'invoice',
    account_country: 'US',
    account_name: 'Stripe Emulator',
    account_tax_ids: null,
    amount_due: amount,
    amount_overpaid: 0,
    amount_paid: record.amountPaid,
    amount_remaining: amountRemaining(record),
    amount_shipping: 0,
    paid_out_of_band: record.paidOutOfBand,
    application: null,
    attempt_count: record.attemptCount,
    attempted: record.attemptCount > 0,
    auto_advance: record.status === 'draft' || record.status === 'open',
    automatic_tax: {
      disabled_reason: null,
      enabled: false,
      liability: null,
      provider: null,
      status: null,
    },
    automatically_finalizes_at: null,
    billing_reason: record.billingReason,
    collection_method: record.collectionMethod,
    created: record.created,
    currency: record.currency,
    custom_fields: null,
    customer: record.customer,
    customer_account: null,
    customer_address: null,
    customer_email: customer?.email ?? null,
    customer_name: customer?.name ?? null,
    customer_phone: customer?.phone ?? null,
    customer_shipping: null,
    customer_tax_exempt: 'none',
    customer_tax_ids: [],
    default_payment_method: record.defaultPaymentMethod,
    default_source: null,
    default_tax_rates: [],
    description: record.description,
    discounts: [],
    due_date: record.dueDate,
    effective_at: record.finalizedAt,
    ending_balance: record.status === 'draft' ? null : 0,
    footer: null,
    from_invoice: null,
    hosted_invoice_url:
      record.status === 'draft'
        ? null
        : `https://invoice.stripe.com/i/acct_emulator/${hostedToken}`,
    invoice_pdf:
      record.status === 'draft'
        ? null
        : `https://pay.stripe.com/invoice/acct_emulator/${hostedToken}/pdf`,
    issuer: { type: 'self' },
    last_finalization_error: null,
    latest_revision: null,
    lines: renderInvoiceLines(state, record),
    livemode: false,
    metadata: record.metadata,
    next_payment_attempt: null,
    number: record.number,
    on_behalf_of: null,
    parent:
      record.subscription === null
        ? null
        : {
            quote_details: null,
            subscription_details: { metadata: null, subscription: record.subscription },
            type: 'subscription_details',
          },
    payment_settings: {
      default_mandate: null,
      payment_method_options: null,
      payment_method_types: null,
    },
    period_end: record.lines.reduce((end, line) => Math.max(end, line.periodEnd), record.created),
    period_start: record.lines.reduce(
      (start, line) => Math.min(start, line.periodStart),
      record.created,
    ),
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: 0,
    statement_descriptor: null,
    status: record.status,
    status_transitions: {
      finalized_at: record.finalizedAt,
      marked_uncollectible_at: record.markedUncollectibleAt,
      paid_at: record.paidAt,
      voided_at: record.voidedAt,
    },
    subscription: record.subscription,
    subtotal: amount,
    subtotal_excluding_tax: amount,
    test_clock: null,
    total: amount,
    total_discount_amounts: [],
    total_excluding_tax: amount,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: record.created,
  })
  return withFields(rendered, record.overrides)
}

/**
 * An invoice's lines as a list, in the invoice's order: embedded in the invoice, Stripe gives
 * the first 10 and `has_more`; `GET /v1/invoices/:id/lines` pages with `limit` (default 10,
 * at most 100) and `starting_after` (a line id).
 */
function renderInvoiceLines(
  state: EmulatorState,
  record: InvoiceRecord,
  page: { limit?: number; startingAfter?: string } = {},
): JsonObject {
  const limit = page.limit ?? EMBEDDED_LINES
  if (limit < 1 || limit > 100)
    throw invalidRequest('Invalid limit: must be between 1 and 100', 'limit')
  const start =
    page.startingAfter === undefined
      ? 0
      : record.lines.findIndex((line) => line.id === page.startingAfter) + 1
  if (start === 0 && page.startingAfter !== undefined)
    throw invalidRequest(`No such line item: '${page.startingAfter}'`, 'starting_after')
  const lines = record.lines.slice(start, start + limit)
  return {
    object: 'list',
    data: lines.map((line) => renderInvoiceLine(state, record, line)),
    has_more: start + limit < record.lines.length,
    url: `/v1/invoices/${record.id}/lines`,
  }
}

/** How many lines an invoice object embeds, as Stripe's does. */
const EMBEDDED_LINES = 10

function renderInvoiceLine(
  state: EmulatorState,
  invoice: InvoiceRecord,
  line: InvoiceLineRecord,
): JsonObject {
  const price = line.price === null ? undefined : state.prices.get(line.price)
  const subscriptionItem =
    invoice.subscription === null
      ? undefined
      : state.subscriptions
          .get(invoice.subscription)
          ?.items.find((item) => line.price !== null && item.price === line.price)
  return withFields(template('line_item'), {
    id: line.id,
    object: 'line_item',
    amount: line.amount,
    currency: invoice.currency,
    description: line.description,
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: invoice.id,
    livemode: false,
    metadata: {},
    parent:
      invoice.subscription === null
        ? {
            invoice_item_details: {
              invoice_item: `ii_${line.id.slice(3)}`,
              proration: false,
              proration_details: { credited_items: null },
              subscription: null,
            },
            subscription_item_details: null,
            type: 'invoice_item_details',
          }
        : {
            invoice_item_details: null,
            subscription_item_details: {
              invoice_item: null,
              proration: false,
              proration_details: { credited_items: null },
              subscription: invoice.subscription,
              subscription_item: subscriptionItem?.id ?? null,
            },
            type: 'subscription_item_details',
          },
    period: { end: line.periodEnd, start: line.periodStart },
    pretax_credit_amounts: [],
    pricing: {
      price_details: price === undefined ? null : { price: price.id, product: price.product },
      type: 'price_details',
      unit_amount_decimal: String(line.amount / line.quantity),
    },
    quantity: line.quantity,
    quantity_decimal: String(line.quantity),
    subscription: invoice.subscription,
    subtotal: line.amount,
    taxes: [],
  })
}

function finalize(state: EmulatorState, record: InvoiceRecord, origin: EventOrigin): void {
  record.status = 'open'
  record.finalizedAt = state.nowSeconds()
  record.number = invoiceNumber(state, record.customer)
  state.events.emit('invoice.finalized', renderInvoice(state, record), origin)
}

/** Applies a change, then emits `invoice.updated` with what changed. */
function changeInvoice(
  state: EmulatorState,
  record: InvoiceRecord,
  origin: EventOrigin,
  change: () => void,
): JsonObject {
  const before = renderInvoice(state, record)
  change()
  const after = renderInvoice(state, record)
  state.events.emit('invoice.updated', after, origin, previousAttributes(before, after))
  return after
}

function payInvoice(
  state: EmulatorState,
  record: InvoiceRecord,
  params: Params,
  origin: EventOrigin,
): JsonObject {
  params.rejectUnknown([
    'forgive',
    'mandate',
    'off_session',
    'paid_out_of_band',
    'payment_method',
    'source',
  ])
  if (record.status === 'paid')
    throw invalidRequest('Invoice is already paid', undefined, 'invoice_not_open')
  if (record.status === 'void') {
    throw invalidRequest(
      'This invoice has been voided and can no longer be paid.',
      undefined,
      'invoice_not_open',
    )
  }
  if (record.status === 'draft') finalize(state, record, origin)

  if (params.boolean('paid_out_of_band') === true) {
    record.paidOutOfBand = true
    markPaid(state, record, amountRemaining(record), origin)
    return renderInvoice(state, record)
  }
  const paymentMethodId = params.string('payment_method') ?? defaultPaymentMethod(state, record)
  if (paymentMethodId === null) {
    throw invalidRequest(
      'This customer has no attached payment source or default payment method. Please consider adding a default payment method.',
    )
  }
  const paymentMethod = resolvePaymentMethod(state, paymentMethodId, 'payment_method')
  const paymentIntent = insertPaymentIntent(
    state,
    {
      amount: amountRemaining(record),
      currency: record.currency,
      customer: record.customer,
      paymentMethod: paymentMethod.id,
      metadata: {},
      description: record.subscription === null ? 'Payment for Invoice' : 'Subscription update',
      setupFutureUsage: null,
      captureMethod: 'automatic',
      receiptEmail: null,
    },
    origin,
  )
  const outcome = confirmPaymentIntent(state, paymentIntent, {
    offSession: params.boolean('off_session') ?? true,
    origin,
  })
  record.attemptCount += 1
  if (outcome.kind === 'declined' || outcome.kind === 'requires_action') {
    state.events.emit('invoice.payment_failed', renderInvoice(state, record), origin)
    if (outcome.kind === 'declined') throw outcome.error
    return renderInvoice(state, record)
  }
  markPaid(state, record, paymentIntent.amount, origin, paymentIntent)
  return renderInvoice(state, record)
}

function defaultPaymentMethod(state: EmulatorState, record: InvoiceRecord): string | null {
  if (record.defaultPaymentMethod !== null) return record.defaultPaymentMethod
  const subscription =
    record.subscription === null ? undefined : state.subscriptions.get(record.subscription)
  if (subscription?.defaultPaymentMethod) return subscription.defaultPaymentMethod
  return state.customers.get(record.customer)?.defaultPaymentMethod ?? null
}

function markPaid(
  state: EmulatorState,
  record: InvoiceRecord,
  amount: number,
  origin: EventOrigin,
  paymentIntent?: PaymentIntentRecord,
): void {
  const paid = changeInvoice(state, record, origin, () => {
    record.amountPaid += amount
    record.status = 'paid'
    record.paidAt = state.nowSeconds()
  })
  state.events.emit('invoice.paid', paid, origin)
  if (paymentIntent !== undefined) state.events.emit('invoice.payment_succeeded', paid, origin)
}

function requireInvoice(state: EmulatorState, id: string): InvoiceRecord {
  return requireRecord(state.invoices, 'invoice', id)
}

function voidInvoice(state: EmulatorState, record: InvoiceRecord, origin: EventOrigin) {
  if (record.status !== 'open' && record.status !== 'uncollectible') {
    throw invalidRequest(
      `You can only void an open or uncollectible invoice; this one is ${record.status}.`,
      undefined,
      'invoice_not_open',
    )
  }
  changeInvoice(state, record, origin, () => {
    record.status = 'void'
    record.voidedAt = state.nowSeconds()
  })
  const rendered = renderInvoice(state, record)
  state.events.emit('invoice.voided', rendered, origin)
  return rendered
}

export function registerInvoiceRoutes(router: Router): void {
  router.get('/v1/invoices', ({ state, params }) => {
    const customer = params.string('customer')
    const status = params.oneOf('status', INVOICE_STATUSES)
    const subscription = params.string('subscription')
    const collection = params.oneOf('collection_method', [
      'charge_automatically',
      'send_invoice',
    ] as const)
    return listResponse({
      params,
      url: '/v1/invoices',
      objectName: 'invoice',
      records: state.invoices.values(),
      filter: (record) =>
        (customer === undefined || record.customer === customer) &&
        (status === undefined || record.status === status) &&
        (subscription === undefined || record.subscription === subscription) &&
        (collection === undefined || record.collectionMethod === collection),
      render: (record) => renderInvoice(state, record),
    })
  })
  router.get('/v1/invoices/:id', ({ state, pathParam }) =>
    renderInvoice(state, requireInvoice(state, pathParam('id'))),
  )
  router.get('/v1/invoices/:id/lines', ({ state, params, pathParam }) =>
    renderInvoiceLines(state, requireInvoice(state, pathParam('id')), {
      limit: params.integer('limit'),
      startingAfter: params.string('starting_after'),
    }),
  )
  router.post('/v1/invoices/:id/pay', ({ state, params, origin, pathParam }) =>
    payInvoice(state, requireInvoice(state, pathParam('id')), params, origin),
  )
  router.post('/v1/invoices/:id/finalize', ({ state, params, origin, pathParam }) => {
    params.rejectUnknown(['auto_advance'])
    const record = requireInvoice(state, pathParam('id'))
    if (record.status !== 'draft') {
      throw invalidRequest('This invoice is already finalized.', undefined, 'invoice_not_editable')
    }
    finalize(state, record, origin)
    return renderInvoice(state, record)
  })
  router.post('/v1/invoices/:id/void', ({ state, origin, pathParam }) =>
    voidInvoice(state, requireInvoice(state, pathParam('id')), origin),
  )
}
