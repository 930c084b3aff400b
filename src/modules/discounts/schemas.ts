import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Discount } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'

export const CreateDiscountBody = Type.Object({
  code: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
  percent_off: Type.Optional(
    Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Up to two decimals' }),
  ),
  amount_off: Type.Optional(DecimalAmount),
  currency: Type.Optional(CurrencyCode),
  max_redemptions: Type.Optional(Type.Integer({ minimum: 1 })),
  expires_at: Type.Optional(Type.String({ format: 'date-time' })),
  active: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
})
export type CreateDiscountBody = Static<typeof CreateDiscountBody>

export const UpdateDiscountBody = Type.Object({
  active: Type.Optional(Type.Boolean()),
  max_redemptions: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  expires_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
  metadata: Type.Optional(Metadata),
})
export type UpdateDiscountBody = Static<typeof UpdateDiscountBody>

export const DiscountListQuery = ListQuery({
  active: Type.Optional(Type.Boolean()),
  code: Type.Optional(Type.String()),
})

export const DiscountSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('discount'),
    code: Type.String(),
    percent_off: Nullable(Type.Number()),
    amount_off: Nullable(Type.String()),
    currency: Nullable(Type.String()),
    max_redemptions: Nullable(Type.Integer()),
    times_redeemed: Type.Integer(),
    expires_at: Nullable(Timestamp),
    active: Type.Boolean(),
    valid: Type.Boolean({ description: 'Redeemable now: active, not expired, uses left' }),
    metadata: Type.Record(Type.String(), Type.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Discount' },
)

export function toDiscountResponse(discount: Discount, now: Date) {
  return {
    id: discount.id,
    object: 'discount' as const,
    code: discount.code,
    percent_off: discount.percent_off === null ? null : Number(discount.percent_off),
    amount_off:
      discount.amount_off === null || discount.currency === null
        ? null
        : formatMinorUnits(discount.amount_off, discount.currency),
    currency: discount.currency,
    max_redemptions: discount.max_redemptions,
    times_redeemed: discount.times_redeemed,
    expires_at: discount.expires_at?.toISOString() ?? null,
    active: discount.active,
    valid: isRedeemable(discount, now),
    metadata: discount.metadata,
    created_at: discount.created_at.toISOString(),
    updated_at: discount.updated_at.toISOString(),
  }
}

export function isRedeemable(discount: Discount, now: Date): boolean {
  return (
    discount.active &&
    (discount.expires_at === null || discount.expires_at > now) &&
    (discount.max_redemptions === null || discount.times_redeemed < discount.max_redemptions)
  )
}
