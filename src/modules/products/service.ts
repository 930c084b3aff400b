import type { Clock } from '../../core/clock.ts'
import { notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { normalizeCurrency, toMinorUnits } from '../../core/money.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Price, Product, ProductType } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import {
  deactivatePrices,
  findPrice,
  findProduct,
  insertPrices,
  insertProduct,
  listProducts as listProductRows,
  lockProduct,
  type ProductFilters,
  pricesOf,
  updateProduct as updateProductRow,
} from './repository.ts'
import type { CreateProductBody, PriceInput, UpdateProductBody } from './schemas.ts'

export interface ProductWithPrices {
  product: Product
  prices: Price[]
}

/**
 * Creates a product with its prices. A `recurring` product's prices need an
 * `interval`; other types must not have one.
 *
 * @example
 * await createProduct(db, scope, { name: 'Pro', type: 'recurring', prices: [{ amount: '20', currency: 'usd', interval: 'month' }] }, clock)
 */
export async function createProduct(
  db: Db,
  scope: Scope,
  body: CreateProductBody,
  clock: Clock,
): Promise<ProductWithPrices> {
  const now = clock.now()
  const prices = body.prices.map((price, index) =>
    priceRow(scope, body.type, price, `prices[${index}]`),
  )
  return inTransaction(db, async (trx) => {
    const product = await insertProduct(trx, {
      id: newId('product'),
      tenant_id: scope.tenantId,
      environment_id: scope.environmentId,
      name: body.name,
      description: body.description ?? null,
      type: body.type,
      active: body.active ?? true,
      metadata: newMetadata(body.metadata),
      created_at: now,
      updated_at: now,
    })
    const inserted = await insertPrices(
      trx,
      prices.map((price, position) => ({
        ...price,
        product_id: product.id,
        position,
        created_at: now,
      })),
    )
    return { product, prices: inserted }
  })
}

export async function updateProduct(
  db: Db,
  scope: Scope,
  id: string,
  body: UpdateProductBody,
  clock: Clock,
): Promise<ProductWithPrices> {
  return inTransaction(db, async (trx) => {
    const current = await lockProduct(trx, scope.environmentId, id)
    if (!current) throw notFound('product', id)
    const existing = await pricesOf(trx, [id])
    for (const priceId of body.deactivate_prices ?? []) {
      if (!existing.some((p) => p.id === priceId)) throw notFound('price', priceId)
    }
    const now = clock.now()
    const product = await updateProductRow(trx, scope.environmentId, id, {
      ...(body.name !== undefined && { name: body.name }),
      ...(body.description !== undefined && { description: body.description }),
      ...(body.active !== undefined && { active: body.active }),
      ...(body.metadata !== undefined && {
        metadata: JSON.stringify(mergeMetadata(current.metadata, body.metadata)),
      }),
      updated_at: now,
    })
    await deactivatePrices(trx, id, body.deactivate_prices ?? [])
    const added = (body.add_prices ?? []).map((price, index) =>
      priceRow(scope, current.type, price, `add_prices[${index}]`),
    )
    const next = existing.reduce((max, price) => Math.max(max, price.position + 1), 0)
    await insertPrices(
      trx,
      added.map((price, i) => ({ ...price, product_id: id, position: next + i, created_at: now })),
    )
    return { product, prices: await pricesOf(trx, [id]) }
  })
}

export async function getProduct(db: Db, scope: Scope, id: string): Promise<ProductWithPrices> {
  const product = await findProduct(db, scope.environmentId, id)
  if (!product) throw notFound('product', id)
  return { product, prices: await pricesOf(db, [id]) }
}

export async function listProducts(
  db: Db,
  scope: Scope,
  filters: ProductFilters,
  request: ListRequest<'created_at' | 'name'>,
): Promise<{ items: ProductWithPrices[]; total: number }> {
  const { items, total } = await listProductRows(db, scope.environmentId, filters, request)
  const prices = await pricesOf(
    db,
    items.map((p) => p.id),
  )
  return {
    items: items.map((product) => ({
      product,
      prices: prices.filter((p) => p.product_id === product.id),
    })),
    total,
  }
}

/** A price with its product, for orders and subscriptions; a missing one is a 404. */
export async function getPriceWithProduct(
  db: Db,
  scope: Scope,
  priceId: string,
): Promise<{ price: Price; product: Product }> {
  const price = await findPrice(db, scope.environmentId, priceId)
  if (!price) throw notFound('price', priceId)
  const product = await findProduct(db, scope.environmentId, price.product_id)
  if (!product) throw notFound('product', price.product_id)
  return { price, product }
}

function priceRow(scope: Scope, type: ProductType, input: PriceInput, field: string) {
  const currency = normalizeCurrency(input.currency, `${field}.currency`)
  const amount = toMinorUnits(input.amount, currency, `${field}.amount`)
  if (amount < 0n)
    throw validationError(`${field}.amount must not be negative`, { field: `${field}.amount` })
  // A top-up credits the customer's balance with its price: a top-up of nothing credits nothing
  // (the ledger refuses an entry of 0, and the order failed on it).
  if (amount === 0n && type === 'credit_top_up')
    throw validationError(`${field}.amount of a credit top-up must be greater than zero`, {
      field: `${field}.amount`,
    })
  if (type === 'recurring' && !input.interval) {
    throw validationError(`${field}.interval is required for a recurring product`, {
      field: `${field}.interval`,
    })
  }
  if (type !== 'recurring' && (input.interval || input.interval_count)) {
    throw validationError(`${field}.interval is only for recurring products`, {
      field: `${field}.interval`,
    })
  }
  return {
    id: newId('price'),
    environment_id: scope.environmentId,
    amount,
    currency,
    interval: input.interval ?? null,
    interval_count: input.interval_count ?? 1,
    active: true,
  }
}
