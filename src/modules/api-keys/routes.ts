import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { validationError } from '../../core/errors.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { ListQuery, listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EmptyBody } from '../../http/schema-types.ts'
import {
  ApiKeyParams,
  ApiKeySchema,
  CreateApiKeyBody,
  CreatedApiKeySchema,
  toApiKeyResponse,
} from './schemas.ts'
import { getKey, issueApiKey, listKeys, revokeKey } from './service.ts'

const tags = ['API keys']

export function apiKeyRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.post(
      '/api_keys',
      {
        schema: {
          tags,
          summary: 'Create a secret API key for this environment (the secret is shown once)',
          body: CreateApiKeyBody,
          response: { 201: CreatedApiKeySchema, '4xx': ErrorResponse },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request)
        const expiresAt = request.body.expires_at ? new Date(request.body.expires_at) : null
        if (expiresAt && expiresAt.getTime() <= deps.clock.now().getTime()) {
          throw validationError('expires_at must be in the future', { field: 'expires_at' })
        }
        const { key, record } = await issueApiKey(
          deps.db,
          {
            tenantId: principal.tenantId,
            environmentId: principal.environmentId,
            role: 'admin',
            name: request.body.name ?? null,
            expiresAt,
          },
          deps.clock,
        )
        return reply.code(201).send({ ...toApiKeyResponse(record), key })
      },
    )

    app.get(
      '/api_keys',
      {
        schema: {
          tags,
          summary: "List this environment's API keys (never their secrets)",
          querystring: ListQuery({}),
          response: { 200: PaginatedSchema(ApiKeySchema), '4xx': ErrorResponse },
        },
      },
      async (request) => {
        const list = listRequestFrom(request.query, ['created_at'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listKeys(deps.db, principalOf(request), list)
        return paginated(items.map(toApiKeyResponse), total, list.page)
      },
    )

    app.get(
      '/api_keys/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve an API key',
          params: ApiKeyParams,
          response: { 200: ApiKeySchema, '4xx': ErrorResponse },
        },
      },
      async (request) =>
        toApiKeyResponse(await getKey(deps.db, principalOf(request), request.params.id)),
    )

    app.delete(
      '/api_keys/:id',
      {
        schema: {
          tags,
          summary: 'Revoke an API key; it stops working at once',
          params: ApiKeyParams,
          body: EmptyBody,
          response: { 200: ApiKeySchema, '4xx': ErrorResponse },
        },
      },
      async (request) => {
        const principal = principalOf(request)
        return toApiKeyResponse(
          await revokeKey(
            deps.db,
            principal,
            request.params.id,
            deps.clock,
            principal,
            deps.apiKeys,
          ),
        )
      },
    )
  }
}
