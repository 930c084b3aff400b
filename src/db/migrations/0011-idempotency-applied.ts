import { type Kysely, sql } from 'kysely'

/**
 * `idempotency_keys.applied_at`: set by the first transaction of the keyed request's
 * work to commit, in that same commit (`src/http/idempotency.ts`). A record still in
 * flight with it set is one whose work committed but whose response was never stored
 * (its process stopped in between): a retry with its key must not run the work again.
 * Adding a nullable column without a default rewrites nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '10s'`.execute(db)
  await sql`alter table idempotency_keys add column applied_at timestamptz`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys drop column applied_at`.execute(db)
}
