import { Type } from 'typebox'
import type { Event } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import { Timestamp } from '../../http/schema-types.ts'

export const EventSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('event'),
    type: Type.String({ description: 'e.g. invoice.paid, payment.succeeded' }),
    object_type: Type.String(),
    object_id: Type.String(),
    data: Type.Object({ object: Type.Record(Type.String(), Type.Unknown()) }),
    created_at: Timestamp,
  },
  { $id: 'Event' },
)

export const EventListQuery = ListQuery({
  type: Type.Optional(Type.String({ description: 'Exact type, or a prefix like payment.*' })),
  object_id: Type.Optional(Type.String()),
})

export const EventParams = Type.Object({ id: Type.String() })

export function toEventResponse(event: Event) {
  return {
    id: event.id,
    object: 'event' as const,
    type: event.type,
    object_type: event.object_type,
    object_id: event.object_id,
    data: { object: event.data },
    created_at: event.created_at.toISOString(),
  }
}
