import { randomUUID } from 'node:crypto'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
} from 'fastify'
import type { Config } from './config.ts'
import type { Clock } from './core/clock.ts'
import { AppError } from './core/errors.ts'
import type { SecretBox } from './core/secret-box.ts'
import type { Db } from './db/client.ts'
import { registerAuth } from './http/auth.ts'
import { ErrorResponse, registerErrorHandling, toErrorBody } from './http/error-handler.ts'
import { registerIdempotency } from './http/idempotency.ts'
import { registerJsonParser } from './http/json-body.ts'
import type { Loopback } from './http/loopback.ts'
import { registerMetrics } from './http/metrics.ts'
import { registerValidation } from './http/validation.ts'
import type { JobQueue } from './jobs/queue.ts'
import type { Logger } from './logger.ts'
import type { ApiKeyCache } from './modules/api-keys/cache.ts'
import { apiKeyRoutes } from './modules/api-keys/routes.ts'
import { checkoutRedirectRoutes } from './modules/checkout-redirects/routes.ts'
import { customerRoutes } from './modules/customers/routes.ts'
import { discountRoutes } from './modules/discounts/routes.ts'
import { eventRoutes } from './modules/events/routes.ts'
import { gatewayConnectionRoutes } from './modules/gateway-connections/routes.ts'
import { invoiceRoutes } from './modules/invoices/routes.ts'
import { operationsRoutes } from './modules/operations/routes.ts'
import { orderRoutes } from './modules/orders/routes.ts'
import { paymentRoutes } from './modules/payments/routes.ts'
import { productRoutes } from './modules/products/routes.ts'
import { subscriptionRoutes } from './modules/subscriptions/routes.ts'
import { webhookEndpointRoutes } from './modules/webhook-endpoints/routes.ts'
import { webhookRoutes } from './modules/webhooks/routes.ts'
import { dashboardPages } from './web/dashboard.ts'
import { paymentPages } from './web/payment-pages.ts'
import { sandboxPages } from './web/sandbox-pages.ts'

/** Everything a request handler may need, built once per process and passed down. */
export interface AppDeps {
  config: Config
  db: Db
  /** `DbClient.genericPlans`: for the statements that plan best once for any values. Without it, `db`. */
  genericPlans?: Db
  logger: Logger
  clock: Clock
  secretBox: SecretBox
  jobs: JobQueue
  /** Payrail's own routes, for the sandbox gateway's webhooks; bound to this app by `buildApp`. */
  loopback: Loopback
  /** API keys seen by this process, dropped on every change; without it, every request looks its key up. */
  apiKeys?: ApiKeyCache
}

export interface BuildAppOptions {
  /** More `/v1` routes (tests mount probes of the HTTP layer this way). */
  extraRoutes?: FastifyPluginAsync
}

const BODY_LIMIT_BYTES = 1024 * 1024

/**
 * The Fastify app: request ids, logs, one error handler, auth, idempotency,
 * metrics, OpenAPI, and every module's routes under `/v1` (also `/api/v1`).
 *
 * @example
 * const app = await buildApp(deps)
 * await app.listen({ port: 8080 })
 */
export async function buildApp(
  deps: AppDeps,
  options: BuildAppOptions = {},
): Promise<FastifyInstance> {
  const httpLogger: FastifyBaseLogger = deps.logger.child({ component: 'http' })
  const app = Fastify({
    loggerInstance: httpLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    genReqId: (request) => {
      const incoming = request.headers['x-request-id']
      return typeof incoming === 'string' && /^[\w.:-]{1,100}$/.test(incoming)
        ? incoming
        : `req_${randomUUID()}`
    },
    routerOptions: { ignoreTrailingSlash: true },
    // The router's own refusals, in the documented error shape: a path with malformed
    // percent-encoding, or a path parameter past the router's 100 characters (no id is).
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const { status, body } = toErrorBody(
        new AppError(
          'validation_error',
          error.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? 'A path parameter is longer than 100 characters'
            : 'The URL is malformed (invalid percent-encoding)',
        ),
      )
      return reply.code(status).type('application/json; charset=utf-8').send(body)
    },
    ajv: {
      customOptions: {
        coerceTypes: 'array',
        useDefaults: true,
        removeAdditional: false,
        allErrors: false,
      },
    },
  })

  // JSON only; webhook routes add their own raw-body parsers where they need them.
  app.removeContentTypeParser('text/plain')
  registerJsonParser(app)
  // A POST whose fields are all optional may come without a body (`POST …/cancel`, a refund
  // of all that is left), and a DELETE takes none (`EmptyBody`): it is read as `{}`, not
  // refused as "body must be object". Only routes with a body schema: webhook routes read
  // their raw body.
  app.addHook('preValidation', async (request) => {
    if (
      (request.method === 'POST' || request.method === 'DELETE') &&
      request.body === undefined &&
      request.routeOptions.schema?.body
    )
      request.body = {}
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  registerErrorHandling(app)
  registerValidation(app)
  app.addSchema(ErrorResponse)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Payrail API',
        version: '1',
        description:
          'Self-hosted payments: customers, invoices, payments and gateways. Authenticate with `Authorization: Bearer sk_test_…` or `x-api-key`.',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer' },
          apiKeyHeader: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        },
      },
      security: [{ bearerAuth: [] }, { apiKeyHeader: [] }],
    },
    // Built at the first request for it, once the server listens: on port 0 the public URL
    // names its port only then.
    transformObject: (document) =>
      'openapiObject' in document
        ? { ...document.openapiObject, servers: [{ url: deps.config.publicUrl }] }
        : document.swaggerObject,
  })
  // The API reference is public, like /openapi.json.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...route.config, auth: false }
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
  })

  registerMetrics(app)
  registerAuth(app, deps)
  registerIdempotency(app, deps)

  app.get('/openapi.json', { config: { auth: false }, schema: { hide: true } }, async () =>
    app.swagger(),
  )
  await app.register(operationsRoutes(deps))
  await app.register(sandboxPages(deps))
  await app.register(paymentPages)
  await app.register(dashboardPages(deps))

  const v1: FastifyPluginAsync = async (api) => {
    await api.register(apiKeyRoutes(deps))
    await api.register(customerRoutes(deps))
    await api.register(eventRoutes(deps))
    await api.register(productRoutes(deps))
    await api.register(discountRoutes(deps))
    await api.register(invoiceRoutes(deps))
    await api.register(orderRoutes(deps))
    await api.register(subscriptionRoutes(deps))
    await api.register(gatewayConnectionRoutes(deps))
    await api.register(paymentRoutes(deps))
    await api.register(webhookEndpointRoutes(deps))
    await api.register(webhookRoutes(deps))
    await api.register(checkoutRedirectRoutes(deps))
    if (options.extraRoutes) await api.register(options.extraRoutes)
  }
  await app.register(v1, { prefix: '/v1' })
  // The same routes under /api/v1 for clients with Flexprice's base path; documented once.
  await app.register(
    async (alias) => {
      alias.addHook('onRoute', (route) => {
        route.schema = { ...route.schema, hide: true }
      })
      await alias.register(v1)
    },
    { prefix: '/api/v1' },
  )
  deps.loopback.bind(app)
  return app
}
