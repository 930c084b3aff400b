import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Clock } from '../core/clock.ts'
import { AppError } from '../core/errors.ts'
import type { Principal } from '../core/principal.ts'
import type { Db } from '../db/client.ts'
import type { Role } from '../db/database.ts'
import type { ApiKeyCache } from '../modules/api-keys/cache.ts'
import { authenticate } from '../modules/api-keys/service.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false` for routes without an API key: operations, inbound webhooks, hosted pages. */
    auth?: false
    /** Roles allowed on the route; `['admin']` when not set. */
    roles?: readonly Role[]
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

const FAILURE_MESSAGES = {
  unknown: 'Invalid API key',
  revoked: 'This API key has been revoked',
  expired: 'This API key has expired',
} as const

/**
 * Authenticates every route that does not opt out: the key from
 * `Authorization: Bearer KEY` or `x-api-key: KEY`, then the `X-Environment-ID`
 * rule, then the route's roles.
 */
export function registerAuth(
  app: FastifyInstance,
  deps: { db: Db; clock: Clock; apiKeys?: ApiKeyCache },
): void {
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request) => {
    if (request.is404 || request.routeOptions.config.auth === false) return
    const secret = presentedKey(request)
    if (!secret) {
      throw new AppError(
        'unauthorized',
        "Missing API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
      )
    }
    const result = await authenticate(deps.db, secret, deps.clock, deps.apiKeys)
    if ('failure' in result) throw new AppError('unauthorized', FAILURE_MESSAGES[result.failure])
    const { principal } = result

    const environmentHeader = singleHeader(request.headers['x-environment-id'])
    if (
      environmentHeader !== undefined &&
      environmentHeader !== principal.environmentId &&
      environmentHeader !== principal.environmentType
    ) {
      throw new AppError('forbidden', "X-Environment-ID does not match the API key's environment", {
        environment_id: environmentHeader,
      })
    }
    const roles = request.routeOptions.config.roles ?? ['admin']
    if (!roles.includes(principal.role)) {
      throw new AppError('forbidden', 'This key is not allowed to use this route', {
        role: principal.role,
      })
    }
    request.principal = principal
  })
}

/** The authenticated caller of a route that requires auth. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('unauthorized', 'Authentication required')
  return request.principal
}

function presentedKey(request: FastifyRequest): string | undefined {
  const authorization = singleHeader(request.headers.authorization)
  if (authorization) {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    if (bearer?.[1]) return bearer[1]
    // Stripe's clients may send the key as the Basic username: `curl -u sk_test_…:`.
    const basic = /^Basic\s+(\S+)\s*$/i.exec(authorization)
    if (basic?.[1])
      return Buffer.from(basic[1], 'base64').toString('utf8').split(':')[0] || undefined
  }
  return singleHeader(request.headers['x-api-key'])?.trim() || undefined
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
