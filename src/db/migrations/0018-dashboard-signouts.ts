import { type Kysely, sql } from 'kysely'

/**
 * Dashboard sessions signed out before they lapsed. A session is a sealed cookie (the key,
 * its expiry and an id), so signing out could only ask the browser to drop it: a copy
 * (another tab's, a shared computer's) kept working for up to eight hours. Its id is kept
 * here until the session would have lapsed, and the dashboard refuses it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table dashboard_signouts (
      session_id text primary key,
      expires_at timestamptz not null
    )
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table dashboard_signouts`.execute(db)
}
