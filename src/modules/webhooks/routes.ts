import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { handleInboundWebhook } from './service.ts'

const Params = Type.Object({
  gateway: Type.String({ maxLength: 40 }),
  tenant_id: Type.String({ maxLength: 100 }),
  environment_id: Type.String({ maxLength: 100 }),
})

const Received = Type.Object({
  received: Type.Boolean(),
  events: Type.Array(
    Type.Object({ id: Type.String(), type: Type.String(), outcome: Type.String() }),
  ),
})

/**
 * `POST /v1/webhooks/:gateway/:tenant_id/:environment_id`: no API key; the body
 * is kept raw (any content type) because signatures are computed over its exact bytes.
 */
export function webhookRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    plugin.removeAllContentTypeParsers()
    plugin.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) =>
      done(null, body),
    )
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.post(
      '/webhooks/:gateway/:tenant_id/:environment_id',
      {
        config: { auth: false },
        schema: {
          tags: ['Webhooks'],
          summary:
            'Inbound notifications from payment gateways (verified, deduplicated, applied once)',
          params: Params,
          response: {
            200: Type.Union([Received, Type.Literal('')]),
            '4xx': ErrorResponse,
            '5xx': ErrorResponse,
          },
        },
      },
      async (request, reply) => {
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
        const events = await handleInboundWebhook(
          deps,
          request.params.gateway,
          request.params.tenant_id,
          request.params.environment_id,
          {
            body,
            headers: request.headers,
          },
        )
        // BitPay expects a bare 200 with an empty body; everyone else gets what was done with each event.
        if (request.params.gateway === 'bitpay') return reply.code(200).type('text/plain').send('')
        return { received: true, events }
      },
    )
  }
}
