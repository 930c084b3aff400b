import type { Db } from '../db/client.ts'

/**
 * Records a dashboard session as signed out until it would have lapsed (`expiresAt`), and
 * forgets those that have lapsed since: they are refused by their own expiry.
 */
export async function recordSignout(
  db: Db,
  sessionId: string,
  expiresAt: Date,
  now: Date,
): Promise<void> {
  await db.deleteFrom('dashboard_signouts').where('expires_at', '<=', now).execute()
  await db
    .insertInto('dashboard_signouts')
    .values({ session_id: sessionId, expires_at: expiresAt })
    .onConflict((oc) => oc.column('session_id').doNothing())
    .execute()
}

/** Whether the session was signed out (in any process: the record is in the database). */
export async function isSignedOut(db: Db, sessionId: string): Promise<boolean> {
  const row = await db
    .selectFrom('dashboard_signouts')
    .select('session_id')
    .where('session_id', '=', sessionId)
    .executeTakeFirst()
  return row !== undefined
}
