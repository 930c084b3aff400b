import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EmptyBody, IdParams } from '../../http/schema-types.ts'
import {
  CreateWebhookEndpointBody,
  RotateSecretBody,
  toWebhookDeliveryResponse,
  toWebhookEndpointResponse,
  UpdateWebhookEndpointBody,
  WebhookDeliveryListQuery,
  WebhookDeliverySchema,
  WebhookEndpointListQuery,
  WebhookEndpointSchema,
} from './schemas.ts'
import {
  createEndpoint,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  redeliver,
  removeEndpoint,
  rotateSecret,
  updateEndpoint,
} from './service.ts'

const tags = ['Merchant webhooks']
const errors = { '4xx': ErrorResponse }
const newestFirst = { field: 'created_at', direction: 'desc' } as const

export function webhookEndpointRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.post(
      '/webhook_endpoints',
      {
        schema: {
          tags,
          summary: 'Register an endpoint for the environment events (the answer has its secret)',
          body: CreateWebhookEndpointBody,
          response: { 201: WebhookEndpointSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { endpoint, secret } = await createEndpoint(deps, principalOf(request), request.body)
        return reply.code(201).send(toWebhookEndpointResponse(endpoint, secret))
      },
    )
    app.get(
      '/webhook_endpoints',
      {
        schema: {
          tags,
          summary: 'List webhook endpoints',
          querystring: WebhookEndpointListQuery,
          response: { 200: PaginatedSchema(WebhookEndpointSchema), ...errors },
        },
      },
      async (request) => {
        const list = listRequestFrom(request.query, ['created_at'] as const, newestFirst)
        const { items, total } = await listEndpoints(
          deps.db,
          principalOf(request),
          { status: request.query.status },
          list,
        )
        return paginated(
          items.map((endpoint) => toWebhookEndpointResponse(endpoint)),
          total,
          list.page,
        )
      },
    )
    app.get(
      '/webhook_endpoints/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve a webhook endpoint',
          params: IdParams,
          response: { 200: WebhookEndpointSchema, ...errors },
        },
      },
      async (request) =>
        toWebhookEndpointResponse(
          await getEndpoint(deps.db, principalOf(request), request.params.id),
        ),
    )
    app.patch(
      '/webhook_endpoints/:id',
      {
        schema: {
          tags,
          summary: 'Update a webhook endpoint (url, events, status, description, metadata)',
          params: IdParams,
          body: UpdateWebhookEndpointBody,
          response: { 200: WebhookEndpointSchema, ...errors },
        },
      },
      async (request) =>
        toWebhookEndpointResponse(
          await updateEndpoint(deps, principalOf(request), request.params.id, request.body),
        ),
    )
    app.post(
      '/webhook_endpoints/:id/rotate_secret',
      {
        schema: {
          tags,
          summary:
            'Roll the signing secret: the answer has the new one; the old one signs beside it until previous_secret_expires_at',
          params: IdParams,
          body: RotateSecretBody,
          response: { 200: WebhookEndpointSchema, ...errors },
        },
      },
      async (request) => {
        const { endpoint, secret } = await rotateSecret(
          deps,
          principalOf(request),
          request.params.id,
          request.body.expires_in,
        )
        return toWebhookEndpointResponse(endpoint, secret)
      },
    )
    app.delete(
      '/webhook_endpoints/:id',
      {
        schema: {
          tags,
          summary: 'Delete a webhook endpoint and its deliveries',
          params: IdParams,
          body: EmptyBody,
          response: { 200: WebhookEndpointSchema, ...errors },
        },
      },
      async (request) =>
        toWebhookEndpointResponse(
          await removeEndpoint(deps.db, principalOf(request), request.params.id),
        ),
    )
    app.get(
      '/webhook_deliveries',
      {
        schema: {
          tags,
          summary: 'List deliveries of events to webhook endpoints',
          querystring: WebhookDeliveryListQuery,
          response: { 200: PaginatedSchema(WebhookDeliverySchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at'] as const, newestFirst)
        const { items, total } = await listDeliveries(
          deps.db,
          principalOf(request),
          { endpointId: query.endpoint_id, eventId: query.event_id, status: query.status },
          list,
        )
        return paginated(items.map(toWebhookDeliveryResponse), total, list.page)
      },
    )
    app.post(
      '/webhook_deliveries/:id/redeliver',
      {
        schema: {
          tags,
          summary: 'Send a delivery again (it is pending until its new tries end)',
          params: IdParams,
          body: EmptyBody,
          response: { 202: WebhookDeliverySchema, ...errors },
        },
      },
      async (request, reply) =>
        reply
          .code(202)
          .send(
            toWebhookDeliveryResponse(
              await redeliver(deps, principalOf(request), request.params.id),
            ),
          ),
    )
  }
}
