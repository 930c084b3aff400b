import { type Kysely, sql } from 'kysely'

/**
 * Drops the foreign key from `idempotency_keys.environment_id` to `environments`, for
 * the reason migration 0008 dropped the same key from the payments' rows: the
 * environment comes from the authenticated key's scope, and environments are never
 * deleted. The key cost every keyed request a `SELECT … FOR KEY SHARE` of its
 * environment's row, and concurrent requests of one environment, which share that row,
 * a multixact each time more than one held it (`docs/performance.md`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Dropping the key locks `environments` too, exclusively: behind a transaction that holds
  // it (a foreign-key check of a customer's insert), every read of it would queue behind
  // this one. Better to fail the migration, which the next start runs again.
  await sql`set local lock_timeout = '10s'`.execute(db)
  await sql`alter table idempotency_keys drop constraint idempotency_keys_environment_id_fkey`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys add constraint idempotency_keys_environment_id_fkey
    foreign key (environment_id) references environments (id)`.execute(db)
}
