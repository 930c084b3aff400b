import type { Clock } from '../../core/clock.ts'
import type { Db } from '../../db/client.ts'
import { deleteExpired } from '../../http/idempotency-records.ts'

export const PRUNE_IDEMPOTENCY_KEYS = 'prune_idempotency_keys'

/** Deletes idempotency records past their 24 h life, in batches so no statement holds locks for long. */
export async function pruneIdempotencyKeys(
  db: Db,
  clock: Clock,
  batchSize = 5000,
): Promise<number> {
  let total = 0
  for (;;) {
    const deleted = await deleteExpired(db, clock.now(), batchSize)
    total += deleted
    if (deleted < batchSize) return total
  }
}
