import { CompiledQuery, type Insertable } from 'kysely'
import type { Db } from './client.ts'
import type { Database } from './database.ts'

/** Append-only tables whose rows nothing reads back inside the transaction that writes them. */
export type AppendOnlyTable = 'events' | 'payment_transitions'

type PendingRows = { [T in AppendOnlyTable]: Insertable<Database[T]>[] }

const pending = new WeakMap<Db, PendingRows>()
const memos = new WeakMap<Db, Map<MemoKey<unknown>, Map<string, unknown>>>()

/** Names one kind of fact a transaction may remember about the rows it wrote. */
export class MemoKey<V> {
  declare readonly value: V
  constructor(readonly name: string) {}
}

/**
 * Runs `run` in one transaction. Rows appended with `appendRows` (history entries,
 * outbox events) are held back and written just before the commit in a single
 * statement, so a state change costs one round trip for its log rows however many
 * it writes. An error rolls everything back, held rows included.
 *
 * @example
 * await inTransaction(db, async (trx) => {
 *   await updatePayment(trx, id, changes)
 *   await appendRows(trx, 'payment_transitions', [transition])
 * })
 */
export function inTransaction<T>(db: Db, run: (trx: Db) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    const rows: PendingRows = { events: [], payment_transitions: [] }
    pending.set(trx, rows)
    memos.set(trx, new Map())
    try {
      const result = await run(trx)
      await writeRows(trx, rows)
      return result
    } finally {
      pending.delete(trx)
      memos.delete(trx)
    }
  })
}

/**
 * Appends rows to an append-only table: held until the commit when `db` is a
 * transaction opened by `inTransaction`, written at once otherwise.
 */
export async function appendRows<T extends AppendOnlyTable>(
  db: Db,
  table: T,
  rows: Insertable<Database[T]>[],
): Promise<void> {
  if (rows.length === 0) return
  const held = pending.get(db)
  if (held) {
    const list: Insertable<Database[T]>[] = held[table]
    list.push(...rows)
    return
  }
  await db.insertInto(table).values(rows).execute()
}

/**
 * Remembers `value` for `id` until the transaction `db` ends. Only for facts no
 * other transaction can change meanwhile, such as the children of a row this
 * transaction inserted (invisible to others until it commits). A no-op outside
 * a transaction opened by `inTransaction`.
 */
export function remember<V>(db: Db, key: MemoKey<V>, id: string, value: V): void {
  const memo = memos.get(db)
  if (!memo) return
  let values = memo.get(key)
  if (!values) {
    values = new Map()
    memo.set(key, values)
  }
  values.set(id, value)
}

/** What `remember` stored for `id` in this transaction, if anything. */
export function recall<V>(db: Db, key: MemoKey<V>, id: string): V | undefined {
  return memos.get(db)?.get(key)?.get(id) as V | undefined
}

/** Writes every held row in one statement: the inserts chained as data-modifying CTEs. */
async function writeRows(trx: Db, rows: PendingRows): Promise<void> {
  const inserts: CompiledQuery[] = []
  if (rows.payment_transitions.length > 0)
    inserts.push(trx.insertInto('payment_transitions').values(rows.payment_transitions).compile())
  if (rows.events.length > 0) inserts.push(trx.insertInto('events').values(rows.events).compile())
  rows.payment_transitions = []
  rows.events = []
  const last = inserts.pop()
  if (!last) return
  if (inserts.length === 0) {
    await trx.executeQuery(last)
    return
  }
  const parameters: unknown[] = []
  const renumber = (query: CompiledQuery) => {
    const offset = parameters.length
    parameters.push(...query.parameters)
    // Kysely's compiled inserts hold only quoted identifiers and $n placeholders.
    return query.sql.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`)
  }
  const ctes = inserts.map((query, index) => `w${index} as (${renumber(query)})`)
  await trx.executeQuery(CompiledQuery.raw(`with ${ctes.join(', ')} ${renumber(last)}`, parameters))
}
