import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Price, Product } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'

const ProductType = Type.Union([
  Type.Literal('one_time'),
  Type.Literal('recurring'),
  Type.Literal('credit_top_up'),
])
const Interval = Type.Union([
  Type.Literal('day'),
  Type.Literal('week'),
  Type.Literal('month'),
  Type.Literal('year'),
])

export const PriceInput = Type.Object({
  amount: DecimalAmount,
  currency: CurrencyCode,
  interval: Type.Optional(Interval),
  interval_count: Type.Optional(Type.Integer({ minimum: 1, maximum: 365 })),
})
export type PriceInput = Static<typeof PriceInput>

export const CreateProductBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  type: ProductType,
  prices: Type.Array(PriceInput, { minItems: 1, maxItems: 50 }),
  active: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
})
export type CreateProductBody = Static<typeof CreateProductBody>

export const UpdateProductBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  description: Type.Optional(Nullable(Type.String({ maxLength: 2000 }))),
  active: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
  add_prices: Type.Optional(
    Type.Array(PriceInput, { maxItems: 50, description: 'Prices are immutable; add new ones' }),
  ),
  deactivate_prices: Type.Optional(Type.Array(Type.String(), { maxItems: 50 })),
})
export type UpdateProductBody = Static<typeof UpdateProductBody>

export const ProductListQuery = ListQuery({
  type: Type.Optional(ProductType),
  active: Type.Optional(Type.Boolean()),
})

export const PriceSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('price'),
    product_id: Type.String(),
    amount: Type.String(),
    currency: Type.String(),
    interval: Nullable(Type.String()),
    interval_count: Type.Integer(),
    active: Type.Boolean(),
    created_at: Timestamp,
  },
  { $id: 'Price' },
)

export const ProductSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('product'),
    name: Type.String(),
    description: Nullable(Type.String()),
    type: Type.String(),
    active: Type.Boolean(),
    prices: Type.Array(PriceSchema),
    metadata: Type.Record(Type.String(), Type.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Product' },
)

export function toPriceResponse(price: Price) {
  return {
    id: price.id,
    object: 'price' as const,
    product_id: price.product_id,
    amount: formatMinorUnits(price.amount, price.currency),
    currency: price.currency,
    interval: price.interval,
    interval_count: price.interval_count,
    active: price.active,
    created_at: price.created_at.toISOString(),
  }
}

export function toProductResponse(product: Product, prices: Price[]) {
  return {
    id: product.id,
    object: 'product' as const,
    name: product.name,
    description: product.description,
    type: product.type,
    active: product.active,
    prices: prices.map(toPriceResponse),
    metadata: product.metadata,
    created_at: product.created_at.toISOString(),
    updated_at: product.updated_at.toISOString(),
  }
}
