import type { Db } from '../../db/client.ts'
import { rowOf, StatementCache } from '../../db/statement-cache.ts'
import { holdUpdate } from '../../db/transaction.ts'
import { findEnvironment } from '../tenants/repository.ts'

/** The deduplicating insert, built once (`StatementCache`). */
const STATEMENTS = new StatementCache()

/**
 * Records an inbound event once: the first delivery inserts it, every later one
 * (a retry, a duplicate sent at the same moment) finds it and gets `false`.
 */
export async function recordInboundEvent(
  db: Db,
  row: {
    tenant_id: string
    environment_id: string
    gateway: string
    event_id: string
    event_type: string
    payload: string
  },
): Promise<boolean> {
  const { shape, values, slots } = rowOf(row)
  const query = STATEMENTS.compile(shape, values, ($) =>
    db
      .insertInto('webhook_events')
      .values(slots($))
      .onConflict((oc) => oc.columns(['environment_id', 'gateway', 'event_id']).doNothing())
      .returning('id'),
  )
  return (await db.executeQuery(query)).rows.length > 0
}

export async function markInboundEventHandled(
  db: Db,
  environmentId: string,
  gateway: string,
  eventId: string,
  outcome: string,
  at: Date,
): Promise<void> {
  const changes = { handled_at: at, outcome }
  const key = { environment_id: environmentId, gateway, event_id: eventId }
  // Nothing reads it back: in a transaction, it goes with the commit.
  if (holdUpdate(db, 'webhook_events', key, changes)) return
  await db
    .updateTable('webhook_events')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('gateway', '=', gateway)
    .where('event_id', '=', eventId)
    .execute()
}

/** The environment, when it is `tenantId`'s (read once per process: `findEnvironment`). */
export async function environmentOfTenant(db: Db, tenantId: string, environmentId: string) {
  const found = await findEnvironment(db, environmentId)
  return found?.tenant_id === tenantId ? found : undefined
}
