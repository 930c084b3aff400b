import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EventListQuery, EventParams, EventSchema, toEventResponse } from './schemas.ts'
import { getEvent, listEventsFor } from './service.ts'

const tags = ['Events']

export function eventRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.get(
      '/events',
      {
        schema: {
          tags,
          summary: 'List events (the outbox of every state change), newest first',
          querystring: EventListQuery,
          response: { 200: PaginatedSchema(EventSchema), '4xx': ErrorResponse },
        },
      },
      async (request) => {
        const list = listRequestFrom(request.query, ['created_at'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listEventsFor(
          deps.db,
          principalOf(request),
          { type: request.query.type, objectId: request.query.object_id },
          list,
        )
        return paginated(items.map(toEventResponse), total, list.page)
      },
    )
    app.get(
      '/events/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve an event',
          params: EventParams,
          response: { 200: EventSchema, '4xx': ErrorResponse },
        },
      },
      async (request) =>
        toEventResponse(await getEvent(deps.db, principalOf(request), request.params.id)),
    )
  }
}
