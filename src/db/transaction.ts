import { AsyncLocalStorage } from 'node:async_hooks'
import { CompiledQuery, type Insertable, type Updateable } from 'kysely'
import type { Db } from './client.ts'
import type { Database } from './database.ts'
import { isPgError } from './errors.ts'

/** Append-only tables whose rows nothing reads back inside the transaction that writes them. */
export type AppendOnlyTable = 'events' | 'payment_transitions' | 'webhook_deliveries'

/** Tables whose row updates a transaction may hold back until its next statement on them. */
export type HeldTable =
  | 'payments'
  | 'invoices'
  | 'payment_allocations'
  | 'payment_attempts'
  | 'webhook_events'
  | 'sandbox_sessions'

type PendingRows = { [T in AppendOnlyTable]: Insertable<Database[T]>[] }

interface HeldUpdate {
  table: HeldTable
  key: Record<string, string>
  changes: Record<string, unknown>
}

interface HeldInsert {
  table: HeldTable
  row: Record<string, unknown>
}

interface TransactionState {
  ended: boolean
  rows: PendingRows
  /** Rows inserted by this transaction and not yet written, by table and key, in order. */
  inserts: Map<string, HeldInsert>
  /** By table and key, merged: one row is updated at most once per statement. */
  updates: Map<string, HeldUpdate>
  memo: Map<MemoKey<unknown>, Map<string, unknown>>
  /** Statements to send after the transaction's next one, by key (`readAhead`). */
  ahead: Map<string, ReadAhead>
  /** The commit mark this transaction carries (`CommitMark`), if any. */
  mark: CommitMark | undefined
}

/** A statement sent after another, in its round trip, and its answer once it comes. */
export interface ReadAhead {
  query: CompiledQuery
  /** Whether it went (with the statement after which it was to go). */
  sent: boolean
  /** Its rows; rejected when it, or a statement before it in its round trip, failed. */
  rows: Promise<unknown[]>
  settle(error: Error | undefined, rows: unknown[]): void
}

const states = new WeakMap<Db, TransactionState>()
/** For each held table: how a statement names it, and its columns that need care in memory. */
const HELD_TABLES: Record<
  HeldTable,
  { named: RegExp; json: ReadonlySet<string>; timestamps: ReadonlySet<string> }
> = {
  payments: {
    named: /\bpayments\b/i,
    json: new Set(['billing_address', 'metadata', 'gateway_metadata']),
    timestamps: new Set([
      'payment_date',
      'succeeded_at',
      'failed_at',
      'refunded_at',
      'cancelled_at',
      'created_at',
      'updated_at',
    ]),
  },
  invoices: {
    named: /\binvoices\b/i,
    json: new Set(['metadata']),
    timestamps: new Set([
      'due_date',
      'payment_window_ends_at',
      'period_start',
      'period_end',
      'next_payment_attempt',
      'finalized_at',
      'paid_at',
      'voided_at',
      'marked_uncollectible_at',
      'created_at',
      'updated_at',
    ]),
  },
  payment_allocations: {
    named: /\bpayment_allocations\b/i,
    json: new Set([]),
    timestamps: new Set([]),
  },
  payment_attempts: {
    named: /\bpayment_attempts\b/i,
    json: new Set([]),
    timestamps: new Set(['created_at', 'updated_at']),
  },
  webhook_events: {
    named: /\bwebhook_events\b/i,
    json: new Set(['payload']),
    timestamps: new Set(['received_at', 'handled_at']),
  },
  sandbox_sessions: {
    named: /\bsandbox_sessions\b/i,
    json: new Set([]),
    timestamps: new Set(['expires_at', 'created_at', 'updated_at']),
  },
}

/** Names one kind of fact a transaction may remember about the rows it wrote. */
export class MemoKey<V> {
  declare readonly value: V
  constructor(readonly name: string) {}
}

/**
 * Runs `run` in one transaction, with fewer round trips than statements:
 *
 * - Rows appended with `appendRows` (history entries, outbox events) are held back
 *   and written just before the commit.
 * - Updates held with `holdUpdate` wait until the next statement of the transaction
 *   that names their table (which could read them), or the commit, and go with it.
 * - Rows inserted with `holdInsert` wait until the transaction's next statement,
 *   whatever it names, or the commit; a held update of such a row is folded into its
 *   insert, so a row created and moved in one transaction is written once.
 *
 * What is still held at the end goes in one statement, as data-modifying CTEs, sent
 * with the commit in one round trip (as the `begin` is sent with the first statement:
 * `src/db/client.ts`). An error rolls everything back, held writes included; one from
 * the held writes comes from the commit.
 *
 * @example
 * await inTransaction(db, async (trx) => {
 *   await updatePayment(trx, id, changes)
 *   await appendRows(trx, 'payment_transitions', [transition])
 * })
 */
export async function inTransaction<T>(db: Db, run: (trx: Db) => Promise<T>): Promise<T> {
  const found = openMarks > 0 ? commitMarks.getStore() : undefined
  const mark = found && !found.ended && !found.committed ? found : undefined
  if (!mark) return transaction(db, run, undefined)
  try {
    const result = await transaction(db, run, mark)
    mark.committed = true
    return result
  } catch (error) {
    throw isPgError(error, MARK_FOUND_NO_ROW) ? mark.lost() : error
  }
}

function transaction<T>(
  db: Db,
  run: (trx: Db) => Promise<T>,
  mark: CommitMark | undefined,
): Promise<T> {
  const state: TransactionState = {
    ended: false,
    rows: { events: [], payment_transitions: [], webhook_deliveries: [] },
    inserts: new Map(),
    updates: new Map(),
    memo: new Map(),
    ahead: new Map(),
    mark,
  }
  return db.transaction().execute(async (trx) => {
    states.set(trx, state)
    try {
      // Tells the connection the transaction runs on (client.ts) whose held writes it carries.
      await trx.executeQuery(CompiledQuery.raw(BIND_TRANSACTION, [state]))
      const result = await run(trx)
      const held = takeHeld(state, true)
      const last = held.pop()
      // More values than one statement carries: the others first, each in its round trip.
      for (const first of held) await trx.executeQuery(first)
      // Handed to the connection, to go with the commit in one round trip (client.ts).
      if (last) {
        const taken = await trx.executeQuery(CompiledQuery.raw(WITH_COMMIT, [last]))
        if (taken.rows[0] !== TAKEN_WITH_COMMIT) await trx.executeQuery(last)
      }
      return result
    } finally {
      state.ended = true
      state.inserts.clear()
      state.updates.clear()
      state.ahead.clear()
      states.delete(trx)
    }
  })
}

/**
 * An update of one row that the transactions (of `inTransaction`) started in its scope
 * carry with their commit, until one of them has committed: how a keyed request's work
 * marks its `Idempotency-Key` record applied in the same commit as the work itself
 * (`src/http/idempotency.ts`), without every service passing the key down.
 *
 * The row is found by `where`, which may also say what the row must still hold (a
 * fence: the request's claim still its own). When no row matches, the commit fails:
 * the transaction rolls back, and `inTransaction` throws `lost()`.
 *
 * The scope is an `AsyncLocalStorage`'s, entered with `enter` and left with `end`.
 * Its hooks tax every promise of the process while they are on, so they are on only
 * while a mark is open: a process serving requests without marks pays nothing.
 */
export class CommitMark {
  /** Whether a transaction carrying it has committed (the later ones need not carry it). */
  committed = false
  ended = false
  private entered = false

  constructor(
    readonly table: keyof Database,
    /** Column values the row must have (plain values: its key, and the fence). */
    readonly where: Record<string, unknown>,
    /** The update, made for each transaction that carries it (plain values). */
    readonly changes: () => Record<string, unknown>,
    /** The error a transaction fails with when no row matches `where` at its commit. */
    readonly lost: () => Error,
  ) {
    // Without a condition, its update would update every row of its table.
    if (Object.keys(where).length === 0) throw new Error(`A commit mark of ${table} needs its row`)
  }

  /** Runs `run`, and everything it starts, in the mark's scope. Once. */
  enter(run: () => void): void {
    if (this.entered) throw new Error('A commit mark is entered once')
    this.entered = true
    openMarks++
    commitMarks.run(this, run)
  }

  /** Leaves the scope: what runs after (even what started in it) carries the mark no more. */
  end(): void {
    if (!this.entered || this.ended) return
    this.ended = true
    openMarks--
    if (openMarks === 0) commitMarks.disable()
  }
}

/**
 * The SQLSTATE of `payrail_require_row` (migration 0012): the commit mark's update
 * found no row. Raised inside the commit's statement, so the transaction rolls back.
 */
export const MARK_FOUND_NO_ROW = 'PRL01'

const commitMarks = new AsyncLocalStorage<CommitMark>()
/** Marks entered and not yet ended: while none is, the storage is off (no hooks). */
let openMarks = 0

/**
 * Not SQL: the message `inTransaction` sends down its transaction's connection first,
 * with the transaction's state as its one value. The pool's connections
 * (`src/db/client.ts`) keep the state and answer it without a round trip, then ask
 * `heldBefore` before each statement. (A connection knows its transaction this way,
 * rather than through `AsyncLocalStorage`, whose hooks would tax every promise of the
 * process.)
 */
export const BIND_TRANSACTION = '-- payrail: bind this connection to its inTransaction state'

/**
 * Not SQL either: `inTransaction` hands its last statement (the held writes) to its
 * connection with this, as its one value, and the connection sends it with the
 * commit. The connection answers with `TAKEN_WITH_COMMIT` as its one row; any other
 * answer means the statement was not taken, and it runs at once.
 */
export const WITH_COMMIT = '-- payrail: send this statement with the commit'
export const TAKEN_WITH_COMMIT: object = Object.freeze({ taken: WITH_COMMIT })

/**
 * For the pool's connections (`src/db/client.ts`), before each statement: the held
 * writes that must go first, when `transaction` (the state `BIND_TRANSACTION` gave the
 * connection) is still running and holds inserts (any statement could read them, or
 * refer to them), or updates of a table `text` names.
 */
export function heldBefore(transaction: unknown, text: string): CompiledQuery[] | undefined {
  const state = transaction as TransactionState
  if (state.ended) return undefined
  if (state.inserts.size > 0) return takeHeld(state, false)
  if (state.updates.size === 0) return undefined
  for (const held of state.updates.values()) {
    if (HELD_TABLES[held.table].named.test(text)) return takeHeld(state, false)
  }
  return undefined
}

/**
 * Sends `query` right after the transaction's next statement, in the same round trip,
 * and keeps its answer for `takeReadAhead(db, key)`: a read the transaction needs
 * later costs no round trip of its own. It runs on a snapshot of its own, taken when
 * the statement before it has finished (after the locks that one waited for). Only for
 * what cannot change between then and its taking (a locked row's children, say), as
 * the caller knows. Outside `inTransaction`, nothing is held: `takeReadAhead` then
 * finds nothing, and its caller reads as it would have.
 */
export function readAhead(db: Db, key: string, query: CompiledQuery): void {
  const state = running(db)
  if (!state) return
  let settle!: ReadAhead['settle']
  const rows = new Promise<unknown[]>((resolve, reject) => {
    settle = (error, answer) => (error ? reject(error) : resolve(answer))
  })
  // A read-ahead no one takes (its transaction failed first) must not be an unhandled rejection.
  rows.catch(() => {})
  state.ahead.set(key, { query, sent: false, rows, settle })
}

/** The row type of a compiled query, for `takeReadAhead`. */
export type RowOf<Q> = Q extends CompiledQuery<infer R> ? R : never

/**
 * The rows of the read-ahead `key`, if it went; undefined if it never did (no statement
 * went after it was asked for), and it is then dropped: the caller reads for itself.
 */
export function takeReadAhead<R>(db: Db, key: string): Promise<R[]> | undefined {
  const state = running(db)
  const ahead = state?.ahead.get(key)
  if (!ahead) return undefined
  state?.ahead.delete(key)
  return ahead.sent ? (ahead.rows as Promise<R[]>) : undefined
}

/**
 * For the pool's connections (`src/db/client.ts`), when they send a statement of
 * `transaction`: the read-aheads waiting to go after it, marked as gone.
 */
export function readAheadsAfter(transaction: unknown): ReadAhead[] {
  const state = transaction as TransactionState
  if (state.ended || state.ahead.size === 0) return []
  const waiting: ReadAhead[] = []
  for (const ahead of state.ahead.values()) {
    if (ahead.sent) continue
    ahead.sent = true
    waiting.push(ahead)
  }
  return waiting
}

/**
 * Holds an update of one row (`key` its primary key) until the transaction's next
 * statement on its table, or its commit. Returns the changes as the row will read
 * them (JSON given as text parsed, `undefined` left out), for the caller to apply to
 * the row it holds. `undefined`, and nothing held, outside a transaction of
 * `inTransaction`, or when a value is an SQL expression or a timestamp given as
 * text (the row it makes is then only known by reading it): the caller runs it.
 */
export function holdUpdate<T extends HeldTable>(
  db: Db,
  table: T,
  key: Record<string, string>,
  changes: Updateable<Database[T]>,
): Record<string, unknown> | undefined {
  // A held update without a key would update every row of its table.
  if (Object.keys(key).length === 0)
    throw new Error(`A held update of ${table} needs its row's key`)
  const state = running(db)
  if (!state) return undefined
  const plain = plainValues(table, changes)
  if (!plain) return undefined
  const { values, read } = plain
  // Nothing to write (every change `undefined`): the row stays as it is, and nothing is held.
  if (Object.keys(values).length === 0) return read
  const id = heldId(table, key)
  const inserting = state.inserts.get(id)
  if (inserting) {
    Object.assign(inserting.row, values)
    return read
  }
  const held = state.updates.get(id)
  if (held) Object.assign(held.changes, values)
  else state.updates.set(id, { table, key, changes: values })
  return read
}

/**
 * Holds the insert of one row (`key` its primary key) until the transaction's next
 * statement, or its commit (`inTransaction`). Returns the values as the row will read
 * them (JSON given as text parsed, `undefined` left out, columns not given left to the
 * caller, who knows their defaults). `undefined`, and nothing held, outside a
 * transaction of `inTransaction`, or when a value is an SQL expression or a timestamp
 * given as text: the caller writes the row.
 *
 * A constraint the row breaks fails the statement that writes it, or the commit: the
 * whole transaction then rolls back, as it would have had the insert gone at once.
 */
export function holdInsert<T extends HeldTable>(
  db: Db,
  table: T,
  key: Record<string, string>,
  row: Insertable<Database[T]>,
): Record<string, unknown> | undefined {
  const state = running(db)
  if (!state) return undefined
  const plain = plainValues(table, row)
  if (!plain) return undefined
  state.inserts.set(heldId(table, key), { table, row: plain.values })
  return plain.read
}

/** The state of the `inTransaction` transaction `db` is, while it runs; else undefined. */
function running(db: Db): TransactionState | undefined {
  const state = states.get(db)
  return state && !state.ended ? state : undefined
}

function heldId(table: HeldTable, key: Record<string, string>): string {
  return `${table}\u0000${Object.values(key).join('\u0000')}`
}

/**
 * A held write's values (plain values only, `undefined` left out), and the same as the
 * row will read them; `undefined` when one is an SQL expression or a timestamp given as
 * text, which only PostgreSQL can say how the row reads.
 */
function plainValues(
  table: HeldTable,
  given: object,
): { values: Record<string, unknown>; read: Record<string, unknown> } | undefined {
  const { json, timestamps } = HELD_TABLES[table]
  const record = given as Record<string, unknown>
  const values: Record<string, unknown> = {}
  const read: Record<string, unknown> = {}
  for (const column of Object.keys(record)) {
    const value = record[column]
    if (value === undefined) continue
    if (!isPlainValue(value)) return undefined
    if (typeof value === 'string') {
      if (timestamps.has(column)) return undefined
      read[column] = json.has(column) ? JSON.parse(value) : value
    } else {
      read[column] = value
    }
    values[column] = value
  }
  return { values, read }
}

/**
 * Updates the row `id` of `table` (a payments or invoices row): one this transaction
 * holds (remembered under `memo`) is updated in memory and its update held
 * (`holdUpdate`); any other is updated by `write` at once. Either way the row is then
 * remembered as this transaction's, since an update locks it until the transaction ends.
 */
export async function updateHeldRow<R extends object, T extends 'payments' | 'invoices'>(
  db: Db,
  table: T,
  memo: MemoKey<R>,
  id: string,
  changes: Updateable<Database[T]>,
  write: () => Promise<R>,
): Promise<R> {
  const held = recall(db, memo, id)
  const read = held && holdUpdate(db, table, { id }, changes)
  const row: R = held && read ? { ...held, ...read } : await write()
  remember(db, memo, id, row)
  return { ...row }
}

/**
 * Appends rows to an append-only table: held until the commit when `db` is a
 * transaction opened by `inTransaction` (and the rows hold plain values), written
 * at once otherwise.
 */
export async function appendRows<T extends AppendOnlyTable>(
  db: Db,
  table: T,
  rows: Insertable<Database[T]>[],
): Promise<void> {
  if (rows.length === 0) return
  const state = running(db)
  // Rows with an SQL expression among their values go at once, through Kysely. An
  // `undefined` value is a column the row leaves to its default, as in a held insert.
  if (
    state &&
    rows.every((row) => Object.values(row).every((v) => v === undefined || isPlainValue(v)))
  ) {
    const list: Insertable<Database[T]>[] = state.rows[table]
    list.push(...rows)
    return
  }
  await db.insertInto(table).values(rows).execute()
}

/**
 * Remembers `value` for `id` until the transaction `db` ends. Only for facts no
 * other transaction can change meanwhile, such as the children of a row this
 * transaction inserted (invisible to others until it commits) or a row it holds
 * locked. A no-op outside a transaction opened by `inTransaction`.
 */
export function remember<V>(db: Db, key: MemoKey<V>, id: string, value: V): void {
  const memo = states.get(db)?.memo
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
  return states.get(db)?.memo.get(key)?.get(id) as V | undefined
}

function isPlainValue(value: unknown): boolean {
  if (value === null || value instanceof Date) return true
  const type = typeof value
  if (type === 'string' || type === 'number' || type === 'boolean' || type === 'bigint') return true
  // JSON columns: plain objects and arrays; Kysely expressions have `toOperationNode`.
  return type === 'object' && !('toOperationNode' in (value as object))
}

/**
 * PostgreSQL's protocol counts a statement's parameters in 16 bits: held writes of more
 * values than this (a payment of fifty orders in an environment of sixty webhook
 * endpoints holds thousands of deliveries) go in several statements (`splitHeld`).
 */
export const MAX_PARAMETERS = 65_535

/** One held write of `takeHeld`, before its SQL: an insert of rows, an update, the commit mark. */
type HeldWrite =
  | { kind: 'insert'; table: string; rows: Record<string, unknown>[] }
  | {
      kind: 'update'
      table: string
      changes: Record<string, unknown>
      where: Record<string, unknown>
    }
  | {
      kind: 'mark'
      table: string
      changes: Record<string, unknown>
      where: Record<string, unknown>
    }

/**
 * The held inserts and updates (and, at the commit, the appended rows) as one
 * statement, taken out of the state: the writes chained as data-modifying CTEs, the
 * inserts of each table as one multi-row insert. Written directly
 * rather than through Kysely's builders, which cost more than the rest of a held
 * write: every table and column name here comes from Payrail's own code, and the
 * values travel as parameters, exactly as Kysely would send them. More values than one
 * statement may carry go in several, in order, the commit mark's in the last
 * (`splitHeld`); empty when nothing is held.
 */
function takeHeld(state: TransactionState, withRows: boolean): CompiledQuery[] {
  const writes: HeldWrite[] = []
  const inserted = new Map<HeldTable, Record<string, unknown>[]>()
  for (const { table, row } of state.inserts.values()) {
    const rows = inserted.get(table)
    if (rows) rows.push(row)
    else inserted.set(table, [row])
  }
  state.inserts.clear()
  for (const [table, rows] of inserted) writes.push({ kind: 'insert', table, rows })
  for (const { table, key, changes } of state.updates.values())
    writes.push({ kind: 'update', table, changes, where: key })
  state.updates.clear()
  if (withRows) {
    for (const table of ['payment_transitions', 'events', 'webhook_deliveries'] as const) {
      const rows: Record<string, unknown>[] = state.rows[table]
      if (rows.length > 0) writes.push({ kind: 'insert', table, rows })
      state.rows[table] = []
    }
  }
  // The commit mark: its update last, and a check that it found its row, or the commit fails.
  // (Not once another transaction of the scope has committed it: the key is then applied
  // for good, and its record may have been completed since.)
  const mark = withRows && state.mark && !state.mark.committed ? state.mark : undefined
  if (mark)
    writes.push({ kind: 'mark', table: mark.table, changes: mark.changes(), where: mark.where })
  if (writes.length === 0) return []
  const one = heldStatement(writes)
  return one.parameters.length <= MAX_PARAMETERS ? [one] : splitHeld(writes)
}

/** `writes` as one statement: all but the last as data-modifying CTEs. */
function heldStatement(writes: HeldWrite[]): CompiledQuery {
  const parameters: unknown[] = []
  const param = (value: unknown) => placeholder(parameters.push(value))
  let text = ''
  const last = writes.length - 1
  for (let i = 0; i < last; i++)
    text += `${i === 0 ? 'with ' : ', '}w${i} as (${writeSql(writes[i] as HeldWrite, param)})`
  const final = writes[last] as HeldWrite
  const tail =
    final.kind === 'mark'
      ? `${text}${text === '' ? 'with ' : ', '}w${last} as (${writeSql(final, param)}) select payrail_require_row(count(*)) from w${last}`
      : `${text}${text === '' ? '' : ' '}${writeSql(final, param)}`
  return CompiledQuery.raw(tail, parameters)
}

function writeSql(write: HeldWrite, param: (value: unknown) => string): string {
  if (write.kind === 'insert') return insertSql(write.table, write.rows, param)
  const sql = updateSql(write.table, write.changes, write.where, param)
  return write.kind === 'mark' ? `${sql} returning 1` : sql
}

/**
 * Writes of more values than a statement carries, as several statements run in order: each
 * takes whole writes while their values fit, and a table's rows too many for one statement
 * are inserted in slices. Only the values count; a statement's text has no such limit.
 */
function splitHeld(writes: HeldWrite[]): CompiledQuery[] {
  const statements: CompiledQuery[] = []
  let batch: HeldWrite[] = []
  let values = 0
  const flush = () => {
    if (batch.length > 0) statements.push(heldStatement(batch))
    batch = []
    values = 0
  }
  const add = (write: HeldWrite, count: number) => {
    if (values + count > MAX_PARAMETERS) flush()
    batch.push(write)
    values += count
  }
  for (const write of writes) {
    if (write.kind !== 'insert') {
      add(write, Object.keys(write.changes).length + Object.keys(write.where).length)
      continue
    }
    // The rows fill what the statement has room for, then the next.
    let slice: Record<string, unknown>[] = []
    let sliceValues = 0
    for (const row of write.rows) {
      // A row's values: at most its columns (the union's others are `default`, not values).
      const count = Object.keys(row).length
      if (values + sliceValues + count > MAX_PARAMETERS) {
        if (slice.length > 0) add({ ...write, rows: slice }, sliceValues)
        flush()
        slice = []
        sliceValues = 0
      }
      slice.push(row)
      sliceValues += count
    }
    if (slice.length > 0) add({ ...write, rows: slice }, sliceValues)
  }
  flush()
  return statements
}

/** `update … set … where …`, every value a parameter. */
function updateSql(
  table: string,
  changes: Record<string, unknown>,
  where: Record<string, unknown>,
  param: (value: unknown) => string,
): string {
  let sql = `update ${quote(table)} set `
  let first = true
  for (const column of Object.keys(changes)) {
    sql += `${first ? '' : ', '}${quote(column)} = ${param(changes[column])}`
    first = false
  }
  first = true
  for (const column of Object.keys(where)) {
    sql += `${first ? ' where ' : ' and '}${quote(column)} = ${param(where[column])}`
    first = false
  }
  return sql
}

/**
 * A multi-row insert as Kysely writes one: the columns any row sets, in the order
 * they first appear, and `default` where a row leaves one out (or `undefined`).
 * Built by concatenation, without arrays in between: it runs for every held write.
 */
function insertSql(
  table: string,
  rows: Record<string, unknown>[],
  param: (value: unknown) => string,
): string {
  const columns = rows.length === 1 ? setColumns(rows[0] ?? {}) : unionOfColumns(rows)
  let sql = `insert into ${quote(table)} (`
  for (let i = 0; i < columns.length; i++) sql += `${i === 0 ? '' : ', '}${quote(columns[i] ?? '')}`
  sql += ') values '
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] ?? {}
    sql += r === 0 ? '(' : ', ('
    for (let i = 0; i < columns.length; i++) {
      const value = row[columns[i] ?? '']
      sql += `${i === 0 ? '' : ', '}${value === undefined ? 'default' : param(value)}`
    }
    sql += ')'
  }
  return sql
}

/** The columns a row sets (its keys whose values are not `undefined`), in order. */
function setColumns(row: Record<string, unknown>): string[] {
  const columns: string[] = []
  for (const column of Object.keys(row)) if (row[column] !== undefined) columns.push(column)
  return columns
}

/** The columns any of `rows` sets, in the order they first appear. */
function unionOfColumns(rows: Record<string, unknown>[]): string[] {
  const seen = new Set<string>()
  for (const row of rows) for (const column of setColumns(row)) seen.add(column)
  return [...seen]
}

/** `$1`, `$2`, … made once each: a held write has dozens of values, and every write has them. */
const PLACEHOLDERS: string[] = []

function placeholder(index: number): string {
  for (let i = PLACEHOLDERS.length; i <= index; i++) PLACEHOLDERS.push(`$${i}`)
  return PLACEHOLDERS[index] ?? `$${index}`
}

/** Identifiers as quoted once: the same few dozen column names come back with every write. */
const QUOTED = new Map<string, string>()

function quote(identifier: string): string {
  let quoted = QUOTED.get(identifier)
  if (quoted === undefined) {
    quoted = `"${identifier.replaceAll('"', '""')}"`
    // Names come from Payrail's own code, so they are few; the bound is for safety.
    if (QUOTED.size < 1000) QUOTED.set(identifier, quoted)
  }
  return quoted
}
