import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { pingDatabase } from '../../db/client.ts'
import { ErrorResponse, errorBody } from '../../http/error-handler.ts'

const tags = ['Operations']
const Status = Type.Object({ status: Type.String() })

/** `GET /health` (the process answers) and `GET /ready` (and its database does). */
export function operationsRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.get(
      '/health',
      { config: { auth: false }, schema: { tags, summary: 'Liveness', response: { 200: Status } } },
      async () => ({ status: 'ok' }),
    )
    app.get(
      '/ready',
      {
        config: { auth: false },
        schema: {
          tags,
          summary: 'Readiness: the database is reachable',
          response: { 200: Status, 503: ErrorResponse },
        },
      },
      async (_request, reply) => {
        if (await pingDatabase(deps.db)) return { status: 'ready' }
        return reply.code(503).send(errorBody('service_unavailable', 'Database is not reachable'))
      },
    )
  }
}
