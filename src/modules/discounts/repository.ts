import { type Insertable, sql, type Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { Discount, DiscountRedemptionTable, DiscountTable } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertDiscount(db: Db, row: Insertable<DiscountTable>): Promise<Discount> {
  return db.insertInto('discounts').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findDiscount(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Discount | undefined> {
  return db
    .selectFrom('discounts')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}

export async function findDiscountByCode(
  db: Db,
  environmentId: string,
  code: string,
): Promise<Discount | undefined> {
  return db
    .selectFrom('discounts')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where(sql`lower(code)`, '=', code.toLowerCase())
    .executeTakeFirst()
}

export async function updateDiscount(
  db: Db,
  environmentId: string,
  id: string,
  changes: Updateable<DiscountTable>,
): Promise<Discount | undefined> {
  return db
    .updateTable('discounts')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
}

export async function lockDiscount(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Discount | undefined> {
  return db
    .selectFrom('discounts')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

/**
 * Takes one use of the discount if it is still redeemable at `at`, in one statement:
 * two requests racing for the last use queue on the row and only one gets it.
 */
export async function takeRedemption(db: Db, id: string, at: Date): Promise<Discount | undefined> {
  return db
    .updateTable('discounts')
    .set({ times_redeemed: sql<number>`times_redeemed + 1`, updated_at: at })
    .where('id', '=', id)
    .where('active', '=', true)
    .where((eb) =>
      eb.or([
        eb('max_redemptions', 'is', null),
        eb('times_redeemed', '<', eb.ref('max_redemptions')),
      ]),
    )
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
    .returningAll()
    .executeTakeFirst()
}

export async function insertRedemption(
  db: Db,
  row: Insertable<DiscountRedemptionTable>,
): Promise<void> {
  await db.insertInto('discount_redemptions').values(row).execute()
}

export interface DiscountFilters {
  active?: boolean | undefined
  code?: string | undefined
}

export async function listDiscounts(
  db: Db,
  environmentId: string,
  filters: DiscountFilters,
  request: ListRequest<'created_at' | 'code'>,
): Promise<{ items: Discount[]; total: number }> {
  let query = db.selectFrom('discounts').selectAll().where('environment_id', '=', environmentId)
  if (filters.active !== undefined) query = query.where('active', '=', filters.active)
  if (filters.code) query = query.where(sql`lower(code)`, '=', filters.code.toLowerCase())
  return fetchPage(query, 'discounts', request)
}
