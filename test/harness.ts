import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyPluginAsync, InjectOptions } from 'fastify'
import { inject } from 'vitest'
import { type AppDeps, buildApp } from '../src/app.ts'
import { type Config, loadConfig } from '../src/config.ts'
import { ManualClock } from '../src/core/clock.ts'
import type { Scope } from '../src/core/principal.ts'
import { SecretBox } from '../src/core/secret-box.ts'
import { createDbClient, type DbClient } from '../src/db/client.ts'
import type { Environment, Tenant } from '../src/db/database.ts'
import { Loopback } from '../src/http/loopback.ts'
import { createJobQueue } from '../src/jobs/queue.ts'
import { createLogger } from '../src/logger.ts'
import { ApiKeyCache } from '../src/modules/api-keys/cache.ts'
import { createApiKey } from '../src/modules/api-keys/service.ts'
import { createTenant } from '../src/modules/tenants/service.ts'
import { webhookEndpoints } from '../src/modules/webhook-endpoints/registry.ts'
import { createDatabaseFromTemplate, testDatabasePrefix } from './test-database.ts'

export interface TenantFixture {
  tenant: Tenant
  test: Environment
  live: Environment
  /** Admin key of the test environment. */
  key: string
  /** Admin key of the live environment. */
  liveKey: string
}

export interface ApiResponse<T> {
  status: number
  body: T
  headers: Record<string, string | string[] | number | undefined>
  text: string
}

export interface RequestOptions {
  /** The API key to send; `null` sends none. Defaults to the main tenant's test key. */
  key?: string | null
  headers?: Record<string, string>
  idempotencyKey?: string
}

export interface TestContext extends DbClient {
  url: string
  clock: ManualClock
  config: Config
  deps: AppDeps
  app: FastifyInstance
  /** Tenant created for this file, with test and live keys. */
  main: TenantFixture
  /** The main tenant's test environment, for calling services directly. */
  scope: Scope
  createTenantFixture(name?: string): Promise<TenantFixture>
  /** Another app on the same database: a second Payrail process, as far as PostgreSQL can tell. */
  buildSecondApp(options?: { extraRoutes?: FastifyPluginAsync }): Promise<FastifyInstance>
  request<T = unknown>(
    method: InjectOptions['method'],
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<ApiResponse<T>>
  get<T = unknown>(path: string, options?: RequestOptions): Promise<ApiResponse<T>>
  post<T = unknown>(path: string, body?: unknown, options?: RequestOptions): Promise<ApiResponse<T>>
  patch<T = unknown>(
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<ApiResponse<T>>
  put<T = unknown>(path: string, body?: unknown, options?: RequestOptions): Promise<ApiResponse<T>>
  delete<T = unknown>(path: string, options?: RequestOptions): Promise<ApiResponse<T>>
  close(): Promise<void>
}

export interface TestContextOptions {
  extraRoutes?: FastifyPluginAsync
  start?: Date
}

export const TEST_SECRET_KEY = Buffer.alloc(32, 7)

/**
 * The app on its own real PostgreSQL database (copied from the migrated template),
 * a tenant with test and live keys, a manual clock, and typed request helpers.
 *
 * @example
 * const ctx = await createTestContext()
 * const res = await ctx.get<{ items: unknown[] }>('/v1/api_keys')
 */
export async function createTestContext(options: TestContextOptions = {}): Promise<TestContext> {
  const name = `${testDatabasePrefix(inject('runId'))}${randomBytes(4).toString('hex')}`
  const url = await createDatabaseFromTemplate(
    inject('serverUrl'),
    inject('templateDatabase'),
    name,
  )
  const client = createDbClient(url, { max: 10 })
  const clock = new ManualClock(options.start ?? new Date('2026-01-15T12:00:00Z'))
  const config = loadConfig({
    DATABASE_URL: url,
    PAYRAIL_DATA_DIR: '/nonexistent',
    LOG_LEVEL: 'silent',
  })
  const logger = createLogger(process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent', 'stderr')
  const deps: AppDeps = {
    config: { ...config, secretKey: TEST_SECRET_KEY },
    db: client.db,
    genericPlans: client.genericPlans,
    logger,
    clock,
    secretBox: new SecretBox(TEST_SECRET_KEY),
    jobs: createJobQueue(client.db),
    loopback: new Loopback(config),
  }
  const apps: FastifyInstance[] = []
  const caches: ApiKeyCache[] = []
  /** Each app has its own API key cache, as each process does. */
  const makeApp = async (extraRoutes?: FastifyPluginAsync) => {
    const apiKeys = new ApiKeyCache()
    apiKeys.start(url, logger)
    caches.push(apiKeys)
    // The first app's cache is `ctx.deps.apiKeys`.
    if (apps.length === 0) deps.apiKeys = apiKeys
    const app = await buildApp(apps.length === 0 ? deps : { ...deps, apiKeys }, { extraRoutes })
    await app.ready()
    apps.push(app)
    return app
  }
  const app = await makeApp(options.extraRoutes)
  // The process's registry of webhook endpoints, as `payrail serve` starts it.
  webhookEndpoints.start(url, logger)

  const createTenantFixture = async (tenantName = 'Test tenant'): Promise<TenantFixture> => {
    const { tenant, environments } = await createTenant(client.db, { name: tenantName })
    const test = environments.find((e) => e.type === 'test')
    const live = environments.find((e) => e.type === 'live')
    if (!test || !live) throw new Error('tenant without environments')
    const key = await createApiKey(client.db, {
      tenantId: tenant.id,
      environmentId: test.id,
      role: 'admin',
    })
    const liveKey = await createApiKey(client.db, {
      tenantId: tenant.id,
      environmentId: live.id,
      role: 'admin',
    })
    return { tenant, test, live, key: key.key, liveKey: liveKey.key }
  }
  const main = await createTenantFixture('Main tenant')

  const request = async <T>(
    method: InjectOptions['method'],
    path: string,
    body?: unknown,
    requestOptions: RequestOptions = {},
  ): Promise<ApiResponse<T>> => {
    const headers: Record<string, string> = { ...requestOptions.headers }
    const key = requestOptions.key === undefined ? main.key : requestOptions.key
    if (key !== null) headers.authorization = `Bearer ${key}`
    if (requestOptions.idempotencyKey) headers['idempotency-key'] = requestOptions.idempotencyKey
    const response = await app.inject({
      method,
      url: path,
      headers,
      ...(body === undefined ? {} : { payload: body as InjectOptions['payload'] }),
    })
    const text = response.body
    const isJson = String(response.headers['content-type'] ?? '').includes('json')
    return {
      status: response.statusCode,
      body: (isJson && text ? JSON.parse(text) : text) as T,
      headers: response.headers,
      text,
    }
  }

  return {
    ...client,
    url,
    clock,
    config: deps.config,
    deps,
    app,
    main,
    scope: { tenantId: main.tenant.id, environmentId: main.test.id },
    createTenantFixture,
    buildSecondApp: (second = {}) => makeApp(second.extraRoutes),
    request,
    get: (path, o) => request('GET', path, undefined, o),
    post: (path, body, o) => request('POST', path, body ?? {}, o),
    patch: (path, body, o) => request('PATCH', path, body ?? {}, o),
    put: (path, body, o) => request('PUT', path, body ?? {}, o),
    delete: (path, o) => request('DELETE', path, undefined, o),
    async close() {
      await Promise.all(apps.map((a) => a.close()))
      await Promise.all([...caches.map((c) => c.stop()), webhookEndpoints.stop()])
      await client.close()
    },
  }
}

/** The `{"error":{…}}` body every failure has. */
export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> }
}
