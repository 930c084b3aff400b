import type { FastifyInstance } from 'fastify'
import { type AppDeps, buildApp } from './app.ts'
import { type Config, onListeningPort, resolveSecretKey } from './config.ts'
import { systemClock } from './core/clock.ts'
import { SecretBox } from './core/secret-box.ts'
import { migrateToLatest } from './db/migrate.ts'
import { type OpenDatabase, openDatabase } from './db/open-database.ts'
import { Loopback } from './http/loopback.ts'
import { createJobQueue } from './jobs/queue.ts'
import { type RunningWorker, startWorker } from './jobs/worker.ts'
import { workerLoggerFrom } from './jobs/worker-logger.ts'
import type { Logger } from './logger.ts'
import { ApiKeyCache } from './modules/api-keys/cache.ts'
import { bootstrapDefaultTenant } from './modules/tenants/service.ts'
import { webhookEndpoints } from './modules/webhook-endpoints/registry.ts'

export interface RunningServer {
  app: FastifyInstance
  url: string
  /** Ordered shutdown: HTTP, worker, pools, embedded PostgreSQL. */
  close(): Promise<void>
}

export interface StartServerOptions {
  worker: boolean
  /** Migrate (and bootstrap) before serving; false where another process already did. */
  migrate?: boolean
  /** Told the first admin key as soon as the bootstrap committed it (before the listen). */
  onBootstrap?: (key: string) => void
}

/**
 * `payrail serve`: opens the database, migrates (and bootstraps an empty one),
 * starts the worker unless told not to, and listens.
 */
export async function startServer(
  config: Config,
  logger: Logger,
  options: StartServerOptions,
): Promise<RunningServer> {
  const database = await openDatabase(config, logger)
  let runner: RunningWorker | undefined
  let app: FastifyInstance | undefined
  const apiKeys = new ApiKeyCache()
  let closing = false
  const close = async () => {
    closing = true
    await app?.close()
    await runner?.stop()
    await apiKeys.stop()
    await webhookEndpoints.stop()
    await database.shutdown()
  }
  try {
    const bootstrap =
      options.migrate === false ? undefined : (await migrateAndBootstrap(database, logger)).after
    if (bootstrap) options.onBootstrap?.(bootstrap.key.key)
    const deps = { ...(await processDeps(config, database, logger)), apiKeys }
    apiKeys.start(database.url, logger)
    webhookEndpoints.start(database.url, logger)
    if (options.worker) runner = await startWorker(deps, { connectionString: database.url })
    app = await buildApp(deps)
    // While closing, each answer closes its connection: a keep-alive client's connection,
    // idle only once its request is answered, would otherwise hold the close for Node's
    // keep-alive timeout (72 s), past an orchestrator's grace period.
    app.addHook('onSend', async (_request, reply, payload) => {
      if (closing) reply.header('connection', 'close')
      return payload
    })
    const url = await app.listen({ port: config.port, host: config.host })
    const address = app.server.address()
    if (address !== null && typeof address === 'object') {
      config.publicUrl = onListeningPort(config.publicUrl, address.port)
    }
    return { app, url, close }
  } catch (error) {
    await close().catch((closeError) =>
      logger.error({ err: closeError }, 'shutdown after a failed start failed'),
    )
    throw error
  }
}

/**
 * What a process's handlers and jobs share, built once: the database, the system
 * clock, the secret box, the job queue, and the loopback that sandbox notifications
 * take (to `PAYRAIL_PUBLIC_URL` where this process serves no HTTP).
 */
export async function processDeps(
  config: Config,
  database: OpenDatabase,
  logger: Logger,
): Promise<AppDeps> {
  return {
    config,
    db: database.db,
    genericPlans: database.genericPlans,
    logger,
    clock: systemClock,
    secretBox: new SecretBox(await resolveSecretKey(config)),
    jobs: createJobQueue(database.db),
    loopback: new Loopback(config),
  }
}

/** Migrates; with `bootstrap` (as `serve` does), also creates tenant `default` and its first key on an empty database. */
export async function migrateAndBootstrap(
  database: OpenDatabase,
  logger: Logger,
  options = { bootstrap: true },
) {
  const result = await migrateToLatest(database.db, database.url, {
    workerLogger: workerLoggerFrom(logger),
    afterMigrate: async () => (options.bootstrap ? bootstrapDefaultTenant(database.db) : undefined),
  })
  if (result.applied.length > 0) logger.info({ migrations: result.applied }, 'migrations applied')
  return result
}
