import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Order } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'
import { CollectionMethod } from '../invoices/schemas.ts'

const OrderType = Type.Union([
  Type.Literal('SUBSCRIPTION'),
  Type.Literal('CREDIT_TOP_UP'),
  Type.Literal('ONE_TIME_PRODUCT'),
])

export const CreateOrderBody = Type.Object({
  customer_id: Type.String({ minLength: 1 }),
  type: OrderType,
  price_id: Type.Optional(
    Type.String({ description: 'Required except for a custom-amount credit top-up' }),
  ),
  quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  amount: Type.Optional(DecimalAmount),
  currency: Type.Optional(CurrencyCode),
  discount_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  collection_method: Type.Optional(CollectionMethod),
  payment_window_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  metadata: Type.Optional(Metadata),
})
export type CreateOrderBody = Static<typeof CreateOrderBody>

export const OrderListQuery = ListQuery({
  status: Type.Optional(
    Type.Union([Type.Literal('PENDING'), Type.Literal('FULFILLED'), Type.Literal('CANCELLED')]),
  ),
  type: Type.Optional(OrderType),
  customer_id: Type.Optional(Type.String()),
})

export const OrderSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('order'),
    customer_id: Type.String(),
    type: Type.String(),
    status: Type.String(),
    product_id: Nullable(Type.String()),
    price_id: Nullable(Type.String()),
    quantity: Type.Integer(),
    amount: Type.String({
      description: 'Order value before discounts (what a credit top-up credits)',
    }),
    currency: Type.String(),
    invoice_id: Type.String(),
    subscription_id: Nullable(Type.String()),
    metadata: Type.Record(Type.String(), Type.String()),
    fulfilled_at: Nullable(Timestamp),
    cancelled_at: Nullable(Timestamp),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Order' },
)

export function toOrderResponse(order: Order) {
  return {
    id: order.id,
    object: 'order' as const,
    customer_id: order.customer_id,
    type: order.type,
    status: order.status,
    product_id: order.product_id,
    price_id: order.price_id,
    quantity: order.quantity,
    amount: formatMinorUnits(order.amount, order.currency),
    currency: order.currency,
    invoice_id: order.invoice_id,
    subscription_id: order.subscription_id,
    metadata: order.metadata,
    fulfilled_at: order.fulfilled_at?.toISOString() ?? null,
    cancelled_at: order.cancelled_at?.toISOString() ?? null,
    created_at: order.created_at.toISOString(),
    updated_at: order.updated_at.toISOString(),
  }
}
