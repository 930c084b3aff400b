import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { ListQuery, listRequestFrom, pageInMemory } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EmptyBody, IdParams } from '../../http/schema-types.ts'
import {
  ConnectionSchema,
  CreateConnectionBody,
  toConnectionResponse,
  UpdateConnectionBody,
} from './schemas.ts'
import {
  createConnection,
  deleteGatewayConnection,
  listGatewayConnections,
  type OpenedConnection,
  updateGatewayConnection,
} from './service.ts'

const tags = ['Gateway connections']
const errors = { '4xx': ErrorResponse }

export function gatewayConnectionRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    const show = ({ connection, credentials }: OpenedConnection) =>
      toConnectionResponse(connection, Object.keys(credentials).sort(), deps.config.publicUrl)

    app.post(
      '/gateway_connections',
      {
        schema: {
          tags,
          summary: 'Connect a gateway (credentials are write-only and encrypted at rest)',
          body: CreateConnectionBody,
          response: { 201: ConnectionSchema, ...errors },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(show(await createConnection(deps, principalOf(request), request.body))),
    )
    app.get(
      '/gateway_connections',
      {
        schema: {
          tags,
          summary: 'List gateway connections',
          querystring: ListQuery({}),
          response: { 200: PaginatedSchema(ConnectionSchema), ...errors },
        },
      },
      async (request) => {
        const list = listRequestFrom(request.query, ['created_at'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const opened = await listGatewayConnections(deps, principalOf(request))
        const { items, total } = pageInMemory(
          opened.map((o) => ({ ...o, id: o.connection.id, created_at: o.connection.created_at })),
          list,
        )
        return paginated(items.map(show), total, list.page)
      },
    )
    app.patch(
      '/gateway_connections/:id',
      {
        schema: {
          tags,
          summary: 'Rotate credentials, change settings, or (de)activate',
          params: IdParams,
          body: UpdateConnectionBody,
          response: { 200: ConnectionSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await updateGatewayConnection(
            deps,
            principalOf(request),
            request.params.id,
            request.body,
          ),
        ),
    )
    app.delete(
      '/gateway_connections/:id',
      {
        schema: {
          tags,
          summary: 'Disconnect a gateway',
          description:
            'Refused (409) while a payment through it may still be reported on; `force=true` disconnects anyway, and those reports are then refused',
          params: IdParams,
          body: EmptyBody,
          querystring: Type.Object({
            force: Type.Optional(
              Type.Boolean({ description: 'Disconnect even with payments open' }),
            ),
          }),
          response: { 200: ConnectionSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await deleteGatewayConnection(deps, principalOf(request), request.params.id, {
            force: request.query.force === true,
          }),
        ),
    )
  }
}
