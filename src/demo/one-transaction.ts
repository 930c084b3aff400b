import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely'
import type { Db } from '../db/client.ts'
import type { Database } from '../db/database.ts'
import { WITH_COMMIT } from '../db/transaction.ts'

/**
 * Runs `run` in one database transaction, on one connection, committed only when it
 * returns: whatever it writes through the services, which open transactions of their
 * own (`inTransaction`), is all committed or none of it. Each of those transactions is
 * a savepoint of this one: one that fails is rolled back alone, as it would have been
 * on its own, and its caller goes on as it would have.
 *
 * Once `signal` is aborted, the next statement `run` sends fails with the abort reason,
 * and everything is rolled back. A process killed meanwhile writes nothing either
 * (PostgreSQL rolls back the transaction of a connection that is gone).
 *
 * For a batch that must not be left half-written (`payrail demo`), not for requests:
 * the transaction holds its locks (an environment's invoice counter, say) until it ends.
 *
 * @example
 * await inOneTransaction(db, async (db) => seedEverything(db), signal)
 */
export async function inOneTransaction<T>(
  db: Db,
  run: (db: Db) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  signal?.throwIfAborted()
  return db.connection().execute(async (connection) => {
    // A statement of its own, not Kysely's `begin`: the pool's connections hold that one back
    // and treat it as an `inTransaction` transaction, whose commit a failed statement refuses,
    // though the savepoint it failed in was rolled back (src/db/client.ts).
    await connection.executeQuery(CompiledQuery.raw('begin transaction'))
    let result: T
    try {
      result = await run(nested(connection, signal))
    } catch (error) {
      // A connection whose rollback fails is destroyed, not reused (src/db/client.ts).
      await connection.executeQuery(CompiledQuery.raw('rollback')).catch(() => undefined)
      throw error
    }
    // Refused (an error) when a statement failed outside a savepoint rolled back since.
    await connection.executeQuery(CompiledQuery.raw('commit'))
    return result
  })
}

/** One name for every level: PostgreSQL releases or rolls back to the latest savepoint of a name. */
const SAVEPOINT = 'payrail_nested'

/** `connection`, inside its transaction: each transaction begun on it is a savepoint. */
function nested(connection: Db, signal: AbortSignal | undefined): Db {
  const control = (text: string) => connection.executeQuery(CompiledQuery.raw(text))
  const database: DatabaseConnection = {
    async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
      signal?.throwIfAborted()
      // Not taken: `inTransaction` then sends its held writes itself, before the release.
      // (Taken, the connection would keep them for a `commit` that never comes.)
      if (query.sql === WITH_COMMIT) return { rows: [] }
      return connection.executeQuery(query as CompiledQuery<R>)
    },
    streamQuery() {
      throw new Error('Streaming is not supported inside inOneTransaction')
    },
  }
  const driver: Driver = {
    init: async () => undefined,
    acquireConnection: async () => database,
    releaseConnection: async () => undefined,
    beginTransaction: async () => {
      signal?.throwIfAborted()
      await control(`savepoint ${SAVEPOINT}`)
    },
    commitTransaction: async () => {
      await control(`release savepoint ${SAVEPOINT}`)
    },
    rollbackTransaction: async () => {
      await control(`rollback to savepoint ${SAVEPOINT}`)
      await control(`release savepoint ${SAVEPOINT}`)
    },
    destroy: async () => undefined,
  }
  return new Kysely<Database>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => driver,
      createIntrospector: (db) => new PostgresIntrospector(db),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  })
}
