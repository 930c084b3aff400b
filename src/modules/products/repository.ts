import type { Insertable, Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { Price, PriceTable, Product, ProductTable, ProductType } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertProduct(db: Db, row: Insertable<ProductTable>): Promise<Product> {
  return db.insertInto('products').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function insertPrices(db: Db, rows: Insertable<PriceTable>[]): Promise<Price[]> {
  if (rows.length === 0) return []
  return db.insertInto('prices').values(rows).returningAll().execute()
}

export async function findProduct(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Product | undefined> {
  return db
    .selectFrom('products')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}

export async function lockProduct(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Product | undefined> {
  return db
    .selectFrom('products')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

export async function updateProduct(
  db: Db,
  environmentId: string,
  id: string,
  changes: Updateable<ProductTable>,
): Promise<Product> {
  return db
    .updateTable('products')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

export async function deactivatePrices(
  db: Db,
  productId: string,
  priceIds: string[],
): Promise<number> {
  if (priceIds.length === 0) return 0
  const result = await db
    .updateTable('prices')
    .set({ active: false })
    .where('product_id', '=', productId)
    .where('id', 'in', priceIds)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

export async function pricesOf(db: Db, productIds: string[]): Promise<Price[]> {
  if (productIds.length === 0) return []
  return (
    db
      .selectFrom('prices')
      .selectAll()
      .where('product_id', 'in', productIds)
      // In the order they were added (`position`), whatever the clocks of the nodes that added them.
      .orderBy('product_id')
      .orderBy('position')
      .execute()
  )
}

export async function findPrice(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Price | undefined> {
  return db
    .selectFrom('prices')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}

export interface ProductFilters {
  type?: ProductType | undefined
  active?: boolean | undefined
}

export async function listProducts(
  db: Db,
  environmentId: string,
  filters: ProductFilters,
  request: ListRequest<'created_at' | 'name'>,
): Promise<{ items: Product[]; total: number }> {
  let query = db.selectFrom('products').selectAll().where('environment_id', '=', environmentId)
  if (filters.type) query = query.where('type', '=', filters.type)
  if (filters.active !== undefined) query = query.where('active', '=', filters.active)
  return fetchPage(query, 'products', request)
}
