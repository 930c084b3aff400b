import { Type } from 'typebox'
import type { PaymentMethod } from '../../db/database.ts'
import { Nullable, Timestamp } from '../../http/schema-types.ts'

export const PaymentMethodSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('payment_method'),
    customer_id: Type.String(),
    gateway: Type.String(),
    gateway_payment_method_id: Type.String(),
    type: Type.String(),
    card: Nullable(
      Type.Object({
        brand: Nullable(Type.String()),
        last4: Nullable(Type.String()),
        exp_month: Nullable(Type.Integer()),
        exp_year: Nullable(Type.Integer()),
      }),
    ),
    is_default: Type.Boolean(),
    created_at: Timestamp,
  },
  { $id: 'PaymentMethod' },
)

export function toPaymentMethodResponse(method: PaymentMethod, defaultId: string | null) {
  return {
    id: method.id,
    object: 'payment_method' as const,
    customer_id: method.customer_id,
    gateway: method.gateway,
    gateway_payment_method_id: method.gateway_payment_method_id,
    type: method.type,
    card:
      method.type === 'card'
        ? {
            brand: method.card_brand,
            last4: method.card_last4,
            exp_month: method.card_exp_month,
            exp_year: method.card_exp_year,
          }
        : null,
    is_default: method.id === defaultId,
    created_at: method.created_at.toISOString(),
  }
}
