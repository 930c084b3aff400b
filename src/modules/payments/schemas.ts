import { type Static, Type } from 'typebox'
import { validationError } from '../../core/errors.ts'
import { formatMinorUnits } from '../../core/money.ts'
import { currentStateOf, PAYMENT_STATUSES } from '../../core/payment-state.ts'
import type { Payment, PaymentAttempt, Refund } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'
import { AddressSchema } from '../customers/schemas.ts'

/** `metadata.automatic_charge: "true"` marks the charges the `charge_due_invoices` job makes. */
export const AUTOMATIC_METADATA_KEY = 'automatic_charge'

/**
 * The job finds its own charges (and counts an invoice's attempts) by that key, so a request
 * may neither set it nor remove it: a customer token's payment flagged so was taken for the
 * job's charge, and the invoice's card was never charged. 400 on `metadata.automatic_charge`.
 */
export function assertNoAutomaticFlag(metadata: Record<string, string> | undefined): void {
  if (metadata !== undefined && Object.hasOwn(metadata, AUTOMATIC_METADATA_KEY)) {
    throw validationError(
      `metadata.${AUTOMATIC_METADATA_KEY} is Payrail's own mark of its automatic charges; it cannot be set or removed`,
      { field: `metadata.${AUTOMATIC_METADATA_KEY}` },
    )
  }
}

export const PaymentMethodTypeSchema = Type.Union([
  Type.Literal('PAYMENT_LINK'),
  Type.Literal('CARD'),
  Type.Literal('CRYPTO'),
  Type.Literal('CREDITS'),
  Type.Literal('OFFLINE'),
  Type.Literal('EXTERNAL'),
])

/** Where a customer is sent back: an http(s) URL (a `javascript:` or `ftp:` one is refused). */
export const Url = Type.String({ format: 'uri', pattern: '^https?://', maxLength: 2000 })

/** `POST /v1/payments`: Flexprice's request, field for field. */
export const CreatePaymentBody = Type.Object({
  destination_type: Type.Literal('INVOICE'),
  destination_id: Type.String({ minLength: 1 }),
  payment_method_type: PaymentMethodTypeSchema,
  payment_method_id: Type.Optional(Type.String({ maxLength: 200 })),
  payment_gateway: Type.Optional(Type.String({ maxLength: 40 })),
  amount: DecimalAmount,
  currency: CurrencyCode,
  process_payment: Type.Optional(Type.Boolean({ default: true })),
  success_url: Type.Optional(Url),
  cancel_url: Type.Optional(Url),
  save_card_and_make_default: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
  idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  description: Type.Optional(Type.String({ maxLength: 1000 })),
  billing_address: Type.Optional(AddressSchema),
  discount_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  payment_date: Type.Optional(Type.String({ format: 'date-time' })),
})
export type CreatePaymentBody = Static<typeof CreatePaymentBody>

/** The fields a payment may change after creation (a customer token may change these too). */
export const UpdatePaymentBody = Type.Object({
  description: Type.Optional(Nullable(Type.String({ maxLength: 1000 }))),
  metadata: Type.Optional(Metadata),
  success_url: Type.Optional(Nullable(Url)),
  cancel_url: Type.Optional(Nullable(Url)),
  billing_address: Type.Optional(Nullable(AddressSchema)),
  payment_method_id: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  save_card_and_make_default: Type.Optional(Type.Boolean()),
  payment_date: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
})
export type UpdatePaymentBody = Static<typeof UpdatePaymentBody>

const PaymentStatusFilter = Type.Union(PAYMENT_STATUSES.map((status) => Type.Literal(status)))

export const PaymentListQuery = ListQuery({
  status: Type.Optional(PaymentStatusFilter),
  payment_status: Type.Optional(PaymentStatusFilter),
  payment_method_type: Type.Optional(PaymentMethodTypeSchema),
  payment_gateway: Type.Optional(Type.String()),
  destination_id: Type.Optional(Type.String()),
  customer_id: Type.Optional(Type.String()),
  currency: Type.Optional(CurrencyCode),
  include_inactive: Type.Optional(Type.Boolean()),
})

export const CreateRefundBody = Type.Object({
  amount: Type.Optional(DecimalAmount),
  reason: Type.Optional(Type.String({ maxLength: 500 })),
  metadata: Type.Optional(Metadata),
})
export type CreateRefundBody = Static<typeof CreateRefundBody>

const AttemptSchema = Type.Object({
  id: Type.String(),
  gateway: Type.String(),
  gateway_payment_id: Nullable(Type.String()),
  gateway_tracking_id: Nullable(Type.String()),
  status: Type.String(),
  error_code: Nullable(Type.String()),
  error_message: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
})

const Str = Type.String()
const NStr = Nullable(Type.String())

export const PaymentSchema = Type.Object(
  {
    id: Str,
    object: Type.Literal('payment'),
    human_id: Str,
    tenant_id: Str,
    environment_id: Str,
    customer_id: Str,
    destination_type: Str,
    destination_id: Str,
    subject: NStr,
    invoice_ids: Type.Array(Str),
    amount: Str,
    amount_paid: Str,
    amount_reserved: Str,
    amount_refunded: Str,
    currency: Str,
    payment_status: Str,
    current_state: Str,
    payment_method_type: Str,
    payment_method_id: NStr,
    payment_gateway: NStr,
    gateway_payment_id: NStr,
    gateway_tracking_id: NStr,
    gateway_metadata: Type.Record(Str, Str),
    payment_url: NStr,
    active: Type.Boolean(),
    payment_date: Nullable(Timestamp),
    billing_address: Nullable(Type.Record(Str, NStr)),
    description: NStr,
    metadata: Type.Record(Str, Str),
    status_code: NStr,
    error_message: NStr,
    success_url: NStr,
    cancel_url: NStr,
    save_card_and_make_default: Type.Boolean(),
    idempotency_key: NStr,
    invoice_number: NStr,
    discount_code: NStr,
    track_attempts: Type.Boolean(),
    attempts: Type.Array(AttemptSchema),
    created_by: NStr,
    updated_by: NStr,
    created_at: Timestamp,
    updated_at: Timestamp,
    succeeded_at: Nullable(Timestamp),
    failed_at: Nullable(Timestamp),
    refunded_at: Nullable(Timestamp),
    cancelled_at: Nullable(Timestamp),
  },
  { $id: 'Payment' },
)

export const RefundSchema = Type.Object(
  {
    id: Str,
    object: Type.Literal('refund'),
    payment_id: Str,
    amount: Str,
    currency: Str,
    status: Str,
    reason: NStr,
    metadata: Type.Record(Str, Str),
    gateway_refund_id: NStr,
    failure_code: NStr,
    failure_message: NStr,
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Refund' },
)

export const RefundListQuery = ListQuery({
  payment_id: Type.Optional(Type.String()),
  status: Type.Optional(
    Type.Union(['pending', 'succeeded', 'failed', 'canceled'].map((s) => Type.Literal(s))),
  ),
})

const iso = (date: Date | null) => date?.toISOString() ?? null

export function toPaymentResponse(
  payment: Payment,
  attempts: PaymentAttempt[],
  invoiceIds: string[],
) {
  const money = (amount: bigint) => formatMinorUnits(amount, payment.currency)
  const address = payment.billing_address
  return {
    id: payment.id,
    object: 'payment' as const,
    human_id: payment.human_id,
    tenant_id: payment.tenant_id,
    environment_id: payment.environment_id,
    customer_id: payment.customer_id,
    destination_type: payment.destination_type,
    destination_id: payment.destination_id,
    subject: payment.subject,
    invoice_ids: invoiceIds,
    amount: money(payment.amount),
    amount_paid: money(payment.amount_paid),
    amount_reserved: money(payment.amount_reserved),
    amount_refunded: money(payment.amount_refunded),
    currency: payment.currency,
    payment_status: payment.payment_status,
    current_state: currentStateOf(payment.payment_status),
    payment_method_type: payment.payment_method_type,
    payment_method_id: payment.payment_method_id,
    payment_gateway: payment.payment_gateway,
    gateway_payment_id: payment.gateway_payment_id,
    gateway_tracking_id: payment.gateway_tracking_id,
    gateway_metadata: payment.gateway_metadata,
    payment_url: payment.payment_url,
    active: payment.active,
    payment_date: iso(payment.payment_date),
    billing_address: address
      ? {
          line1: address.line1 ?? null,
          line2: address.line2 ?? null,
          city: address.city ?? null,
          state: address.state ?? null,
          postal_code: address.postal_code ?? null,
          country: address.country ?? null,
        }
      : null,
    description: payment.description,
    metadata: payment.metadata,
    status_code: payment.status_code,
    error_message: payment.error_message,
    success_url: payment.success_url,
    cancel_url: payment.cancel_url,
    save_card_and_make_default: payment.save_card_and_make_default,
    idempotency_key: payment.idempotency_key,
    invoice_number: payment.invoice_number,
    discount_code: payment.discount_code,
    track_attempts: payment.track_attempts,
    attempts: attempts.map((attempt) => ({
      id: attempt.id,
      gateway: attempt.gateway,
      gateway_payment_id: attempt.gateway_payment_id,
      gateway_tracking_id: attempt.gateway_tracking_id,
      status: attempt.status,
      error_code: attempt.error_code,
      error_message: attempt.error_message,
      created_at: attempt.created_at.toISOString(),
      updated_at: attempt.updated_at.toISOString(),
    })),
    created_by: payment.created_by,
    updated_by: payment.updated_by,
    created_at: payment.created_at.toISOString(),
    updated_at: payment.updated_at.toISOString(),
    succeeded_at: iso(payment.succeeded_at),
    failed_at: iso(payment.failed_at),
    refunded_at: iso(payment.refunded_at),
    cancelled_at: iso(payment.cancelled_at),
  }
}

export function toRefundResponse(refund: Refund) {
  return {
    id: refund.id,
    object: 'refund' as const,
    payment_id: refund.payment_id,
    amount: formatMinorUnits(refund.amount, refund.currency),
    currency: refund.currency,
    status: refund.status,
    reason: refund.reason,
    metadata: refund.metadata,
    gateway_refund_id: refund.gateway_refund_id,
    failure_code: refund.failure_code,
    failure_message: refund.failure_message,
    created_at: refund.created_at.toISOString(),
    updated_at: refund.updated_at.toISOString(),
  }
}
