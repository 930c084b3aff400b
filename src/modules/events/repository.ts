import type { Db } from '../../db/client.ts'
import type { Event } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import { appendRows } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertEvents(
  db: Db,
  events: {
    id: string
    tenant_id: string
    environment_id: string
    type: string
    object_type: string
    object_id: string
    data: string
    created_at: Date
  }[],
): Promise<void> {
  await appendRows(db, 'events', events)
}

export interface EventFilters {
  type?: string | undefined
  objectId?: string | undefined
}

export async function listEvents(
  db: Db,
  environmentId: string,
  filters: EventFilters,
  request: ListRequest<'created_at'>,
): Promise<{ items: Event[]; total: number }> {
  let query = db.selectFrom('events').selectAll().where('environment_id', '=', environmentId)
  if (filters.type) {
    // `payment.*` matches every payment event.
    query = filters.type.endsWith('.*')
      ? query.where('type', 'like', `${filters.type.slice(0, -1)}%`)
      : query.where('type', '=', filters.type)
  }
  if (filters.objectId) query = query.where('object_id', '=', filters.objectId)
  return fetchPage(query, 'events', request)
}

export async function findEvent(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Event | undefined> {
  return db
    .selectFrom('events')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}
