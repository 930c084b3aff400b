import { sql, type Updateable } from 'kysely'
import type { Db } from '../db/client.ts'
import type { IdempotencyKeyTable, IdempotencyRecord } from '../db/database.ts'
import { StatementCache } from '../db/statement-cache.ts'

/** The SQL of `Idempotency-Key` records (`idempotency.ts`) and of their pruning job. */

export interface KeyOf {
  environmentId: string
  key: string
}

/** A key as one request holds it: `lockedAt` is its claim's, a retry's takeover sets another. */
export interface ClaimOf extends KeyOf {
  lockedAt: Date
}

export interface NewClaim extends KeyOf {
  method: string
  path: string
  requestHash: string
  now: Date
  expiresAt: Date
}

/** The statements every keyed request sends, built once (`StatementCache`). */
const STATEMENTS = new StatementCache()

const deleteByKey = (db: Db, { environmentId, key }: KeyOf) =>
  db
    .deleteFrom('idempotency_keys')
    .where('environment_id', '=', environmentId)
    .where('key', '=', key)

const updateByKey = (
  db: Db,
  { environmentId, key }: KeyOf,
  changes: Updateable<IdempotencyKeyTable>,
) =>
  db
    .updateTable('idempotency_keys')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('key', '=', key)

/**
 * Writes a new in-flight record for the key, or takes over an expired one in the same
 * statement. False when a live record holds the key.
 */
export async function insertClaim(db: Db, claim: NewClaim): Promise<boolean> {
  const values = [
    claim.environmentId,
    claim.key,
    claim.method,
    claim.path,
    claim.requestHash,
    claim.now,
    claim.expiresAt,
  ]
  const query = STATEMENTS.compile('claim', values, ($) => {
    const fresh = {
      method: $(2),
      path: $(3),
      request_hash: $(4),
      state: 'in_flight' as const,
      locked_at: $(5),
      expires_at: $(6),
    }
    return db
      .insertInto('idempotency_keys')
      .values({ environment_id: $(0), key: $(1), ...fresh })
      .onConflict((oc) =>
        // An expired record is as good as none.
        oc
          .columns(['environment_id', 'key'])
          .doUpdateSet({
            ...fresh,
            response_status: null,
            response_body: null,
            response_content_type: null,
            applied_at: null,
          })
          .where('idempotency_keys.expires_at', '<=', $(5)),
      )
      .returning('key')
  })
  return (await db.executeQuery(query)).rows.length > 0
}

export async function findRecord(db: Db, key: KeyOf): Promise<IdempotencyRecord | undefined> {
  return db
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('environment_id', '=', key.environmentId)
    .where('key', '=', key.key)
    .executeTakeFirst()
}

/**
 * Takes over an in-flight record still locked at `lockedAt` (its holder died) whose work
 * never committed; false if another did first, or the work had committed.
 */
export async function takeStaleClaim(
  db: Db,
  key: KeyOf,
  lockedAt: Date,
  now: Date,
): Promise<boolean> {
  const taken = await updateByKey(db, key, { locked_at: now })
    .where('state', '=', 'in_flight')
    .where('applied_at', 'is', null)
    .where('locked_at', '=', lockedAt)
    .returning('key')
    .executeTakeFirst()
  return taken !== undefined
}

/** Stores the response (sealed) to replay for the key, if the claim is still this request's. */
export async function completeClaim(
  db: Db,
  { environmentId, key, lockedAt }: ClaimOf,
  response: { status: number; body: string; contentType: string },
): Promise<void> {
  const values = [
    environmentId,
    key,
    response.status,
    response.body,
    response.contentType,
    lockedAt,
  ]
  await db.executeQuery(
    STATEMENTS.compile('complete', values, ($) =>
      updateByKey(
        db,
        { environmentId: $(0), key: $(1) },
        {
          state: 'completed',
          response_status: $(2),
          response_body: $(3),
          response_content_type: $(4),
        },
      ).where('locked_at', '=', $(5)),
    ),
  )
}

/**
 * Drops the key's record if the claim is still this request's and its work never
 * committed anything (a 5xx before it did is not replayed: a retry runs again); true if
 * it did.
 */
export async function releaseUnapplied(db: Db, claim: ClaimOf): Promise<boolean> {
  const released = await deleteByKey(db, claim)
    .where('state', '=', 'in_flight')
    .where('applied_at', 'is', null)
    .where('locked_at', '=', claim.lockedAt)
    .returning('key')
    .executeTakeFirst()
  return released !== undefined
}

/** Deletes up to `batchSize` records expired at `now`; returns how many. */
export async function deleteExpired(db: Db, now: Date, batchSize: number): Promise<number> {
  const result = await sql`
    delete from idempotency_keys
    where ctid in (select ctid from idempotency_keys where expires_at <= ${now} limit ${batchSize})
  `.execute(db)
  return Number(result.numAffectedRows ?? 0n)
}
