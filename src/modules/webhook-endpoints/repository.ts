import type { Insertable, Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type {
  WebhookDelivery,
  WebhookDeliveryTable,
  WebhookEndpoint,
  WebhookEndpointTable,
} from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertEndpoint(
  db: Db,
  row: Insertable<WebhookEndpointTable>,
): Promise<WebhookEndpoint> {
  return db.insertInto('webhook_endpoints').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findEndpoint(
  db: Db,
  environmentId: string,
  id: string,
  options: { lock?: boolean } = {},
): Promise<WebhookEndpoint | undefined> {
  const query = db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  return (options.lock ? query.forUpdate() : query).executeTakeFirst()
}

/** The environment's enabled endpoints: those its events go to. */
export async function enabledEndpoints(db: Db, environmentId: string): Promise<WebhookEndpoint[]> {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('status', '=', 'enabled')
    .orderBy('id')
    .execute()
}

export async function updateEndpoint(
  db: Db,
  environmentId: string,
  id: string,
  changes: Updateable<WebhookEndpointTable>,
): Promise<WebhookEndpoint | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
}

/** Deletes an endpoint and its deliveries (which reference it by id only: migration 0014). */
export async function deleteEndpoint(
  db: Db,
  environmentId: string,
  id: string,
): Promise<WebhookEndpoint | undefined> {
  const deleted = await db
    .deleteFrom('webhook_endpoints')
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
  if (deleted) {
    await db
      .deleteFrom('webhook_deliveries')
      .where('environment_id', '=', environmentId)
      .where('endpoint_id', '=', id)
      .execute()
  }
  return deleted
}

export async function listEndpoints(
  db: Db,
  environmentId: string,
  filters: { status?: WebhookEndpoint['status'] | undefined },
  request: ListRequest<'created_at'>,
): Promise<{ items: WebhookEndpoint[]; total: number }> {
  let query = db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('environment_id', '=', environmentId)
  if (filters.status) query = query.where('status', '=', filters.status)
  return fetchPage(query, 'webhook_endpoints', request)
}

export interface DeliveryFilters {
  endpointId?: string | undefined
  eventId?: string | undefined
  status?: WebhookDelivery['status'] | undefined
}

export async function listDeliveries(
  db: Db,
  environmentId: string,
  filters: DeliveryFilters,
  request: ListRequest<'created_at'>,
): Promise<{ items: WebhookDelivery[]; total: number }> {
  let query = db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('environment_id', '=', environmentId)
  if (filters.endpointId) query = query.where('endpoint_id', '=', filters.endpointId)
  if (filters.eventId) query = query.where('event_id', '=', filters.eventId)
  if (filters.status) query = query.where('status', '=', filters.status)
  return fetchPage(query, 'webhook_deliveries', request)
}

export async function findDelivery(
  db: Db,
  environmentId: string | undefined,
  id: string,
): Promise<WebhookDelivery | undefined> {
  let query = db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id)
  if (environmentId !== undefined) query = query.where('environment_id', '=', environmentId)
  return query.executeTakeFirst()
}

export async function lockDelivery(
  db: Db,
  environmentId: string,
  id: string,
): Promise<WebhookDelivery | undefined> {
  return db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

/** Updates a delivery; with `readAt`, only while its `updated_at` is still that (else undefined). */
export async function updateDelivery(
  db: Db,
  id: string,
  changes: Updateable<WebhookDeliveryTable>,
  readAt?: Date,
): Promise<WebhookDelivery | undefined> {
  let query = db.updateTable('webhook_deliveries').set(changes).where('id', '=', id)
  if (readAt) query = query.where('updated_at', '=', readAt)
  return query.returningAll().executeTakeFirst()
}
