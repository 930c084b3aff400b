import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { createDbClient, type DbClient } from '../src/db/client.ts'
import { ensureEmbeddedPostgres } from '../src/db/embedded-postgres.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { createLogger } from '../src/logger.ts'
import { createApiKey } from '../src/modules/api-keys/service.ts'
import { createTenant } from '../src/modules/tenants/service.ts'

export interface BenchDatabase {
  /** The Payrail database of this run. */
  url: string
  /** A second, empty database on the same server for pgbench. */
  pgbenchUrl: string
  client: DbClient
  tenantId: string
  environmentId: string
  /** How many customers the invoices and payments are spread over: `cus_bench_<1 + n % customers>` for the n-th. */
  customers: number
  key: string
  close(): Promise<void>
}

/**
 * A fresh database for the run: on `DATABASE_URL`'s server when set, else an
 * embedded PostgreSQL in a temp dir. Migrated, with a tenant, a key and 1,000 customers
 * (`cus_bench_1` … `cus_bench_1000`).
 */
/** `keep`: leave the databases (and an embedded server's files) behind for inspection. */
export async function provisionDatabase(options: { keep?: boolean } = {}): Promise<BenchDatabase> {
  const logger = createLogger('warn', 'stderr')
  let serverUrl = process.env.DATABASE_URL
  let cleanup = async () => undefined
  if (!serverUrl) {
    const dir = await mkdtemp(path.join(tmpdir(), 'payrail-bench-'))
    await chmod(dir, 0o755)
    const embedded = await ensureEmbeddedPostgres({ dataDir: dir, logger })
    serverUrl = embedded.serverUrl
    cleanup = async () => {
      await embedded.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
  const suffix = randomBytes(3).toString('hex')
  const names = { payrail: `payrail_bench_${suffix}`, pgbench: `payrail_pgbench_${suffix}` }
  await admin(serverUrl, async (c) => {
    await c.query(`create database ${names.payrail}`)
    await c.query(`create database ${names.pgbench}`)
  })
  const url = withDatabase(serverUrl, names.payrail)
  const client = createDbClient(url, { max: 4 })
  await migrateToLatest(client.db, url)
  const { tenant, environments } = await createTenant(client.db, { name: 'Bench' })
  const test = environments.find((e) => e.type === 'test')
  if (!test) throw new Error('no test environment')
  const { key } = await createApiKey(client.db, {
    tenantId: tenant.id,
    environmentId: test.id,
    role: 'admin',
  })
  // Load spread over many customers, as a merchant's is: with one, every payment written
  // at once would share its customer's row (the foreign key's lock on it, and PostgreSQL's
  // multixacts for the concurrent holders), which real traffic does not.
  await client.pool.query(
    `insert into customers (id, tenant_id, environment_id, name, email)
     select 'cus_bench_' || g, $1, $2, 'Bench Customer ' || g, 'bench' || g || '@example.com'
     from generate_series(1, $3::int) g`,
    [tenant.id, test.id, CUSTOMERS],
  )
  const finalServer = serverUrl
  return {
    url,
    pgbenchUrl: withDatabase(serverUrl, names.pgbench),
    client,
    tenantId: tenant.id,
    environmentId: test.id,
    customers: CUSTOMERS,
    key,
    async close() {
      await client.close()
      if (options.keep) {
        process.stderr.write(
          `kept databases ${names.payrail} and ${names.pgbench} at ${finalServer}\n`,
        )
        return
      }
      await admin(finalServer, async (c) => {
        await c.query(`drop database if exists ${names.payrail} with (force)`)
        await c.query(`drop database if exists ${names.pgbench} with (force)`)
      })
      await cleanup()
    },
  }
}

/** Customers of the bench's tenant: `cus_bench_1` … `cus_bench_1000`. */
const CUSTOMERS = 1000

/**
 * SQL: the customer of the seeded row numbered `g`, given the number of customers as
 * parameter `$n`: the same for an invoice and the payment seeded for it.
 */
const customerOf = (n: number) => `'cus_bench_' || (1 + g % $${n}::int)`

/** `count` finalized invoices of 10.00 usd (one line each), each of customer `cus_bench_<1 + n % 1000>`, ids `inv_<prefix>_<n>`, inserted server-side in one statement. */
export async function seedInvoices(
  db: BenchDatabase,
  prefix: string,
  count: number,
): Promise<string[]> {
  await db.client.pool.query(
    `insert into invoices (id, tenant_id, environment_id, customer_id, number, currency, invoice_status, payment_status,
       collection_method, billing_reason, subtotal, total, amount_due, amount_remaining, finalized_at)
     select 'inv_' || $4 || '_' || g, $1, $2, ${customerOf(3)}, $4 || '-' || g, 'usd', 'FINALIZED', 'PENDING',
       'send_invoice', 'manual', 1000, 1000, 1000, 1000, now()
     from generate_series(1, $5::int) g`,
    [db.tenantId, db.environmentId, db.customers, prefix, count],
  )
  // Its line, as every invoice has (the invoice's lock reads its lines, and `invoice.paid` carries them).
  await db.client.pool.query(
    `insert into invoice_lines (id, invoice_id, position, description, quantity, unit_amount, amount)
     select 'il_' || $1 || '_' || g, 'inv_' || $1 || '_' || g, 0, 'Bench plan', 1, 1000, 1000
     from generate_series(1, $2::int) g`,
    [prefix, count],
  )
  return Array.from({ length: count }, (_, i) => `inv_${prefix}_${i + 1}`)
}

/**
 * `count` sandbox link payments waiting in PENDING, one per invoice, as if their
 * checkout pages were open: what completion webhooks then settle. Each has the
 * pending attempt its link's creation recorded.
 */
export async function seedPendingPayments(
  db: BenchDatabase,
  prefix: string,
  count: number,
  humanIdLetter: string,
): Promise<string[]> {
  await seedInvoices(db, prefix, count)
  await db.client.pool.query(
    `insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type, destination_id, amount,
       currency, payment_status, payment_method_type, payment_gateway, gateway_tracking_id, invoice_ids)
     select 'pay_' || $4 || '_' || g, $1, $2, $6 || lpad(to_hex(g), 5, '0'), ${customerOf(3)}, 'INVOICE', 'inv_' || $4 || '_' || g, 1000,
       'usd', 'PENDING', 'PAYMENT_LINK', 'sandbox', 'sbs_' || $4 || '_' || g, array['inv_' || $4 || '_' || g]
     from generate_series(1, $5::int) g`,
    [db.tenantId, db.environmentId, db.customers, prefix, count, humanIdLetter],
  )
  await db.client.pool.query(
    `insert into payment_allocations (payment_id, invoice_id, position, amount)
     select 'pay_' || $1 || '_' || g, 'inv_' || $1 || '_' || g, 0, 1000 from generate_series(1, $2::int) g`,
    [prefix, count],
  )
  await db.client.pool.query(
    `insert into payment_attempts (id, payment_id, gateway, gateway_tracking_id, status)
     select 'patt_' || $1 || '_' || g, 'pay_' || $1 || '_' || g, 'sandbox', 'sbs_' || $1 || '_' || g, 'pending'
     from generate_series(1, $2::int) g`,
    [prefix, count],
  )
  return Array.from({ length: count }, (_, i) => `pay_${prefix}_${i + 1}`)
}

const STATUSES = [
  'SUCCEEDED',
  'SUCCEEDED',
  'SUCCEEDED',
  'FAILED',
  'PENDING',
  'REFUNDED',
  'CANCELLED',
  'INITIATED',
]
const METHODS = ['PAYMENT_LINK', 'CARD', 'OFFLINE', 'CREDITS']

/**
 * `total` historical payments spread over the past year, in batches of 100,000
 * generated server-side (`INSERT … SELECT generate_series`), with a progress bar.
 * Every one a gateway was asked for (past INITIATED, not CANCELLED) has the attempt that
 * moved it, as a real history has: the
 * attempts table is then as large as the payments' when its statistics are taken (an
 * empty one is planned as empty, and read whole by every lookup while it grows, on a
 * server without autovacuum), and the list's JSON carries them.
 */
export async function seedHistory(
  db: BenchDatabase,
  total: number,
  onProgress: (done: number) => void,
): Promise<void> {
  const batch = 100_000
  for (let start = 1; start <= total; start += batch) {
    const end = Math.min(total, start + batch - 1)
    // The payments, and the attempts of those a gateway was asked for, made from the rows
    // just inserted: one statement, with each payment's status and time written once.
    await db.client.pool.query(
      `with seeded as (
         insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type, destination_id, amount,
           currency, payment_status, payment_method_type, payment_gateway, created_at, updated_at)
         select 'pay_hist_' || g, $1, $2, 'Z' || lpad(to_hex(g), 5, '0'), ${customerOf(3)}, 'INVOICE', 'inv_hist_' || (g % 50000), 100 + (g % 9000),
           'usd', ($4::text[])[1 + (g % 8)], ($5::text[])[1 + (g % 4)], 'offline',
           now() - ((g % 525600) || ' minutes')::interval, now()
         from generate_series($6::int, $7::int) g
         returning id, payment_status, created_at
       )
       insert into payment_attempts (id, payment_id, gateway, status, created_at, updated_at)
       select 'patt_hist_' || substr(id, 10), id, 'offline',
         case payment_status when 'REFUNDED' then 'succeeded' else lower(payment_status) end, created_at, created_at
       from seeded
       where payment_status not in ('INITIATED', 'CANCELLED')`,
      [db.tenantId, db.environmentId, db.customers, STATUSES, METHODS, start, end],
    )
    onProgress(end)
  }
  // Tables that have been in use are vacuumed: the visibility map lets counts use index-only
  // scans, and autovacuum does not catch up on the seeded rows during the first scenario.
  await db.client.pool.query('vacuum analyze')
  // The seeding's write-ahead log would trigger a checkpoint in whichever scenario comes
  // next (its first touch of each page then writes the whole page to the log again):
  // taken now, before the baselines, the run starts as every scenario will find it.
  await db.client.pool.query('checkpoint')
}

/** Checkpoints the server has begun since its statistics were reset (timed and requested). */
export async function checkpointCount(db: BenchDatabase): Promise<number> {
  const { rows } = await db.client.pool.query<{ n: number }>(
    'select (checkpoints_timed + checkpoints_req)::int as n from pg_stat_bgwriter',
  )
  return rows[0]?.n ?? 0
}

async function admin(serverUrl: string, run: (client: pg.Client) => Promise<void>) {
  const client = new pg.Client({ connectionString: serverUrl })
  client.on('error', () => undefined)
  await client.connect()
  try {
    await run(client)
  } finally {
    await client.end()
  }
}

function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl)
  url.pathname = `/${database}`
  return url.toString()
}
