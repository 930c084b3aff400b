import { parseArgs } from 'node:util'
import { isClusterWorker, type RunningCluster, runClusterWorker, startCluster } from './cluster.ts'
import { type Config, ConfigError, loadConfig } from './config.ts'
import { systemClock } from './core/clock.ts'
import { ENVIRONMENT_TYPES, type EnvironmentType } from './db/database.ts'
import { type OpenDatabase, openDatabase } from './db/open-database.ts'
import { seedDemo } from './demo/seed-demo.ts'
import { startWorker } from './jobs/worker.ts'
import { createLogger, type Logger } from './logger.ts'
import { createApiKey, revokeKey } from './modules/api-keys/service.ts'
import { backfillStripe } from './modules/stripe-sync/backfill.ts'
import {
  createTenant,
  DEFAULT_TENANT_ID,
  requireEnvironment,
  requireTenant,
} from './modules/tenants/service.ts'
import { migrateAndBootstrap, processDeps, startServer } from './server.ts'

const USAGE = `Usage: payrail <command> [options]

Commands:
  serve [--port N] [--host H] [--no-worker] [--workers N]
                                              migrate, then serve the API (and run jobs);
                                              --workers N: N HTTP processes on one port
  worker                                      run background jobs only
  migrate                                     apply database migrations and exit
  keys create [--tenant ID] [--environment test|live] [--role admin] [--json]
                                              print a new secret API key
  keys revoke KEY_ID [--tenant ID] [--environment test|live]
                                              revoke an API key at once
  tenants create --name NAME [--json]         create a tenant with test and live environments
  demo [--tenant ID] [--customers N] [--json] fill the tenant's test environment with a year of
                                              realistic customers, orders, invoices and subscriptions
  sync stripe [--tenant ID] [--environment test|live] [--json]
                                              copy the connected Stripe account's billing objects

Environment: PORT, HOST, DATABASE_URL, PAYRAIL_DATABASE_POOLER, PAYRAIL_DATA_DIR,
PAYRAIL_SECRET_KEY, PAYRAIL_PUBLIC_URL, LOG_LEVEL (see README.md).`

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return command === undefined ? 2 : 0
  }
  // `payrail serve --help`, `payrail keys create -h`: the usage, as for `payrail --help`.
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  switch (command) {
    case 'serve':
      return serve(rest)
    case 'worker':
      return worker(rest)
    case 'migrate':
      return migrate(rest)
    case 'keys':
      return keys(rest)
    case 'tenants':
      return tenants(rest)
    case 'demo':
      return demo(rest)
    case 'sync':
      return sync(rest)
    default:
      throw new UsageError(`Unknown command '${command}'`)
  }
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'no-worker': { type: 'boolean' },
      workers: { type: 'string' },
    },
  })
  const config = loadConfig(process.env, { port: parsePortOption(values.port), host: values.host })
  const logger = createLogger(config.logLevel)
  if (isClusterWorker()) return runClusterWorker(config, logger)
  const workers = parseWorkersOption(values.workers)
  // Listened for from the start: a signal while the server starts (the embedded PostgreSQL
  // up, migrations running) lets the start finish, then stops everything in order, instead
  // of killing Node with PostgreSQL left running or being swallowed by a listener.
  const stop = waitForSignal(logger)
  // The key the bootstrap made, as soon as it is committed: a start that then fails (the port
  // taken) still shows it, or nobody ever would (the next start finds the tenant, and makes none).
  let created: string | undefined
  const onBootstrap = (key: string) => {
    created = key
  }
  const keyLines = (key: string) => [
    "Created tenant 'default' with environments test and live.",
    'Test API key (role admin), shown once; store it now:',
    `  ${key}`,
  ]
  let server: RunningCluster
  try {
    server =
      workers > 1
        ? await startCluster(config, logger, { workers, worker: !values['no-worker'], onBootstrap })
        : await startServer(config, logger, { worker: !values['no-worker'], onBootstrap })
  } catch (error) {
    if (created) process.stdout.write(`${keyLines(created).join('\n')}\n`)
    throw error
  }
  // One write: whoever reads the listening line has the bootstrap key with it.
  process.stdout.write(
    [
      `Payrail listening on ${server.url} (API reference: ${server.url}/docs)`,
      ...(created ? keyLines(created) : []),
      '',
    ].join('\n'),
  )
  await stop
  await server.close()
  return 0
}

async function worker(args: string[]): Promise<number> {
  parseArgs({ args, options: {} })
  const config = loadConfig(process.env)
  const logger = createLogger(config.logLevel)
  // Listened for from the start, as `serve` does: a signal while the worker starts lets the
  // start finish, then stops it and the embedded PostgreSQL it started (before, the signal
  // killed Node with PostgreSQL left running).
  const stop = waitForSignal(logger)
  const database = await openDatabase(config, logger)
  try {
    // No bootstrap: the first admin key is `serve`'s to print, and one made here is never shown.
    await migrateAndBootstrap(database, logger, { bootstrap: false })
    // No HTTP server in this process: retried sandbox notifications go to PAYRAIL_PUBLIC_URL.
    const deps = await processDeps(config, database, logger)
    const runner = await startWorker(deps, { connectionString: database.url })
    logger.info('worker started')
    await stop
    await runner.stop()
  } finally {
    await database.shutdown()
  }
  return 0
}

async function migrate(args: string[]): Promise<number> {
  parseArgs({ args, options: {} })
  return withDatabase(async (database, logger) => {
    const { applied } = await migrateAndBootstrap(database, logger, { bootstrap: false })
    process.stdout.write(
      applied.length > 0 ? `Applied ${applied.join(', ')}\n` : 'Database is up to date\n',
    )
    return 0
  })
}

async function keys(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      tenant: { type: 'string', default: DEFAULT_TENANT_ID },
      environment: { type: 'string', default: 'test' },
      role: { type: 'string', default: 'admin' },
      json: { type: 'boolean', default: false },
    },
  })
  const environmentType = parseEnvironment(values.environment)
  if (sub === 'create') {
    // A stray word (`keys create live`) is refused, not dropped: the key printed would be
    // another one than the operator asked for (a test key of tenant `default`).
    if (positionals.length > 0) {
      throw new UsageError(
        `keys create takes no arguments, got '${positionals.join(' ')}' (options: --tenant ID, --environment test|live)`,
      )
    }
    if (values.role !== 'admin') {
      throw new UsageError(
        "--role must be 'admin'; customer tokens (role user) come from POST /v1/customers/:id/tokens",
      )
    }
    return withDatabase(async (database, logger) => {
      await migrateAndBootstrap(database, logger, { bootstrap: false })
      const tenant = await requireTenantOrDefault(database, values.tenant)
      const environment = await requireEnvironment(database.db, tenant.id, environmentType)
      const { key } = await createApiKey(
        database.db,
        {
          tenantId: tenant.id,
          environmentId: environment.id,
          role: 'admin',
          name: 'Created with payrail keys create',
        },
        systemClock,
      )
      const out = { key, tenant_id: tenant.id, environment_id: environment.id, role: 'admin' }
      process.stdout.write(values.json ? `${JSON.stringify(out)}\n` : `${key}\n`)
      return 0
    })
  }
  if (sub === 'revoke') {
    const [id, ...more] = positionals
    if (!id) throw new UsageError('keys revoke needs the key id (key_…)')
    // One key per command: revoking the first of several and reporting success would leave
    // the others (maybe the leaked one) working.
    if (more.length > 0) {
      throw new UsageError(
        `keys revoke takes one key id, got ${positionals.length}: ${positionals.join(' ')} (revoke each with its own command)`,
      )
    }
    return withDatabase(async (database) => {
      const tenant = await requireTenant(database.db, values.tenant)
      const environment = await requireEnvironment(database.db, tenant.id, environmentType)
      await revokeKey(
        database.db,
        { tenantId: tenant.id, environmentId: environment.id },
        id,
        systemClock,
      )
      process.stdout.write(`Revoked ${id}\n`)
      return 0
    })
  }
  throw new UsageError("Use 'payrail keys create' or 'payrail keys revoke KEY_ID'")
}

async function tenants(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'create') throw new UsageError("Use 'payrail tenants create --name NAME'")
  const { values } = parseArgs({
    args: rest,
    options: { name: { type: 'string' }, json: { type: 'boolean', default: false } },
  })
  const name = values.name?.trim()
  if (!name) throw new UsageError('tenants create needs --name NAME')
  return withDatabase(async (database, logger) => {
    await migrateAndBootstrap(database, logger, { bootstrap: false })
    const { tenant, environments } = await createTenant(database.db, { name })
    const out = {
      id: tenant.id,
      name: tenant.name,
      environments: environments.map((e) => ({ id: e.id, type: e.type, name: e.name })),
    }
    if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`)
    else {
      process.stdout.write(`Created tenant ${tenant.id} (${tenant.name})\n`)
      for (const e of out.environments) process.stdout.write(`  ${e.type}: ${e.id}\n`)
      process.stdout.write(`Make a key with: payrail keys create --tenant ${tenant.id}\n`)
    }
    return 0
  })
}

async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: 'string', default: DEFAULT_TENANT_ID },
      customers: { type: 'string', default: '24' },
      json: { type: 'boolean', default: false },
    },
  })
  const customers = Number(values.customers)
  if (!Number.isInteger(customers) || customers < 8 || customers > 500) {
    throw new UsageError('--customers must be an integer from 8 to 500')
  }
  return withDatabase(async (database, logger, _config, signal) => {
    await migrateAndBootstrap(database, logger, { bootstrap: false })
    const tenant = await requireTenantOrDefault(database, values.tenant)
    const environment = await requireEnvironment(database.db, tenant.id, 'test')
    // All or nothing: stopped (Ctrl-C), it writes nothing, and it can run again.
    const summary = await seedDemo(
      { db: database.db, logger },
      { tenantId: tenant.id, environmentId: environment.id },
      { customers, signal },
    )
    if (values.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`)
    } else {
      process.stdout.write(
        [
          `Demo data for tenant ${tenant.id}, environment test (${environment.id}):`,
          `  ${summary.customers} customers, ${summary.products} products, ${summary.discounts} discount codes`,
          `  ${summary.orders.total} orders, ${summary.subscriptions.total} subscriptions, ${summary.renewals} renewals`,
          `  ${summary.invoices.total} invoices: ${formatCounts(summary.invoices.byInvoiceStatus)}`,
          `  payment status: ${formatCounts(summary.invoices.byPaymentStatus)}`,
          '',
        ].join('\n'),
      )
    }
    return 0
  })
}

async function sync(args: string[]): Promise<number> {
  const [source, ...rest] = args
  if (source !== 'stripe') throw new UsageError("Use 'payrail sync stripe'")
  const { values } = parseArgs({
    args: rest,
    options: {
      tenant: { type: 'string', default: DEFAULT_TENANT_ID },
      environment: { type: 'string', default: 'test' },
      json: { type: 'boolean', default: false },
    },
  })
  const environmentType = parseEnvironment(values.environment)
  return withDatabase(async (database, logger, config) => {
    await migrateAndBootstrap(database, logger, { bootstrap: false })
    const tenant = await requireTenantOrDefault(database, values.tenant)
    const environment = await requireEnvironment(database.db, tenant.id, environmentType)
    const deps = await processDeps(config, database, logger)
    const counts = await backfillStripe(
      deps,
      { tenantId: tenant.id, environmentId: environment.id },
      (type, done) => {
        if (!values.json) process.stderr.write(`\rsyncing ${type.padEnd(22)} ${done}`)
      },
    )
    if (values.json) process.stdout.write(`${JSON.stringify(counts)}\n`)
    else process.stderr.write(`\nSynced ${formatCounts(counts)}\n`)
    // Some objects could not be synced (each logged): a script running it should know.
    return counts.failed > 0 ? 1 : 0
  })
}

function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ')
}

/**
 * Runs a one-shot command against the database, logging to stderr so stdout stays clean
 * for `--json`. `signal` is aborted on Ctrl-C (or SIGTERM): work that must not stop
 * half-way (the demo's one transaction) stops at its next statement, and rolls back.
 */
async function withDatabase(
  run: (
    database: OpenDatabase,
    logger: Logger,
    config: Config,
    signal: AbortSignal,
  ) => Promise<number>,
) {
  const config = loadConfig(process.env)
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'stderr')
  // Ctrl-C (or SIGTERM) during the command: it stops there, and the embedded PostgreSQL it
  // started is stopped (a signal during the start lets the start finish first). Before, the
  // signal killed Node with that PostgreSQL left running.
  const interrupted = waitForSignal(logger)
  const stopping = new AbortController()
  interrupted.then((signal) => stopping.abort(new Error(`Stopped by ${signal}`)))
  const database = await openDatabase(config, logger, { maxConnections: 4 })
  try {
    const work = run(database, logger, config, stopping.signal)
    // Its end after the signal (a query on a pool being closed) is not this command's answer.
    work.catch(() => undefined)
    const outcome = await Promise.race([
      work.then((code) => ({ code })),
      interrupted.then((signal) => ({ code: signal === 'SIGINT' ? 130 : 143 })),
    ])
    return outcome.code
  } finally {
    await database.shutdown()
  }
}

/** Tenant `default` is created on first use, so `keys create` works on a fresh database. */
async function requireTenantOrDefault(database: OpenDatabase, id: string) {
  if (id === DEFAULT_TENANT_ID) {
    await createTenant(database.db, { id: DEFAULT_TENANT_ID, name: 'Default' }).catch(
      () => undefined,
    )
  }
  return requireTenant(database.db, id)
}

function parseEnvironment(value: string): EnvironmentType {
  const found = ENVIRONMENT_TYPES.find((type) => type === value)
  if (!found) throw new UsageError(`--environment must be one of ${ENVIRONMENT_TYPES.join(', ')}`)
  return found
}

function parseWorkersOption(value: string | undefined): number {
  if (value === undefined) return 1
  const workers = Number(value)
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new UsageError(`--workers must be 1–64, got '${value}'`)
  return workers
}

function parsePortOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be 0–65535, got '${value}'`)
  return port
}

/** The first SIGINT or SIGTERM; a second one exits at once. */
function waitForSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down')
      // A second signal means "now".
      process.once('SIGINT', () => process.exit(130))
      process.once('SIGTERM', () => process.exit(143))
      resolve(signal)
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof UsageError) {
      process.stderr.write(`payrail: ${error.message}\n`)
      if (error instanceof UsageError) process.stderr.write(`\n${USAGE}\n`)
      process.exit(2)
    }
    if (
      error instanceof TypeError &&
      (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`payrail: ${error.message}\n\n${USAGE}\n`)
      process.exit(2)
    }
    process.stderr.write(`payrail: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
