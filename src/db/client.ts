import { createHash } from 'node:crypto'
import {
  Kysely,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
  sql,
} from 'kysely'
import pg from 'pg'
import type { Database } from './database.ts'
import { BIND_TRANSACTION, heldBefore } from './transaction.ts'

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
 */
function preparingPool(pool: pg.Pool): PostgresPool {
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect()
      const run = async <R>(text: string, values: ReadonlyArray<unknown>) => {
        const name = statementName(text)
        if (!name) return asResult<R>(await client.query(text, [...values]))
        try {
          return asResult<R>(await runPrepared(client, name, text, values))
        } catch (error) {
          // 0A000 "cached plan must not change result type": a migration altered a table
          // this connection had prepared a statement on. Outside a transaction, run it plainly.
          if (!(error instanceof Error && 'code' in error && error.code === '0A000')) throw error
          unpreparable.add(text)
          return asResult<R>(await client.query(text, [...values]))
        }
      }
      /** The `inTransaction` this connection runs, from its `BIND_TRANSACTION`; until it is released. */
      let transaction: unknown
      // Updates the transaction held back go first when this statement could read them.
      const query = <R>(text: string, values: ReadonlyArray<unknown>) => {
        if (text === BIND_TRANSACTION) {
          transaction = values[0]
          return Promise.resolve(asResult<R>(BOUND))
        }
        const held = transaction === undefined ? undefined : heldBefore(transaction, text)
        if (!held) return run<R>(text, values)
        const first = run(held.sql, held.parameters)
        return first.then(() => run<R>(text, values))
      }
      return {
        query: query as PostgresPoolClient['query'],
        release: () => client.release(),
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

/**
 * A named prepared statement's query. PostgreSQL describes a statement's columns with
 * every execution, and node-postgres rebuilds their parsers and an empty row from the
 * description every time: for a row of forty columns, more than the rest of reading
 * the answer. One name is one text, so one set of columns, but they are compared
 * with the last ones rather than trusted (a migration may have changed a table).
 */
class PreparedQuery extends pg.Query {
  constructor(
    name: string,
    text: string,
    values: unknown[],
    callback: (error: Error | undefined, result: unknown) => void,
  ) {
    // Text and values apart: node-postgres then copies no config object for the query.
    super(text, values as never, callback as never)
    const self = this as unknown as { name: string; _result: PgResult }
    self.name = name
    // Payrail's types for every connection (each client would give the result its own copy).
    self._result._types = payrailTypes
  }

  handleRowDescription(message: { fields: FieldDescription[] }): void {
    const self = this as unknown as {
      name: string
      _result: PgResult
      _checkForMultirow(): void
      _accumulateRows: boolean
    }
    self._checkForMultirow()
    const result = self._result
    const known = KNOWN_COLUMNS.get(self.name)
    if (known && known.types === result._types && sameColumns(known.fields, message.fields)) {
      result.fields = message.fields
      result._parsers = known.parsers
      result._prebuiltEmptyResultObject = known.emptyRow
    } else {
      result.addFields(message.fields)
      KNOWN_COLUMNS.set(self.name, {
        types: result._types,
        fields: message.fields,
        parsers: result._parsers,
        emptyRow: result._prebuiltEmptyResultObject,
      })
    }
    // It always has a callback: every row is kept.
    self._accumulateRows = true
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
  name: string,
  text: string,
  values: ReadonlyArray<unknown>,
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    client.query(
      new PreparedQuery(name, text, [...values], (error, result) =>
        error ? reject(error) : resolve(result as pg.QueryResult),
      ),
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

/** What a connection answers `BIND_TRANSACTION` with, sending nothing. */
const BOUND = { command: 'SELECT', rowCount: 0, rows: [] } as unknown as pg.QueryResult

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
