import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Subscription, SubscriptionSchedule } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import { Metadata, Nullable, Timestamp } from '../../http/schema-types.ts'

export const SubscriptionListQuery = ListQuery({
  status: Type.Optional(
    Type.Union([
      Type.Literal('incomplete'),
      Type.Literal('active'),
      Type.Literal('past_due'),
      Type.Literal('canceled'),
    ]),
  ),
  customer_id: Type.Optional(Type.String()),
})

export const UpdateSubscriptionBody = Type.Object({
  price_id: Type.Optional(
    Type.String({ description: 'Change to this recurring price (same currency)' }),
  ),
  quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  change_at: Type.Optional(
    Type.String({
      description:
        "When a price or quantity change takes effect (sent only with price_id or quantity): 'period_end' (default), unix seconds or an ISO 8601 date in the future; it applies at the first renewal on or after it",
    }),
  ),
  cancel_scheduled_changes: Type.Optional(Type.Boolean()),
  cancel_at_period_end: Type.Optional(Type.Boolean()),
  collection_method: Type.Optional(
    Type.Union([Type.Literal('charge_automatically'), Type.Literal('send_invoice')]),
  ),
  metadata: Type.Optional(Metadata),
})
export type UpdateSubscriptionBody = Static<typeof UpdateSubscriptionBody>

export const CancelSubscriptionBody = Type.Object({
  at_period_end: Type.Optional(
    Type.Boolean({ description: 'Cancel when the current period ends instead of now' }),
  ),
})

const ScheduledChange = Type.Object({
  id: Type.String(),
  price_id: Nullable(Type.String()),
  quantity: Nullable(Type.Integer()),
  effective_at: Timestamp,
  status: Type.String(),
  applied_at: Nullable(Timestamp),
})

export const SubscriptionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('subscription'),
    customer_id: Type.String(),
    product_id: Type.String(),
    price_id: Type.String(),
    quantity: Type.Integer(),
    status: Type.String(),
    currency: Type.String(),
    amount: Type.String({ description: 'Charged per period' }),
    interval: Type.String(),
    interval_count: Type.Integer(),
    collection_method: Type.String(),
    billing_cycle_anchor: Timestamp,
    current_period_start: Timestamp,
    current_period_end: Timestamp,
    cancel_at_period_end: Type.Boolean(),
    canceled_at: Nullable(Timestamp),
    ended_at: Nullable(Timestamp),
    started_at: Nullable(Timestamp),
    order_id: Nullable(Type.String()),
    latest_invoice_id: Nullable(Type.String()),
    scheduled_changes: Type.Array(ScheduledChange),
    metadata: Type.Record(Type.String(), Type.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Subscription' },
)

const iso = (date: Date | null) => date?.toISOString() ?? null

export function toSubscriptionResponse(
  subscription: Subscription,
  schedules: SubscriptionSchedule[],
) {
  return {
    id: subscription.id,
    object: 'subscription' as const,
    customer_id: subscription.customer_id,
    product_id: subscription.product_id,
    price_id: subscription.price_id,
    quantity: subscription.quantity,
    status: subscription.status,
    currency: subscription.currency,
    amount: formatMinorUnits(subscription.amount, subscription.currency),
    interval: subscription.interval,
    interval_count: subscription.interval_count,
    collection_method: subscription.collection_method,
    billing_cycle_anchor: subscription.billing_cycle_anchor.toISOString(),
    current_period_start: subscription.current_period_start.toISOString(),
    current_period_end: subscription.current_period_end.toISOString(),
    cancel_at_period_end: subscription.cancel_at_period_end,
    canceled_at: iso(subscription.canceled_at),
    ended_at: iso(subscription.ended_at),
    started_at: iso(subscription.started_at),
    order_id: subscription.order_id,
    latest_invoice_id: subscription.latest_invoice_id,
    scheduled_changes: schedules.map((s) => ({
      id: s.id,
      price_id: s.price_id,
      quantity: s.quantity,
      effective_at: s.effective_at.toISOString(),
      status: s.status,
      applied_at: iso(s.applied_at),
    })),
    metadata: subscription.metadata,
    created_at: subscription.created_at.toISOString(),
    updated_at: subscription.updated_at.toISOString(),
  }
}
