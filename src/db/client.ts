import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Database } from './database.ts'

export type Db = Kysely<Database>

export interface DbClient {
  db: Db
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

export function createDbClient(connectionString: string, options: DbClientOptions = {}): DbClient {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 20,
    types: payrailTypes,
    application_name: 'payrail',
  })
  // An idle client whose server went away must not crash the process.
  pool.on('error', (error) => options.onError?.(error))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  let closed: Promise<void> | undefined
  return {
    db,
    pool,
    close() {
      closed ??= db.destroy()
      return closed
    },
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
