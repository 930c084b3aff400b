import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Invoice, InvoiceLine } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'

export const CollectionMethod = Type.Union([
  Type.Literal('charge_automatically'),
  Type.Literal('send_invoice'),
])

export const InvoiceLineInput = Type.Object({
  description: Type.String({ minLength: 1, maxLength: 500 }),
  quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  unit_amount: DecimalAmount,
})

export const CreateInvoiceBody = Type.Object({
  customer_id: Type.String({ minLength: 1 }),
  currency: CurrencyCode,
  lines: Type.Array(InvoiceLineInput, { minItems: 1, maxItems: 250 }),
  collection_method: Type.Optional(CollectionMethod),
  due_date: Type.Optional(Type.String({ format: 'date-time' })),
  payment_window_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  discount_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  metadata: Type.Optional(Metadata),
})
export type CreateInvoiceBody = Static<typeof CreateInvoiceBody>

const InvoiceStatusFilter = Type.Union([
  Type.Literal('DRAFT'),
  Type.Literal('FINALIZED'),
  Type.Literal('VOIDED'),
  Type.Literal('UNCOLLECTIBLE'),
])
const PaymentStatusFilter = Type.Union([
  Type.Literal('PENDING'),
  Type.Literal('PROCESSING'),
  Type.Literal('SUCCEEDED'),
  Type.Literal('OVERPAID'),
  Type.Literal('FAILED'),
  Type.Literal('PARTIALLY_REFUNDED'),
  Type.Literal('REFUNDED'),
])

export const InvoiceListQuery = ListQuery({
  status: Type.Optional(InvoiceStatusFilter),
  invoice_status: Type.Optional(InvoiceStatusFilter),
  payment_status: Type.Optional(PaymentStatusFilter),
  customer_id: Type.Optional(Type.String()),
  subscription_id: Type.Optional(Type.String()),
  currency: Type.Optional(CurrencyCode),
  source: Type.Optional(Type.Union([Type.Literal('native'), Type.Literal('stripe')])),
})

export const InvoiceLineSchema = Type.Object({
  id: Type.String(),
  description: Type.String(),
  quantity: Type.Integer(),
  unit_amount: Type.String(),
  amount: Type.String(),
  price_id: Nullable(Type.String()),
  period_start: Nullable(Timestamp),
  period_end: Nullable(Timestamp),
})

export const InvoiceSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('invoice'),
    number: Nullable(Type.String()),
    customer_id: Type.String(),
    currency: Type.String(),
    invoice_status: Type.String(),
    payment_status: Type.String(),
    collection_method: Type.String(),
    billing_reason: Type.String(),
    subtotal: Type.String(),
    total_discount: Type.String(),
    total: Type.String(),
    amount_due: Type.String(),
    amount_paid: Type.String(),
    amount_refunded: Type.String(),
    amount_remaining: Type.String(),
    due_date: Nullable(Timestamp),
    payment_window_days: Nullable(Type.Integer()),
    payment_window_ends_at: Nullable(Timestamp),
    discount_code: Nullable(Type.String()),
    order_id: Nullable(Type.String()),
    subscription_id: Nullable(Type.String()),
    period_start: Nullable(Timestamp),
    period_end: Nullable(Timestamp),
    source: Type.String(),
    stripe_invoice_id: Nullable(Type.String()),
    next_payment_attempt: Nullable(Timestamp),
    description: Nullable(Type.String()),
    lines: Type.Array(InvoiceLineSchema),
    metadata: Type.Record(Type.String(), Type.String()),
    finalized_at: Nullable(Timestamp),
    paid_at: Nullable(Timestamp),
    voided_at: Nullable(Timestamp),
    marked_uncollectible_at: Nullable(Timestamp),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Invoice' },
)

const iso = (date: Date | null) => date?.toISOString() ?? null

export function toInvoiceResponse(invoice: Invoice, lines: InvoiceLine[]) {
  const money = (amount: bigint) => formatMinorUnits(amount, invoice.currency)
  return {
    id: invoice.id,
    object: 'invoice' as const,
    number: invoice.number,
    customer_id: invoice.customer_id,
    currency: invoice.currency,
    invoice_status: invoice.invoice_status,
    payment_status: invoice.payment_status,
    collection_method: invoice.collection_method,
    billing_reason: invoice.billing_reason,
    subtotal: money(invoice.subtotal),
    total_discount: money(invoice.total_discount),
    total: money(invoice.total),
    amount_due: money(invoice.amount_due),
    amount_paid: money(invoice.amount_paid),
    amount_refunded: money(invoice.amount_refunded),
    amount_remaining: money(invoice.amount_remaining),
    due_date: iso(invoice.due_date),
    payment_window_days: invoice.payment_window_days,
    payment_window_ends_at: iso(invoice.payment_window_ends_at),
    discount_code: invoice.discount_code,
    order_id: invoice.order_id,
    subscription_id: invoice.subscription_id,
    period_start: iso(invoice.period_start),
    period_end: iso(invoice.period_end),
    source: invoice.source,
    stripe_invoice_id: invoice.stripe_invoice_id,
    next_payment_attempt: iso(invoice.next_payment_attempt),
    description: invoice.description,
    lines: lines.map((line) => ({
      id: line.id,
      description: line.description,
      quantity: line.quantity,
      unit_amount: money(line.unit_amount),
      amount: money(line.amount),
      price_id: line.price_id,
      period_start: iso(line.period_start),
      period_end: iso(line.period_end),
    })),
    metadata: invoice.metadata,
    finalized_at: iso(invoice.finalized_at),
    paid_at: iso(invoice.paid_at),
    voided_at: iso(invoice.voided_at),
    marked_uncollectible_at: iso(invoice.marked_uncollectible_at),
    created_at: invoice.created_at.toISOString(),
    updated_at: invoice.updated_at.toISOString(),
  }
}
