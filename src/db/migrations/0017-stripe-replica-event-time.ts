import { type Kysely, sql } from 'kysely'

/**
 * Stripe does not deliver events in order, and its objects carry no version: each replica
 * keeps when Stripe made the event it came from (`seen_at`: the event's `created`, or when
 * the object was fetched), and an older event no longer overwrites it. Rows from before
 * have none, and take the next event as it comes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table stripe_replicas add column seen_at timestamptz`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table stripe_replicas drop column seen_at`.execute(db)
}
