import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { parseArgs } from 'node:util'
import {
  type BenchDatabase,
  checkpointCount,
  provisionDatabase,
  seedHistory,
  seedInvoices,
  seedPendingPayments,
} from './database.ts'
import { type LoadRequest, type LoadStats, round, runLoad } from './load.ts'
import { runPgbench } from './pgbench.ts'
import { postgresCpuSeconds, processCpuSeconds } from './proc.ts'
import { completionEventId, invoicePayment, SECRET_KEY, sandboxCompletions } from './requests.ts'
import { type BenchServer, startServer } from './server.ts'

/**
 * `npm run bench`: Payrail against the physical limit of its database, in one run.
 * A fresh database, a Payrail server in its own process, load from this process
 * (autocannon) after a warm-up, and two baselines measured in the same run on the
 * same machine: pgbench (TPC-B-like, same clients) for the write scenarios and a
 * trivial route of the same server for the HTTP floor.
 */
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    connections: { type: 'string', default: '10' },
    seconds: { type: 'string' },
    history: { type: 'string' },
    workers: { type: 'string' },
    only: { type: 'string' },
    profile: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'node-args': { type: 'string' },
    'server-log': { type: 'string' },
  },
})
const quick = values.quick ?? false
const connections = Number(values.connections)
/** HTTP processes of the server (`payrail serve --workers N`). */
const workers = Number(values.workers ?? 1)
const seconds = Number(values.seconds ?? (quick ? 2 : 15))
const warmup = quick ? 1 : 3
const stormSeconds = quick ? 1 : 3
const historyRows = Number(values.history ?? (quick ? 20_000 : 1_000_000))
const poolSize = quick ? 6_000 : 60_000
/** `--only create_link,list`: run just these scenarios (the baselines always run). */
const only = values.only ? new Set(values.only.split(',')) : undefined
const runs = (name: string) => !only || only.has(name)
/** `--profile DIR`: the server writes a V8 CPU profile of the run there (`node --cpu-prof`). */
/** `--node-args "--max-semi-space-size=16"`: more flags for the server's Node, after its own. */
const nodeArgs = [
  ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : []),
  ...(values['node-args']?.split(/\s+/).filter(Boolean) ?? []),
]

interface ScenarioResult extends LoadStats {
  ratio_to_baseline: number | null
  baseline: 'pgbench' | 'http_floor'
  rss_peak_mb: number
  /** Checkpoints PostgreSQL began during the measured run (each makes the next writes dearer). */
  checkpoints?: number
  /** CPU the Payrail process and all of PostgreSQL spent per request: what limits the scenario. */
  server_cpu_ms_per_request: number
  postgres_cpu_ms_per_request: number
  /**
   * The server's garbage-collection pauses per request (its `/metrics`,
   * `nodejs_gc_duration_seconds`): time its event loop stood still. One process only.
   */
  gc_ms_per_request?: number
  [extra: string]: unknown
}

async function main() {
  const started = Date.now()
  log(
    `Payrail bench (${quick ? 'quick' : 'full'}): ${connections} connections, ${seconds}s per scenario after ${warmup}s warm-up`,
  )
  const db = await provisionDatabase({ keep: values.keep })
  let server: BenchServer | undefined
  try {
    log('seeding invoices and pending payments')
    const linkInvoices = await seedInvoices(db, 'link', poolSize)
    const offlineInvoices = await seedInvoices(db, 'offline', poolSize)
    const keyedInvoices = runs('offline_pay_keyed') ? await seedInvoices(db, 'keyed', poolSize) : []
    const pending = await seedPendingPayments(db, 'hook', poolSize, 'W')
    const storm = await seedPendingPayments(db, 'storm', 1, 'S')
    const seedStart = Date.now()
    await seedHistory(db, historyRows, (done) =>
      progress('seeding payment history', done, historyRows),
    )
    process.stderr.write('\n')
    const seedSeconds = (Date.now() - seedStart) / 1000
    log(`seeded ${historyRows.toLocaleString('en')} payments in ${seedSeconds.toFixed(1)}s`)

    // pgbench runs before the write scenarios and again after them: a machine's speed drifts
    // within a run (by a tenth or more on a shared virtual machine), and the write scenarios
    // are measured against the mean of the two runs that bracket them.
    const runBaseline = async (when: 'before' | 'after') => {
      log(`baseline: pgbench (${when} the write scenarios)`)
      const cpu = postgresCpuSeconds()
      const checkpoints = await checkpointCount(db)
      const measured = await runPgbench(db.pgbenchUrl, connections, seconds)
      return (
        measured && {
          ...measured,
          postgres_cpu_ms_per_transaction: round(
            ((postgresCpuSeconds() - cpu) * 1000) / Math.max(1, measured.tps * seconds),
          ),
          checkpoints: (await checkpointCount(db)) - checkpoints,
        }
      )
    }
    const pgbenchRuns = [await runBaseline('before')]
    server = await startServer(
      { DATABASE_URL: db.url, PAYRAIL_SECRET_KEY: SECRET_KEY },
      // `--server-log FILE`: what the server prints (with `--node-args=--trace-gc`, its collections).
      { workers, nodeArgs, log: values['server-log'] },
    )
    const payInvoice = (invoiceId: string, method: Record<string, string>, idempotent = false) =>
      invoicePayment(db.key, invoiceId, method, idempotent)

    const measure = async (
      name: string,
      next: () => LoadRequest,
      distinct: number,
      baseline: 'pgbench' | 'http_floor',
      base: number | undefined,
    ) => {
      if (!server) throw new Error('no server')
      // The warm-up takes its share of the distinct requests, so the measured run sends fresh ones.
      const warmupShare = distinct === 1 ? 1 : Math.ceil((distinct * warmup) / (warmup + seconds))
      const warm = await runLoad({
        url: server.url,
        connections,
        duration: warmup,
        next,
        distinct: warmupShare,
      })
      server.resetRssPeak()
      const checkpoints = await checkpointCount(db)
      const cpu = cpuMeter(server)
      const gc = await gcSeconds(server.url)
      const measured = distinct === 1 ? 1 : distinct - warmupShare
      const stats = await runLoad({
        url: server.url,
        connections,
        duration: seconds,
        next,
        distinct: measured,
      })
      // Past its distinct requests, the load generator sends them again: a paid invoice's
      // payment is refused (a non-2xx), but a keyed one is replayed, a cheap 201 that
      // would pass for a write. The pools must outlast the run.
      const wrapped = distinct > 1 && (warm.requests > warmupShare || stats.requests > measured)
      const result: ScenarioResult = {
        ...stats,
        ratio_to_baseline: base ? round(stats.rps / base) : null,
        baseline,
        rss_peak_mb: server.rssPeakMb(),
        ...cpu.perRequest(stats.requests),
        ...(workers === 1 && {
          gc_ms_per_request: round(
            (((await gcSeconds(server.url)) - gc) * 1000) / Math.max(1, stats.requests),
          ),
        }),
        checkpoints: (await checkpointCount(db)) - checkpoints,
        ...(wrapped && { wrapped: true }),
      }
      log(
        `${name}: ${stats.rps} req/s, p99 ${stats.p99_ms} ms, errors ${stats.errors}, non-2xx ${stats.non_2xx}`,
      )
      return result
    }

    const floor = await measure(
      'http_floor',
      () => ({ method: 'GET', path: '/health', headers: {} }),
      1,
      'http_floor',
      undefined,
    )
    const scenarios: Record<string, ScenarioResult> = {}

    if (runs('create_link')) {
      scenarios.create_link = await measure(
        'create_link',
        cycle(linkInvoices, (invoiceId) =>
          payInvoice(invoiceId, {
            payment_method_type: 'PAYMENT_LINK',
            payment_gateway: 'sandbox',
          }),
        ),
        poolSize,
        'pgbench',
        undefined,
      )
    }

    const completion = sandboxCompletions(db.tenantId, db.environmentId)
    if (runs('webhook_apply')) {
      scenarios.webhook_apply = await measure(
        'webhook_apply',
        cycle(pending, completion),
        poolSize,
        'pgbench',
        undefined,
      )
    }

    if (runs('offline_pay')) {
      scenarios.offline_pay = await measure(
        'offline_pay',
        cycle(offlineInvoices, (invoiceId) =>
          payInvoice(invoiceId, { payment_method_type: 'OFFLINE' }),
        ),
        poolSize,
        'pgbench',
        undefined,
      )
    }

    // Not a target of its own: what an `Idempotency-Key` adds to `offline_pay` (its claim
    // and the stored response), as clients that retry send one with every POST.
    if (runs('offline_pay_keyed')) {
      scenarios.offline_pay_keyed = await measure(
        'offline_pay_keyed',
        cycle(keyedInvoices, (invoiceId) =>
          payInvoice(invoiceId, { payment_method_type: 'OFFLINE' }, true),
        ),
        poolSize,
        'pgbench',
        undefined,
      )
    }

    const writes = Object.values(scenarios)
    if (writes.length > 0) pgbenchRuns.push(await runBaseline('after'))
    const pgbench = bracketed(pgbenchRuns)
    for (const scenario of writes) {
      if (!pgbench) break
      scenario.ratio_to_baseline = round(scenario.rps / pgbench.tps)
      scenario.ratio_range = pgbench.tps_runs
        .map((tps) => round(scenario.rps / tps))
        .sort((a, b) => a - b)
    }

    if (runs('list')) {
      const to = Math.floor(Date.now() / 1000)
      const from = to - 30 * 86_400
      scenarios.list = await measure(
        'list',
        () => ({
          method: 'GET',
          path: `/v1/payments?status=SUCCEEDED&from_date=${from}&to_date=${to}&limit=50`,
          headers: { authorization: `Bearer ${db.key}` },
        }),
        1,
        'http_floor',
        floor.rps,
      )
      scenarios.list.rows_in_table = historyRows + poolSize * 2
    }

    if (runs('duplicate_storm')) {
      scenarios.duplicate_storm = await duplicateStorm(server, db, completion, storm[0] ?? '')
    }

    const results = {
      generated_at: new Date().toISOString(),
      mode: quick ? 'quick' : 'full',
      connections,
      server_workers: workers,
      load_generator: floor.generator,
      seconds_per_scenario: seconds,
      scenarios,
      baseline: {
        pgbench: pgbench ?? null,
        http_floor: {
          rps: floor.rps,
          p50_ms: floor.p50_ms,
          p95_ms: floor.p95_ms,
          p99_ms: floor.p99_ms,
        },
      },
      seeding: {
        rows: historyRows,
        seconds: round(seedSeconds),
        rows_per_second: Math.round(historyRows / seedSeconds),
      },
      machine: {
        cpus: os.cpus().length,
        cpu_model: os.cpus()[0]?.model ?? 'unknown',
        memory_gb: Math.round(os.totalmem() / 2 ** 30),
        node: process.version,
        postgres: process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded',
      },
      total_seconds: round((Date.now() - started) / 1000),
    }
    await mkdir('bench/results', { recursive: true })
    const file = quick ? 'bench/results/quick.json' : 'bench/results/latest.json'
    await writeFile(file, `${JSON.stringify(results, null, 2)}\n`)
    printTable(results.scenarios, results.baseline)
    log(`wrote ${file}`)
    const failed = Object.entries(scenarios).filter(
      ([, s]) => s.errors > 0 || s.non_2xx > 0 || s.wrapped === true,
    )
    if (scenarios.duplicate_storm?.applied_once === false || failed.length > 0) {
      log(
        `FAILED: ${failed.map(([n]) => n).join(', ') || 'duplicate_storm applied more than once'}`,
      )
      process.exitCode = 1
    }
  } finally {
    await server?.stop()
    await db.close()
  }
}

/**
 * pgbench's runs as one baseline: the mean of their tps, latency and CPU per transaction,
 * each run's tps (`tps_runs`), and the checkpoints met in all.
 */
function bracketed(
  runs: (
    | {
        tps: number
        latency_avg_ms: number
        clients: number
        postgres_cpu_ms_per_transaction: number
        checkpoints: number
      }
    | undefined
  )[],
) {
  const done = runs.filter((run) => run !== undefined)
  if (done.length === 0) return undefined
  const mean = (pick: (run: (typeof done)[number]) => number) =>
    done.reduce((sum, run) => sum + pick(run), 0) / done.length
  return {
    tps: Math.round(mean((run) => run.tps)),
    tps_runs: done.map((run) => run.tps),
    latency_avg_ms: round(mean((run) => run.latency_avg_ms)),
    clients: done[0]?.clients ?? 0,
    postgres_cpu_ms_per_transaction: round(mean((run) => run.postgres_cpu_ms_per_transaction)),
    checkpoints: done.reduce((sum, run) => sum + run.checkpoints, 0),
  }
}

/** The same signed completion webhook from 50 connections at once: it must apply exactly once. */
async function duplicateStorm(
  server: BenchServer,
  db: BenchDatabase,
  completion: (paymentId: string) => LoadRequest,
  paymentId: string,
) {
  const request = completion(paymentId)
  server.resetRssPeak()
  const checkpoints = await checkpointCount(db)
  const cpu = cpuMeter(server)
  const stats = await runLoad({
    url: server.url,
    connections: 50,
    duration: stormSeconds,
    next: () => request,
    distinct: 1,
  })
  const pool = db.client.pool
  const [events, transitions, invoice, notifications] = await Promise.all([
    pool.query('select count(*)::int as n from webhook_events where event_id = $1', [
      completionEventId(paymentId),
    ]),
    pool.query(
      `select count(*)::int as n from payment_transitions where payment_id = $1 and to_status = 'SUCCEEDED'`,
      [paymentId],
    ),
    pool.query(
      'select i.amount_paid::text as paid from invoices i join payment_allocations a on a.invoice_id = i.id where a.payment_id = $1',
      [paymentId],
    ),
    pool.query(
      `select count(*)::int as n from events where object_id = $1 and type = 'payment.succeeded'`,
      [paymentId],
    ),
  ])
  const appliedOnce =
    events.rows[0]?.n === 1 &&
    transitions.rows[0]?.n === 1 &&
    invoice.rows[0]?.paid === '1000' &&
    notifications.rows[0]?.n === 1
  log(
    `duplicate_storm: ${stats.requests} deliveries, applied once: ${appliedOnce}, non-2xx: ${stats.non_2xx}`,
  )
  return {
    ...stats,
    ratio_to_baseline: null,
    baseline: 'pgbench' as const,
    rss_peak_mb: server.rssPeakMb(),
    ...cpu.perRequest(stats.requests),
    checkpoints: (await checkpointCount(db)) - checkpoints,
    applied_once: appliedOnce,
  }
}

/** Starts counting the CPU of the server process and of PostgreSQL; `perRequest` divides what was spent. */
function cpuMeter(server: BenchServer) {
  const serverCpu = () => {
    let total = 0
    for (const pid of server.pids()) total += processCpuSeconds(pid)
    return total
  }
  const [server0, postgres0] = [serverCpu(), postgresCpuSeconds()]
  return {
    perRequest(requests: number) {
      const [server1, postgres1] = [serverCpu(), postgresCpuSeconds()]
      const per = (seconds: number) => round((seconds * 1000) / Math.max(1, requests))
      return {
        server_cpu_ms_per_request: per(server1 - server0),
        postgres_cpu_ms_per_request: per(postgres1 - postgres0),
      }
    },
  }
}

/** Seconds the server has spent in garbage-collection pauses, from its own `/metrics`. */
async function gcSeconds(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let total = 0
  for (const line of text.split('\n'))
    if (line.startsWith('payrail_nodejs_gc_duration_seconds_sum'))
      total += Number(line.split(' ').at(-1))
  return total
}

/** Hands out the items one by one (distinct invoices or payments per request), then wraps around. */
function cycle<T>(items: T[], make: (item: T) => LoadRequest): () => LoadRequest {
  let index = 0
  return () => {
    const item = items[index % items.length]
    index += 1
    if (item === undefined) throw new Error('empty pool')
    return make(item)
  }
}

function printTable(
  scenarios: Record<string, ScenarioResult>,
  baseline: {
    pgbench: { tps: number; tps_runs: number[]; postgres_cpu_ms_per_transaction: number } | null
    http_floor: { rps: number }
  },
) {
  const rows = Object.entries(scenarios).map(([name, s]) => [
    name,
    String(s.rps),
    String(s.p50_ms),
    String(s.p95_ms),
    String(s.p99_ms),
    String(s.errors + s.non_2xx),
    s.ratio_to_baseline === null ? '-' : `${s.ratio_to_baseline} × ${s.baseline}`,
    String(s.rss_peak_mb),
    String(s.server_cpu_ms_per_request),
    String(s.postgres_cpu_ms_per_request),
    s.gc_ms_per_request === undefined ? '-' : String(s.gc_ms_per_request),
  ])
  const header = [
    'scenario',
    'req/s',
    'p50 ms',
    'p95 ms',
    'p99 ms',
    'errors',
    'ratio',
    'RSS MB',
    'server CPU ms/req',
    'PG CPU ms/req',
    'GC ms/req',
  ]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
  process.stdout.write(`\n${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`)
  for (const row of rows) process.stdout.write(`${line(row)}\n`)
  process.stdout.write(
    `\nbaselines: pgbench ${baseline.pgbench ? `${baseline.pgbench.tps} tps (the mean of ${baseline.pgbench.tps_runs.join(' and ')}; PG CPU ${baseline.pgbench.postgres_cpu_ms_per_transaction} ms/txn)` : 'not installed'}, HTTP floor (GET /health) ${baseline.http_floor.rps} req/s\n`,
  )
}

function progress(label: string, done: number, total: number) {
  const width = 30
  const filled = Math.round((done / total) * width)
  process.stderr.write(
    `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done.toLocaleString('en')}/${total.toLocaleString('en')}`,
  )
}

function log(message: string) {
  process.stderr.write(`${message}\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
})
