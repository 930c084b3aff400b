import { type Kysely, sql } from 'kysely'

/**
 * `payrail_require_row(matched)`: raises `PRL01` when `matched` is 0 (a parameter named
 * `found` would be PL/pgSQL's own `FOUND`). A transaction that carries a commit mark
 * (`src/db/transaction.ts`) ends the statement sent with its commit with it, over the
 * rows its mark's update found, so that its commit fails, and the transaction rolls
 * back, when the row is no longer the mark's (a retry took the key over meanwhile).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function payrail_require_row(matched bigint) returns bigint
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
}
