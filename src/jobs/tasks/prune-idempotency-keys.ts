import { sql } from 'kysely'
import type { Clock } from '../../core/clock.ts'
import type { Db } from '../../db/client.ts'

export const PRUNE_IDEMPOTENCY_KEYS = 'prune_idempotency_keys'

/** Deletes idempotency records past their 24 h life, in batches so no statement holds locks for long. */
export async function pruneIdempotencyKeys(
  db: Db,
  clock: Clock,
  batchSize = 5000,
): Promise<number> {
  let total = 0
  for (;;) {
    const result = await sql`
      delete from idempotency_keys
      where ctid in (select ctid from idempotency_keys where expires_at <= ${clock.now()} limit ${batchSize})
    `.execute(db)
    const deleted = Number(result.numAffectedRows ?? 0n)
    total += deleted
    if (deleted < batchSize) return total
  }
}
