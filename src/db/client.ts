import { createHash } from 'node:crypto'
import {
  type CompiledQuery,
  Kysely,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
  sql,
} from 'kysely'
import pg from 'pg'
import pgUtils from 'pg/lib/utils.js'
import { serialize } from 'pg-protocol'
import type { Database } from './database.ts'
import { BIND_TRANSACTION, heldBefore, TAKEN_WITH_COMMIT, WITH_COMMIT } from './transaction.ts'

export type Db = Kysely<Database>

export interface DbClient {
  db: Db
  /**
   * The same database on a few connections of their own that plan every prepared
   * statement once, for any values (`plan_cache_mode=force_generic_plan`). Only for
   * statements whose best plan does not depend on their values: PostgreSQL then skips
   * planning them on every execution, which for a large statement costs more than
   * running it.
   */
  genericPlans: Db
  pool: pg.Pool
  /** Ends the pool; safe to call twice. */
  close(): Promise<void>
}

export interface DbClientOptions {
  max?: number
  onError?: (error: Error) => void
}

const INT8_OID = 20

/**
 * `bigint` columns hold money in minor units: read them as JS bigints, not strings
 * or (lossy) numbers. Scoped to Payrail's pools so graphile-worker's own pool keeps
 * the pg defaults it expects.
 */
const payrailTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => BigInt(value)
    return pg.types.getTypeParser(oid, format)
  },
} as pg.CustomTypesConfig

/** Connections of `genericPlans`: at most this many run such statements at once. */
const GENERIC_PLAN_CONNECTIONS = 4

export function createDbClient(connectionString: string, options: DbClientOptions = {}): DbClient {
  const connect = (max: number, setup?: string) => {
    const pool = new pg.Pool({
      connectionString,
      max,
      types: payrailTypes,
      application_name: 'payrail',
    })
    // An idle client whose server went away must not crash the process.
    pool.on('error', (error) => options.onError?.(error))
    // A `SET` on each new connection, queued before anything else it runs (not a startup
    // parameter, which poolers such as PgBouncer refuse). One that fails only costs the setting.
    if (setup) {
      pool.on('connect', (client) => {
        client.query(setup).catch((error: Error) => options.onError?.(error))
      })
    }
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparingPool(pool) }) })
    return { pool, db }
  }
  const main = connect(options.max ?? 20)
  // pg opens connections on demand: a process that never runs such a statement opens none.
  const generic = connect(GENERIC_PLAN_CONNECTIONS, 'set plan_cache_mode = force_generic_plan')
  let closed: Promise<void> | undefined
  return {
    db: main.db,
    genericPlans: generic.db,
    pool: main.pool,
    close() {
      closed ??= Promise.all([main.db.destroy(), generic.db.destroy()]).then(() => undefined)
      return closed
    },
  }
}

/** How many distinct statements a process prepares; later ones run unnamed (bounded server memory). */
const MAX_PREPARED = 300
const prepared = new Map<string, string>()
/** Statements PostgreSQL refused to run prepared (a table changed under them): never prepared again. */
const unpreparable = new Set<string>()

/**
 * Kysely's queries as named prepared statements: PostgreSQL parses and plans each
 * statement once per connection instead of on every execution, which is about
 * half of what a short statement costs it. The name is derived from the text, so
 * every connection shares it; texts past `MAX_PREPARED` distinct ones run unnamed.
 *
 * A transaction's `begin` is not sent on its own: it goes with the transaction's
 * first statement, in one message to PostgreSQL (a pipeline). Its last statement, when
 * `inTransaction` hands it over as `WITH_COMMIT`, goes with the `commit` the same way.
 * A transaction of three statements is then three round trips, not five. Nothing
 * changes for PostgreSQL: a transaction's snapshot is taken by its first statement,
 * not by `begin`, and a statement that fails in the pipeline skips what follows it
 * (the commit included) and leaves the transaction aborted, to be rolled back.
 */
function preparingPool(pool: pg.Pool): PostgresPool {
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect()
      /** A `begin` was asked for and not yet sent: it goes with the next statement. */
      let owesBegin = false
      /** The transaction's last statement, to be sent with its `commit`. */
      let last: CompiledQuery | undefined
      const run = async <R>(text: string, values: ReadonlyArray<unknown>, commit = false) => {
        const pipeline = owesBegin || commit ? { begin: owesBegin, commit } : undefined
        owesBegin = false
        const name = statementName(text)
        if (!name && !pipeline) return asResult<R>(await client.query(text, [...values]))
        try {
          return asResult<R>(await runPrepared(client, name, text, values, pipeline))
        } catch (error) {
          // 0A000 "cached plan must not change result type": a migration altered a table
          // this connection had prepared a statement on. Outside a transaction, run it plainly.
          if (!(name && error instanceof Error && 'code' in error && error.code === '0A000')) {
            throw error
          }
          unpreparable.add(text)
          return asResult<R>(await client.query(text, [...values]))
        }
      }
      /** The `inTransaction` this connection runs, from its `BIND_TRANSACTION`; until it is released. */
      let transaction: unknown
      // Updates the transaction held back go first when this statement could read them.
      const query = <R>(text: string, values: ReadonlyArray<unknown>) => {
        switch (text) {
          case BIND_TRANSACTION:
            transaction = values[0]
            return answer<R>('SELECT')
          case 'begin':
            owesBegin = true
            return answer<R>('BEGIN')
          case WITH_COMMIT:
            last = values[0] as CompiledQuery
            return answer<R>(WITH_COMMIT)
          case 'commit': {
            const final = last
            last = undefined
            // A transaction that sent nothing has nothing to commit.
            if (!final && owesBegin) {
              owesBegin = false
              return answer<R>('COMMIT')
            }
            if (!final) return run<R>(text, [])
            return run(final.sql, final.parameters, true).then(() => answer<R>('COMMIT'))
          }
          case 'rollback':
            last = undefined
            if (owesBegin) {
              owesBegin = false
              return answer<R>('ROLLBACK')
            }
            return run<R>(text, values)
        }
        const held = transaction === undefined ? undefined : heldBefore(transaction, text)
        if (!held) return run<R>(text, values)
        const first = run(held.sql, held.parameters)
        return first.then(() => run<R>(text, values))
      }
      return {
        query: query as PostgresPoolClient['query'],
        release: () => {
          owesBegin = false
          last = undefined
          client.release()
        },
      }
    },
    end: () => pool.end(),
  }
}

/** The columns of a row description, as node-postgres reads them. */
interface FieldDescription {
  name: string
  dataTypeID: number
  format: string
}

/** The parts of node-postgres's `Result` that `addFields` fills (pg 8). */
interface PgResult {
  fields: FieldDescription[]
  _parsers: unknown[]
  _prebuiltEmptyResultObject: object
  _types: unknown
  addFields(fields: FieldDescription[]): void
}

interface KnownColumns {
  types: unknown
  fields: FieldDescription[]
  parsers: unknown[]
  emptyRow: object
}

/** By statement name, what `addFields` made of its columns the last time; at most one per prepared statement. */
const KNOWN_COLUMNS = new Map<string, KnownColumns>()

/** What a query sends around its own statement, in the same message to PostgreSQL. */
interface Pipeline {
  /** Sent first: the transaction begins with this statement. */
  begin: boolean
  /** Sent last: the transaction commits when this statement succeeds. */
  commit: boolean
}

/** Parse, Bind and Execute of an unnamed statement, for `begin` and `commit` in a pipeline. */
const pipelined = (text: string) =>
  Buffer.concat([serialize.parse({ text }), serialize.bind({}), serialize.execute({})])
const BEGIN_MESSAGES = pipelined('begin')
const COMMIT_MESSAGES = pipelined('commit')

/** The parts of node-postgres's `Connection` a pipelined query writes to (pg 8). */
interface PgConnection {
  stream: { cork(): void; uncork(): void; write(buffer: Buffer): boolean }
  parsedStatements: Record<string, string>
  submittedNamedStatements: Record<string, string>
  parse(query: { text: string; name?: string }): void
  bind(config: object): void
  describe(message: { type: 'P'; name: string }): void
  execute(config: { portal: string }): void
  sync(): void
}

/** The parts of node-postgres's `Query` that `PreparedQuery` sets, calls or overrides (pg 8). */
interface PgQuery {
  name: string | undefined
  text: string
  values: unknown[]
  _result: PgResult
  _accumulateRows: boolean
  _checkForMultirow(): void
  submit(connection: PgConnection): Error | null
  handleError(error: Error, connection: PgConnection): void
  handleCommandComplete(message: unknown, connection: PgConnection): void
  handleRowDescription(message: { fields: FieldDescription[] }): void
}

const PgQuery = pg.Query as unknown as new (
  text: string,
  values: unknown[],
  callback: (error: Error | undefined, result: unknown) => void,
) => PgQuery

/**
 * A statement's query, named (prepared) or not. PostgreSQL describes a statement's
 * columns with every execution, and node-postgres rebuilds their parsers and an empty
 * row from the description every time: for a row of forty columns, more than the rest
 * of reading the answer. One name is one text, so one set of columns, but they are
 * compared with the last ones rather than trusted (a migration may have changed a table).
 *
 * With a `pipeline`, the transaction's `begin` goes before the statement and its
 * `commit` after it, with one Sync: one round trip. Their command tags are not the
 * statement's result, and are skipped.
 */
class PreparedQuery extends PgQuery {
  /** Command tags still to skip before the statement's own (the `begin`'s). */
  private skipBefore: number
  /** Whether the statement's own tag came: any later one is the `commit`'s. */
  private completed = false

  constructor(
    name: string | undefined,
    text: string,
    values: unknown[],
    callback: (error: Error | undefined, result: unknown) => void,
    private readonly pipeline?: Pipeline,
  ) {
    // Text and values apart: node-postgres then copies no config object for the query.
    super(text, values, callback)
    this.name = name
    // Payrail's types for every connection (each client would give the result its own copy).
    this._result._types = payrailTypes
    this.skipBefore = pipeline?.begin ? 1 : 0
  }

  override submit(connection: PgConnection): Error | null {
    if (!this.pipeline) return super.submit(connection)
    const { name, text } = this
    const stream = connection.stream
    stream.cork()
    try {
      // A named statement's Parse goes before the `begin`: node-postgres takes the first
      // ParseComplete of the query for it (it cannot tell whose it is).
      const parse =
        name === undefined ||
        !(name in connection.parsedStatements || name in connection.submittedNamedStatements)
      if (parse && name !== undefined) {
        connection.parse({ text, name })
        connection.submittedNamedStatements[name] = text
      }
      if (this.pipeline.begin) stream.write(BEGIN_MESSAGES)
      // An unnamed one after it: the `begin`'s Parse replaces the unnamed statement.
      if (parse && name === undefined) connection.parse({ text })
      try {
        connection.bind({
          portal: '',
          statement: name,
          values: this.values,
          valueMapper: pgUtils.prepareValue,
        })
      } catch (error) {
        connection.sync()
        this.handleError(error as Error, connection)
        return null
      }
      connection.describe({ type: 'P', name: '' })
      connection.execute({ portal: '' })
      if (this.pipeline.commit) stream.write(COMMIT_MESSAGES)
      connection.sync()
    } finally {
      stream.uncork()
    }
    return null
  }

  override handleCommandComplete(message: unknown, connection: PgConnection): void {
    if (this.skipBefore > 0) {
      this.skipBefore--
      return
    }
    if (this.completed) return
    this.completed = true
    super.handleCommandComplete(message, connection)
  }

  override handleRowDescription(message: { fields: FieldDescription[] }): void {
    this._checkForMultirow()
    const result = this._result
    const known = this.name === undefined ? undefined : KNOWN_COLUMNS.get(this.name)
    if (known && known.types === result._types && sameColumns(known.fields, message.fields)) {
      result.fields = message.fields
      result._parsers = known.parsers
      result._prebuiltEmptyResultObject = known.emptyRow
    } else {
      result.addFields(message.fields)
      if (this.name !== undefined) {
        KNOWN_COLUMNS.set(this.name, {
          types: result._types,
          fields: message.fields,
          parsers: result._parsers,
          emptyRow: result._prebuiltEmptyResultObject,
        })
      }
    }
    // It always has a callback: every row is kept.
    this._accumulateRows = true
  }
}

function sameColumns(a: FieldDescription[], b: FieldDescription[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as FieldDescription
    const y = b[i] as FieldDescription
    if (x.name !== y.name || x.dataTypeID !== y.dataTypeID || x.format !== y.format) return false
  }
  return true
}

function runPrepared(
  client: pg.PoolClient,
  name: string | undefined,
  text: string,
  values: ReadonlyArray<unknown>,
  pipeline?: Pipeline,
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    client.query(
      // A submittable query, as node-postgres's own (its types know only configs and texts).
      new PreparedQuery(
        name,
        text,
        [...values],
        (error, result) => (error ? reject(error) : resolve(result as pg.QueryResult)),
        pipeline,
      ) as unknown as pg.Submittable,
    )
  })
}

function statementName(text: string): string | undefined {
  const known = prepared.get(text)
  if (known) return known
  if (prepared.size >= MAX_PREPARED || unpreparable.has(text)) return undefined
  // Transaction control and other utility statements gain nothing from preparing.
  if (!/^\s*(select|insert|update|delete|with)\b/i.test(text)) return undefined
  const name = `k${createHash('sha1').update(text).digest('base64url').slice(0, 20)}`
  prepared.set(text, name)
  return name
}

/** What a connection answers a statement it took without sending anything. */
function answer<R>(command: string): Promise<PostgresQueryResult<R>> {
  const rows = command === WITH_COMMIT ? [TAKEN_WITH_COMMIT] : []
  return Promise.resolve({ command, rowCount: 0, rows } as unknown as PostgresQueryResult<R>)
}

function asResult<R>(result: pg.QueryResult): PostgresQueryResult<R> {
  return {
    command: result.command as PostgresQueryResult<R>['command'],
    rowCount: result.rowCount ?? 0,
    rows: result.rows,
  }
}

/** True when the database answers a trivial query within `timeoutMs`. */
export async function pingDatabase(db: Db, timeoutMs = 2000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs)
  })
  const ping = sql`select 1`.execute(db).then(
    () => true,
    () => false,
  )
  try {
    return await Promise.race([ping, timeout])
  } finally {
    clearTimeout(timer)
  }
}
