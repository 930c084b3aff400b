import { createHash } from 'node:crypto'
import {
  CompiledQuery,
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
import {
  BIND_TRANSACTION,
  heldBefore,
  readAheadsAfter,
  TAKEN_WITH_COMMIT,
  WITH_COMMIT,
} from './transaction.ts'

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
  /** A connection failed outside a statement's answer (idle in the pool, or checked out). */
  onError?: (error: Error) => void
  /**
   * A pooler in transaction mode (PgBouncer's `pool_mode = transaction`) stands between
   * Payrail and PostgreSQL: each transaction may run on another server session, which
   * the pooler prepares statements on afresh. A statement's columns are then described
   * with every execution (`DESCRIBED`): a fresh prepare after a migration answers the new
   * columns without the error a session's own prepared statement would raise.
   */
  transactionPooler?: boolean
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
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({
        pool: preparingPool(pool, options.onError, !options.transactionPooler),
      }),
    })
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
 * Statements that must run one after the other but need nothing from each other's
 * answers go in one message to PostgreSQL (a pipeline of the extended protocol: their
 * Parse, Bind and Execute messages, then one Sync), one round trip for all:
 *
 * - a transaction's `begin` goes with its first statement;
 * - its last statement, when `inTransaction` hands it over as `WITH_COMMIT`, goes with
 *   the `commit`;
 * - held writes (`heldBefore`) go with the statement that must follow them;
 * - read-aheads (`readAhead`) go after the transaction's next statement.
 *
 * Nothing changes for PostgreSQL: each statement still runs on its own snapshot, in
 * order (a transaction's snapshot is taken by its first statement, not by `begin`),
 * and a statement that fails skips the rest of its pipeline, the `commit` included,
 * leaving the transaction aborted until the `rollback` Kysely then sends.
 */
function preparingPool(
  pool: pg.Pool,
  onError: ((error: Error) => void) | undefined,
  describeOnce: boolean,
): PostgresPool {
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect()
      // A connection that dies while checked out (the server restarted, a backend was
      // terminated) emits `error` besides failing its statement: with no listener, that
      // would be an uncaught exception. The pool listens while it is idle.
      const reportError = (error: Error) => onError?.(error)
      client.on('error', reportError)
      /** A `begin` was asked for and not yet sent: it goes with the next statement. */
      let owesBegin = false
      /** The transaction's last statement, to be sent with its `commit`. */
      let last: CompiledQuery | undefined
      /** The `inTransaction` this connection runs, from its `BIND_TRANSACTION`; until it is released. */
      let transaction: unknown
      /** Between `begin` and its `commit` or `rollback`. */
      let open = false
      /**
       * The first error of a statement of the open transaction. Its `commit` is then
       * refused with that error, and the transaction rolled back: PostgreSQL would answer
       * the `commit` of a transaction a statement failed in with a silent `ROLLBACK`, and
       * a statement that failed before it was sent (a value that cannot be sent) would
       * leave the transaction open without the held writes it carried. A caller that
       * catches a statement's error inside a transaction cannot commit what is left.
       */
      let failure: Error | undefined
      /** A refused commit rolled the transaction back: Kysely's `rollback` after it is answered here. */
      let refused = false
      /** The connection's state is not known (a rollback failed): it is destroyed on release. */
      let broken: Error | undefined
      /**
       * `query` in one round trip: after the held writes that must go before it and the
       * owed `begin`, before the `commit` when asked, and with the transaction's
       * read-aheads after it (never after the `commit`).
       */
      const send = <R>(query: CompiledQuery, commit = false) => {
        const aheads = transaction === undefined || commit ? [] : readAheadsAfter(transaction)
        // Held updates go first when any statement of the message names their table, a read-ahead too.
        const named =
          aheads.length === 0
            ? query.sql
            : [query.sql, ...aheads.map((a) => a.query.sql)].join('\n')
        const held = transaction === undefined ? undefined : heldBefore(transaction, named)
        const statements = held
          ? [...held.map(statementOf), statementOf(query)]
          : [statementOf(query)]
        const mine = statements.length - 1
        for (const ahead of aheads) statements.push(statementOf(ahead.query))
        const begin = owesBegin
        owesBegin = false
        const results = runStatements(client, statements, { begin, commit, describeOnce }, open)
        if (open) {
          results.catch((error: Error) => {
            failure ??= error
          })
        }
        if (aheads.length > 0) {
          results.then(
            (answers) => {
              aheads.forEach((ahead, i) => {
                ahead.settle(undefined, (answers[mine + 1 + i] as pg.QueryResult).rows)
              })
            },
            (error: Error) => {
              for (const ahead of aheads) ahead.settle(error, [])
            },
          )
        }
        return results.then((answers) => asResult<R>(answers[mine] as pg.QueryResult))
      }
      const query = <R>(text: string, values: ReadonlyArray<unknown>) => {
        switch (text) {
          case BIND_TRANSACTION:
            transaction = values[0]
            return answer<R>('SELECT')
          case 'begin':
            owesBegin = true
            open = true
            refused = false
            failure = undefined
            return answer<R>('BEGIN')
          case WITH_COMMIT:
            last = values[0] as CompiledQuery
            return answer<R>(WITH_COMMIT)
          case 'commit': {
            const final = last
            last = undefined
            if (failure) return refuseCommit<R>(failure)
            // A transaction that sent nothing has nothing to commit.
            if (!final && owesBegin) {
              owesBegin = false
              open = false
              return answer<R>('COMMIT')
            }
            // Open until the commit succeeds: a commit that fails (its held writes) leaves
            // the transaction for the `rollback` Kysely sends next.
            const committed = final
              ? send(final, true).then(() => answer<R>('COMMIT'))
              : client.query(text).then((result) => {
                  // A statement that failed while the commit was on its way (one sent
                  // without waiting for it): PostgreSQL rolled the transaction back.
                  if (result.command === 'ROLLBACK') {
                    throw (
                      failure ??
                      new Error('The transaction was rolled back: a statement of it failed')
                    )
                  }
                  return asResult<R>(result)
                })
            return committed.then((result) => {
              open = false
              return result
            })
          }
          case 'rollback':
            last = undefined
            failure = undefined
            open = false
            // A refused commit rolled the transaction back already.
            if (refused) {
              refused = false
              return answer<R>('ROLLBACK')
            }
            if (owesBegin) {
              owesBegin = false
              return answer<R>('ROLLBACK')
            }
            // A connection whose rollback failed is in a state nobody knows: destroyed on release.
            return client.query(text).then(
              (result) => asResult<R>(result),
              (error: Error) => {
                broken = error
                throw error
              },
            )
        }
        // Kysely's `begin` with an isolation level or access mode.
        if (/^start transaction\b/i.test(text)) {
          open = true
          failure = undefined
        }
        return send<R>(CompiledQuery.raw(text, [...values]))
      }
      /** The commit of a transaction a statement failed in: rolled back, and failed with that statement's error. */
      const refuseCommit = <R>(error: Error): Promise<PostgresQueryResult<R>> => {
        failure = undefined
        open = false
        refused = true
        const sent = owesBegin
          ? Promise.resolve()
          : client.query('rollback').then(
              () => undefined,
              (rollbackError: Error) => {
                broken = rollbackError
              },
            )
        owesBegin = false
        return sent.then(() => {
          throw error
        })
      }
      return {
        query: query as PostgresPoolClient['query'],
        release: () => {
          owesBegin = false
          open = false
          refused = false
          failure = undefined
          last = undefined
          client.off('error', reportError)
          // A connection whose rollback failed is not given to anyone else.
          client.release(broken)
          broken = undefined
        },
      }
    },
    end: () => pool.end(),
  }
}

/**
 * Runs `statements` in one round trip (with the transaction's `begin` before them and
 * its `commit` after, when asked). A lone statement with neither that PostgreSQL
 * refuses to run prepared (0A000 "cached plan must not change result type": a
 * migration altered a table this connection had prepared it on) runs again unnamed,
 * and is never prepared again.
 */
async function runStatements(
  client: pg.PoolClient,
  statements: Statement[],
  pipeline: Pipeline,
  inTransactionBlock = false,
): Promise<pg.QueryResult[]> {
  const alone = statements.length === 1 && !pipeline.begin && !pipeline.commit
  const only = statements[0]
  if (alone && only && only.name === undefined) return [await client.query(only.text, only.values)]
  try {
    return await new Promise((resolve, reject) => {
      client.query(
        // A submittable query, as node-postgres's own (its types know only configs and texts).
        new PipelineQuery(statements, pipeline, (error, results) =>
          error ? reject(error) : resolve(results),
        ) as unknown as pg.Submittable,
      )
    })
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && error.code === '0A000')) throw error
    for (const statement of statements) if (statement.name) unpreparable.add(statement.text)
    // In a transaction, PostgreSQL has aborted it: a retry could only fail (25P02).
    if (!(alone && only) || inTransactionBlock) throw error
    return [await client.query(only.text, only.values)]
  }
}

/** A statement as a pipeline sends it: named when it is prepared. */
interface Statement {
  name: string | undefined
  text: string
  values: unknown[]
}

function statementOf(query: CompiledQuery): Statement {
  return { name: statementName(query.sql), text: query.sql, values: query.parameters as unknown[] }
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

/** What a pipeline sends around its statements, in the same message to PostgreSQL. */
interface Pipeline {
  /** Sent first: the transaction begins with these statements. */
  begin: boolean
  /** Sent last: the transaction commits when these statements succeed. */
  commit: boolean
  /** Whether a named statement is described only the first time on a connection (`DESCRIBED`). */
  describeOnce: boolean
}

/** Parse, Bind and Execute of an unnamed statement, for `begin` and `commit` in a pipeline. */
const pipelined = (text: string) =>
  Buffer.concat([serialize.parse({ text }), serialize.bind({}), serialize.execute({})])
const BEGIN_MESSAGES = pipelined('begin')
const COMMIT_MESSAGES = pipelined('commit')
/** Execute of the unnamed portal, after each statement's Bind. */
const EXECUTE = serialize.execute({ portal: '' })
/** Describe and Execute of the unnamed portal: a statement whose columns this connection has not described yet. */
const DESCRIBE_EXECUTE = Buffer.concat([serialize.describe({ type: 'P', name: '' }), EXECUTE])

/** The parts of node-postgres's `Connection` a pipeline writes to (pg 8). */
interface PgConnection {
  stream: { cork(): void; uncork(): void; write(buffer: Buffer): boolean }
  parsedStatements: Record<string, string>
  submittedNamedStatements: Record<string, string>
  parse(query: { text: string; name?: string }): void
  close(message: { type: 'S'; name: string }): void
  sync(): void
}

/** The parts of node-postgres's `Query` that `PipelineQuery` sets, calls or overrides (pg 8). */
interface PgQuery {
  _result: PgResult
  _accumulateRows: boolean
  _canceledDueToError: unknown
  submit(connection: PgConnection): Error | null
  handleError(error: Error, connection: PgConnection): void
  handleCommandComplete(message: unknown, connection: PgConnection): void
  handleRowDescription(message: { fields: FieldDescription[] }): void
  handleReadyForQuery(connection: PgConnection): void
}

const PgQuery = pg.Query as unknown as new (
  text: string,
  values: unknown[],
  callback: (error: Error | undefined, result: unknown) => void,
) => PgQuery

const PgResultClass = (
  pg as unknown as { Result: new (rowMode: unknown, types: unknown) => PgResult }
).Result

/**
 * Per connection, statement names a failed pipeline sent a Parse for: whether
 * PostgreSQL parsed them is not known, so the next Parse of one is preceded by a
 * Close (which does nothing for a name that does not exist).
 */
const UNCERTAIN = new WeakMap<PgConnection, Set<string>>()

/**
 * Per connection, the columns of the named statements it has described since it last
 * parsed them. A prepared statement's columns cannot change under it: PostgreSQL
 * refuses to run one whose result changed (0A000, "cached plan must not change result
 * type"), and such a statement then runs unnamed (`statementName`). So from its second
 * execution on a connection, a statement is sent without a Describe: PostgreSQL sends
 * no row description with it, and nothing has to read one.
 *
 * That holds while a connection is one server session. Behind a pooler in transaction
 * mode it is not (`DbClientOptions.transactionPooler`): the pooler prepares the statement
 * afresh on whichever session runs the transaction, and after a migration that fresh
 * statement answers its new columns without an error. There every execution is described.
 */
const DESCRIBED = new WeakMap<PgConnection, Map<string, KnownColumns | typeof NO_COLUMNS>>()

/** A described statement that returns no rows (an insert or update without `returning`: PostgreSQL answered NoData). */
const NO_COLUMNS = 'none'

/**
 * Statements in one round trip (`preparingPool`), each with a result of its own.
 * node-postgres tracks the Parse of a named query by the query's name, one per
 * query; this query has none, and keeps the connection's records of its statements'
 * names itself.
 *
 * A statement's columns are described the first time a connection runs it
 * (`DESCRIBED`). node-postgres would rebuild their parsers and an empty row from each
 * description: for a row of forty columns, more than the rest of reading the answer.
 * One name is one text, so one set of columns, but a description that comes is
 * compared with the last one rather than trusted (a migration may have changed a
 * table), and what was made of the last one is reused when they match.
 */
class PipelineQuery extends PgQuery {
  private readonly results: PgResult[]
  /** The statement whose answer comes next. */
  private current = 0
  /** Whether the `begin`'s command tag is still to come (and to skip). */
  private beginOwed: boolean
  /** The names this query sent a Parse for. */
  private readonly parsing: string[] = []
  /** Whether `done` was called: an error can come before the ReadyForQuery that follows it. */
  private finished = false
  /** This connection's described statements (`DESCRIBED`), once submitted. */
  private described: Map<string, KnownColumns | typeof NO_COLUMNS> | undefined
  /** Per statement, whether a Describe went with it. */
  private readonly describing: boolean[] = []
  /** Whether the current statement's row description came. */
  private columnsCame = false

  constructor(
    private readonly statements: Statement[],
    private readonly pipeline: Pipeline,
    done: (error: Error | undefined, results: pg.QueryResult[]) => void,
  ) {
    super(statements[0]?.text ?? '', [], (error) => {
      if (error) this.finish(error)
    })
    this.done = done
    // Payrail's types for every connection (each client would give the result its own copy).
    this.results = statements.map(() => new PgResultClass(undefined, payrailTypes))
    this._result = this.results[0] as PgResult
    this.beginOwed = pipeline.begin
    // It always has a callback: every row is kept, described or not.
    this._accumulateRows = true
  }

  override submit(connection: PgConnection): Error | null {
    // Every Bind first, as a value that cannot be sent fails it: then nothing is sent
    // but the `begin` (the transaction stays begun, as the caller believes it is).
    const binds: Buffer[] = []
    try {
      for (const { name, values } of this.statements) {
        binds.push(
          serialize.bind({
            portal: '',
            statement: name,
            values,
            valueMapper: pgUtils.prepareValue,
          }),
        )
      }
    } catch (error) {
      if (this.pipeline.begin) connection.stream.write(BEGIN_MESSAGES)
      this.pipeline.begin = false
      this.beginOwed = false
      connection.sync()
      this.handleError(error as Error, connection)
      return null
    }
    const { stream } = connection
    // Without `describeOnce`, this query's own: nothing is kept past its one round trip.
    let described = this.pipeline.describeOnce ? DESCRIBED.get(connection) : undefined
    if (!described) {
      described = new Map()
      if (this.pipeline.describeOnce) DESCRIBED.set(connection, described)
    }
    this.described = described
    stream.cork()
    try {
      // The `begin` before everything: a Parse that fails skips the rest of the message,
      // and a skipped `begin` would leave the statements that follow it in later messages
      // to commit one by one. The `begin` runs its unnamed statement at once.
      if (this.pipeline.begin) stream.write(BEGIN_MESSAGES)
      // Named statements' Parse next: an unnamed statement's would replace the unnamed
      // statement, so those go just before their Bind.
      const uncertain = UNCERTAIN.get(connection)
      for (const { name, text } of this.statements) {
        if (name === undefined) continue
        if (uncertain?.delete(name)) connection.close({ type: 'S', name })
        else if (name in connection.parsedStatements || name in connection.submittedNamedStatements)
          continue
        described.delete(name)
        connection.parse({ text, name })
        connection.submittedNamedStatements[name] = text
        this.parsing.push(name)
      }
      this.statements.forEach(({ name, text }, index) => {
        if (name === undefined) connection.parse({ text })
        stream.write(binds[index] as Buffer)
        const known = name === undefined ? undefined : described.get(name)
        this.describing.push(known === undefined)
        if (known === undefined) stream.write(DESCRIBE_EXECUTE)
        else {
          if (known !== NO_COLUMNS) usingColumns(this.results[index] as PgResult, known)
          stream.write(EXECUTE)
        }
      })
      if (this.pipeline.commit) stream.write(COMMIT_MESSAGES)
      connection.sync()
    } finally {
      stream.uncork()
    }
    return null
  }

  override handleRowDescription(message: { fields: FieldDescription[] }): void {
    this.columnsCame = true
    const result = this._result
    const name = this.statements[this.current]?.name
    const known = name === undefined ? undefined : KNOWN_COLUMNS.get(name)
    if (known && known.types === result._types && sameColumns(known.fields, message.fields)) {
      usingColumns(result, known)
      if (name !== undefined) this.described?.set(name, known)
    } else {
      result.addFields(message.fields)
      if (name !== undefined) {
        const columns = {
          types: result._types,
          fields: message.fields,
          parsers: result._parsers,
          emptyRow: result._prebuiltEmptyResultObject,
        }
        KNOWN_COLUMNS.set(name, columns)
        this.described?.set(name, columns)
      }
    }
  }

  override handleCommandComplete(message: unknown, connection: PgConnection): void {
    if (this.beginOwed) {
      this.beginOwed = false
      return
    }
    // After the last statement's, only the `commit`'s.
    if (this.current >= this.statements.length) return
    // Described, and no row description came: PostgreSQL answered NoData.
    const name = this.statements[this.current]?.name
    if (name !== undefined && this.describing[this.current] && !this.columnsCame)
      this.described?.set(name, NO_COLUMNS)
    this.columnsCame = false
    super.handleCommandComplete(message, connection)
    this.current++
    const next = this.results[this.current]
    if (next) this._result = next
  }

  override handleReadyForQuery(connection: PgConnection): void {
    if (this._canceledDueToError) {
      super.handleReadyForQuery(connection)
      return
    }
    for (const name of this.parsing) {
      connection.parsedStatements[name] = connection.submittedNamedStatements[name] ?? ''
      delete connection.submittedNamedStatements[name]
    }
    this.finish(undefined)
  }

  private readonly done: (error: Error | undefined, results: pg.QueryResult[]) => void

  private finish(error: Error | undefined): void {
    if (this.finished) return
    this.finished = true
    this.done(error, error ? [] : (this.results as unknown as pg.QueryResult[]))
  }

  override handleError(error: Error, connection: PgConnection): void {
    if (this.parsing.length > 0) {
      const uncertain = UNCERTAIN.get(connection) ?? new Set<string>()
      UNCERTAIN.set(connection, uncertain)
      for (const name of this.parsing) {
        delete connection.submittedNamedStatements[name]
        uncertain.add(name)
      }
      this.parsing.length = 0
    }
    super.handleError(error, connection)
  }
}

/** Gives a result the parsers and empty row made of its statement's columns before. */
function usingColumns(result: PgResult, known: KnownColumns): void {
  result.fields = known.fields
  result._parsers = known.parsers
  result._prebuiltEmptyResultObject = known.emptyRow
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

function statementName(text: string): string | undefined {
  // Refused once (0A000): unnamed from then on, on every connection, in transactions too.
  if (unpreparable.has(text)) return undefined
  const known = prepared.get(text)
  if (known) return known
  if (prepared.size >= MAX_PREPARED) return undefined
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
