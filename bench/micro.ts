/**
 * `npm run bench:micro`: the CPU one request costs this process (Payrail's handlers,
 * Kysely and node-postgres, without HTTP sockets: `fastify.inject`) and PostgreSQL,
 * for `create_link`, `offline_pay` (and `offline_pay_keyed`, each under an `Idempotency-Key`)
 * and `webhook_apply`, at 10 requests in flight, and `offline_floor`, an offline payment's
 * database work without Payrail's logic (`bench/floor.ts`), with `offline_floor_grouped`,
 * that work for groups of concurrent requests in one transaction. For profiling
 * the write path between full `npm run bench` runs; its numbers are not the
 * bench's (no HTTP, no load generator), only comparable with each other.
 */
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { parseArgs } from 'node:util'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/open-database.ts'
import { createLogger } from '../src/logger.ts'
import { ApiKeyCache } from '../src/modules/api-keys/cache.ts'
import { webhookEndpoints } from '../src/modules/webhook-endpoints/registry.ts'
import { processDeps } from '../src/server.ts'
import { provisionDatabase, seedHistory, seedInvoices, seedPendingPayments } from './database.ts'
import { FLOOR_PATH, GROUPED_FLOOR_PATH, registerFloor } from './floor.ts'
import type { LoadRequest } from './load.ts'
import { postgresCpuSeconds } from './proc.ts'
import { invoicePayment, SECRET_KEY, sandboxCompletions } from './requests.ts'

const { values } = parseArgs({
  options: {
    requests: { type: 'string' },
    connections: { type: 'string' },
    rounds: { type: 'string' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string' },
    history: { type: 'string' },
  },
})
const requests = Number(values.requests ?? 3000)
const connections = Number(values.connections ?? 10)
const rounds = Number(values.rounds ?? 3)
/** Payments seeded for `list` (`--history`, default 100,000). */
const history = Number(values.history ?? 100_000)
let historySeeded = false

const db = await provisionDatabase({ keep: values.keep })
// Errors only: the pool's last connections may still be closing when the run drops its
// database, and each would log a warning that means nothing here.
const logger = createLogger('error', 'stderr')
const config = loadConfig({
  DATABASE_URL: db.url,
  PAYRAIL_SECRET_KEY: SECRET_KEY,
  LOG_LEVEL: 'warn',
})
const database = await openDatabase(config, logger)
const apiKeys = new ApiKeyCache()
apiKeys.start(database.url, logger)
// As `payrail serve` starts it: recording an event then reads no endpoints.
webhookEndpoints.start(database.url, logger)
const app = await buildApp({ ...(await processDeps(config, database, logger)), apiKeys })
registerFloor(app, database.db, db.environmentId)
const completion = sandboxCompletions(db.tenantId, db.environmentId)
const inject = (request: LoadRequest) => ({
  method: request.method,
  url: request.path,
  headers: request.headers,
  payload: request.body,
})

type Inject = ReturnType<typeof inject>

/** `n` new invoices, each paid through the floor's route at `path`. */
async function floorRequests(path: string, prefix: string, n: number): Promise<Inject[]> {
  return (await seedInvoices(db, prefix, n)).map((id) =>
    inject({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ invoice_id: id }),
    }),
  )
}
const scenarios: Record<string, (n: number, round: number) => Promise<Inject[]>> = {
  create_link: async (n, round) =>
    (await seedInvoices(db, `link${round}`, n)).map((id) =>
      inject(
        invoicePayment(db.key, id, {
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
        }),
      ),
    ),
  offline_pay: async (n, round) =>
    (await seedInvoices(db, `off${round}`, n)).map((id) =>
      inject(invoicePayment(db.key, id, { payment_method_type: 'OFFLINE' })),
    ),
  // The same invoices' payments through Payrail's database layer without its logic (bench/floor.ts).
  offline_floor: (n, round) => floorRequests(FLOOR_PATH, `floor${round}`, n),
  // The same, written by groups of concurrent requests in one transaction (bench/floor.ts).
  offline_floor_grouped: (n, round) => floorRequests(GROUPED_FLOOR_PATH, `group${round}`, n),
  offline_pay_keyed: async (n, round) =>
    (await seedInvoices(db, `key${round}`, n)).map((id) =>
      inject(invoicePayment(db.key, id, { payment_method_type: 'OFFLINE' }, true)),
    ),
  // A page of 50 SUCCEEDED payments of the last 30 days, as the bench's `list` asks, over
  // `--history` payments (seeded once, before the first round).
  list: async (n) => {
    if (!historySeeded) {
      await seedHistory(db, history, () => undefined)
      historySeeded = true
    }
    const to = Math.floor(Date.now() / 1000)
    const path = `/v1/payments?status=SUCCEEDED&from_date=${to - 30 * 86_400}&to_date=${to}&limit=50`
    return Array.from({ length: n }, () =>
      inject({ method: 'GET', path, headers: { authorization: `Bearer ${db.key}` } }),
    )
  },
  webhook_apply: async (n, round) =>
    (await seedPendingPayments(db, `hook${round}`, n, String.fromCharCode(65 + round))).map((id) =>
      inject(completion(id)),
    ),
}

let failures = 0
for (const [name, build] of Object.entries(scenarios)) {
  if (values.only && !values.only.split(',').includes(name)) continue
  for (let round = 0; round < rounds; round++) {
    const batch = await build(requests, round)
    // As the bench does after seeding: plans made on fresh statistics (this server may run without autovacuum).
    await db.client.pool.query('analyze')
    let next = 0
    let failed = 0
    // `--profile FILE`: a V8 CPU profile of the measured requests after the first round (warm).
    const profiler = values.profile && round > 0 ? new Session() : undefined
    if (profiler) {
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.start')
    }
    const cpu0 = process.cpuUsage()
    const pg0 = postgresCpuSeconds()
    const elu0 = performance.eventLoopUtilization()
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (next < batch.length) {
          const response = await app.inject(batch[next++] as Inject)
          if (response.statusCode >= 300 && failed++ === 0)
            console.error(response.statusCode, response.body)
        }
      }),
    )
    const wall = performance.now() - t0
    const elu = performance.eventLoopUtilization(elu0)
    const cpu = process.cpuUsage(cpu0)
    const pg = postgresCpuSeconds() - pg0
    if (profiler) {
      const { profile } = await profiler.post('Profiler.stop')
      await writeFile(`${values.profile}.${name}.${round}.cpuprofile`, JSON.stringify(profile))
      profiler.disconnect()
    }
    const per = (ms: number) => (ms / batch.length).toFixed(3)
    console.log(
      `${name.padEnd(14)} round ${round}: ${(batch.length / (wall / 1000)).toFixed(0)} req/s, node ${per((cpu.user + cpu.system) / 1000)} ms/req (user ${per(cpu.user / 1000)}), postgres ${per(pg * 1000)} ms/req, event loop ${(elu.utilization * 100).toFixed(0)}% busy, failed ${failed}`,
    )
    failures += failed
  }
}
await app.close()
await apiKeys.stop()
await webhookEndpoints.stop()
await database.shutdown()
await db.close()
// A write that failed makes the measurement meaningless: the run fails with it (CI runs a short one).
if (failures > 0) process.exitCode = 1
