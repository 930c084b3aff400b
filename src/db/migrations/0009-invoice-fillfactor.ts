import { type Kysely, sql } from 'kysely'

/**
 * Leaves room on each page of `invoices` for the new versions of its rows: an invoice
 * is written, then updated as payments settle it, and settling changes no indexed column
 * (unless it clears a scheduled retry, `next_payment_attempt`; finalizing sets the
 * indexed `number`). With room on the row's page, PostgreSQL writes the new version
 * there as a heap-only tuple (HOT) and adds no entry to any of the table's seven
 * indexes; on a full page it writes the version elsewhere and an entry in every index
 * (`docs/performance.md`).
 *
 * Only pages written from now on keep the room; existing pages fill as before until the
 * table is rewritten (`VACUUM FULL` or `pg_repack`), which this migration does not do.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table invoices set (fillfactor = 80)`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table invoices reset (fillfactor)`.execute(db)
}
