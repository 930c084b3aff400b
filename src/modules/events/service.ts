import { notFound } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Event } from '../../db/database.ts'
import { appendRows } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { subscribes, webhookEndpoints } from '../webhook-endpoints/registry.ts'
import { type EventFilters, findEvent, insertEvents, listEvents } from './repository.ts'
import type { EventType } from './types.ts'

export interface NewEvent {
  type: EventType
  objectType: string
  objectId: string
  /** The object as the API shows it at this moment. */
  data: object
}

/**
 * Writes events to the outbox in the caller's transaction, so an event exists if
 * and only if the change it reports was committed.
 *
 * @example
 * await recordEvents(trx, scope, clock.now(), [{ type: 'invoice.paid', objectType: 'invoice', objectId: id, data: body }])
 */
export async function recordEvents(
  db: Db,
  scope: Scope,
  at: Date,
  events: NewEvent[],
): Promise<void> {
  const rows = events.map((event) => ({
    id: newId('event'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    type: event.type,
    object_type: event.objectType,
    object_id: event.objectId,
    data: JSON.stringify(event.data),
    created_at: at,
  }))
  await insertEvents(db, rows)
  // A delivery for each endpoint an event goes to, in the same transaction: each queues its
  // job (migration 0013), so it is sent if and only if the event committed.
  const endpoints = rows.length > 0 ? await webhookEndpoints.enabled(db, scope.environmentId) : []
  if (endpoints.length === 0) return
  await appendRows(
    db,
    'webhook_deliveries',
    rows.flatMap((event) =>
      endpoints
        .filter((endpoint) => subscribes(endpoint.enabled_events, event.type))
        .map((endpoint) => ({
          id: newId('webhookDelivery'),
          tenant_id: event.tenant_id,
          environment_id: event.environment_id,
          endpoint_id: endpoint.id,
          event_id: event.id,
          event_type: event.type,
          created_at: at,
          updated_at: at,
        })),
    ),
  )
}

export async function listEventsFor(
  db: Db,
  scope: Scope,
  filters: EventFilters,
  request: ListRequest<'created_at'>,
) {
  return listEvents(db, scope.environmentId, filters, request)
}

export async function getEvent(db: Db, scope: Scope, id: string): Promise<Event> {
  const event = await findEvent(db, scope.environmentId, id)
  if (!event) throw notFound('event', id)
  return event
}
