import type { Insertable, Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { GatewayConnection, GatewayConnectionTable } from '../../db/database.ts'

export async function insertConnection(
  db: Db,
  row: Insertable<GatewayConnectionTable>,
): Promise<GatewayConnection> {
  return db.insertInto('gateway_connections').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findConnection(
  db: Db,
  environmentId: string,
  id: string,
  options: { lock?: boolean } = {},
): Promise<GatewayConnection | undefined> {
  const query = db
    .selectFrom('gateway_connections')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  return (options.lock ? query.forUpdate() : query).executeTakeFirst()
}

export async function findActiveConnection(
  db: Db,
  environmentId: string,
  gateway: string,
): Promise<GatewayConnection | undefined> {
  return db
    .selectFrom('gateway_connections')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('gateway', '=', gateway)
    .where('active', '=', true)
    .executeTakeFirst()
}

export async function listConnections(db: Db, environmentId: string): Promise<GatewayConnection[]> {
  return db
    .selectFrom('gateway_connections')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute()
}

export async function updateConnection(
  db: Db,
  environmentId: string,
  id: string,
  changes: Updateable<GatewayConnectionTable>,
): Promise<GatewayConnection | undefined> {
  return db
    .updateTable('gateway_connections')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
}
