import { type Expression, type SelectQueryBuilder, sql } from 'kysely'
import type { ListRequest, TimeRange } from '../http/list-query.ts'
import type { Database } from './database.ts'

/** How a list is paged beyond its request. */
export interface PageOptions<F extends string> {
  /** Counts the total some faster way than `count(*)` over the filtered rows (it must be exact). */
  countTotal?: ((range: TimeRange) => Promise<number>) | undefined
  /**
   * The keys a sort field orders by in place of its column, ties still by id (the invoice
   * list orders `number` by its length, then as text).
   */
  sortKeys?: Partial<Record<F, Expression<unknown>[]>>
}

/**
 * One page of a filtered query and the total it has, in two statements run side by
 * side: the rows (sorted, ties broken by id so pages never overlap) and the count.
 *
 * @example
 * const { items, total } = await fetchPage(db.selectFrom('customers').where(…), 'customers', request)
 */
export async function fetchPage<TB extends keyof Database & string, O, F extends string>(
  filtered: SelectQueryBuilder<Database, TB, O>,
  table: TB,
  request: ListRequest<F>,
  options: PageOptions<F> = {},
): Promise<{ items: O[]; total: number }> {
  const ranged = whereCreatedIn(filtered, `${table}.created_at`, request.created)
  const direction = request.sort.direction
  const keys = options.sortKeys?.[request.sort.field] ?? [sql.ref(`${table}.${request.sort.field}`)]
  let sorted = ranged
  // Plain asc/desc (no NULLS FIRST/LAST) so the order matches the (…, created_at desc, id desc) indexes.
  for (const key of keys) sorted = sorted.orderBy(key, direction)
  sorted = sorted.orderBy(sql.ref(`${table}.id`), direction)
  const [items, count] = await Promise.all([
    sorted.limit(request.page.limit).offset(request.page.offset).execute(),
    options.countTotal
      ? options.countTotal(request.created)
      : ranged
          .clearSelect()
          .select(sql<string>`count(*)`.as('total'))
          .executeTakeFirstOrThrow()
          .then((row) => Number(row.total)),
  ])
  return { items, total: count }
}

export function whereCreatedIn<TB extends keyof Database, O>(
  qb: SelectQueryBuilder<Database, TB, O>,
  column: string,
  range: TimeRange,
): SelectQueryBuilder<Database, TB, O> {
  let out = qb
  if (range.from) out = out.where(sql.ref(column), '>=', range.from)
  if (range.to) out = out.where(sql.ref(column), '<=', range.to)
  return out
}
