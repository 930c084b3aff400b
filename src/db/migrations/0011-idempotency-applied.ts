import { type Kysely, sql } from 'kysely'

/**
 * `idempotency_keys.applied_at`: set by the first transaction of the keyed request's
 * work to commit, in that same commit (`src/http/idempotency.ts`). A record still in
 * flight with it set is one whose work committed but whose response was never stored
 * (its process stopped in between): a retry with its key must not run the work again.
 * Adding a nullable column without a default rewrites nothing.
 *
 * `payrail_require_row(matched)`: raises `PRL01` when `matched` is 0 (a parameter named
 * `found` would be PL/pgSQL's own `FOUND`). A transaction that
 * carries a commit mark (`src/db/transaction.ts`) ends with it, over the rows its mark's
 * update found, so that its commit fails when the row is no longer the mark's (a retry
 * took the key over meanwhile).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '10s'`.execute(db)
  await sql`alter table idempotency_keys add column applied_at timestamptz`.execute(db)
  await sql`
    create function payrail_require_row(matched bigint) returns bigint
    language plpgsql as $$
    begin
      if matched = 0 then
        raise exception 'the commit mark found no row to update; the transaction rolls back'
          using errcode = 'PRL01';
      end if;
      return matched;
    end $$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function payrail_require_row(bigint)`.execute(db)
  await sql`alter table idempotency_keys drop column applied_at`.execute(db)
}
