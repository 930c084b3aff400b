/**
 * `npm run bench:group-commit`: what PostgreSQL would gain if Payrail wrote several
 * requests in one transaction (a group commit in the server), measured without Payrail.
 * pgbench replays an offline payment's statements, as Payrail sends them (the invoice's
 * lock with its lines, the sum of its charges in flight, then one statement of
 * data-modifying CTEs: the payment, its allocation, the invoice's update, two history
 * rows, three events of about 1.2 KB of JSON each, then the commit), in Payrail's two
 * round trips (pgbench's pipeline mode: the `begin` with the lock and the sum, the writes
 * with the `commit`), in three forms. Every event carries a payment-sized JSON (Payrail's
 * `invoice.paid` carries the invoice, of about the same size).
 *
 * - `single`: one payment per transaction, as Payrail writes today;
 * - `serial K`: K payments one after another in one transaction, each inside a savepoint
 *   of its own (released when its writes are done), so that one payment's failure rolls
 *   back only its own writes: the statements stay each payment's own, only the `begin`
 *   and the `commit` are shared (K + 1 round trips: one payment's writes go with the
 *   next one's lock);
 * - `merged K`: K payments in one transaction whose statements each carry all K: one
 *   lock of K invoices, one sum, one statement of multi-row inserts and K updates (what
 *   `takeHeld` in `src/db/transaction.ts` would make of K transactions' held writes), in
 *   two round trips.
 *
 * Each form runs with the bench's 10 clients on invoices of their own (no waits on each
 * other's locks), after the payments, history and events of the run before it are
 * truncated (an invoice paid again and again would otherwise make its sum of charges in
 * flight read ever more rows). The forms run in turn, `--rounds` times, and the table
 * gives each one's median payments per second and PostgreSQL CPU per payment (all its
 * processes, from /proc), and the median of its ratios to `single` of the same round. Payrail's own CPU is not in it: this is the
 * database's share only, the upper bound of what grouping could give a whole request.
 *
 * @example
 * DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:group-commit -- --sizes 2,4,8 --rounds 3
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { type BenchDatabase, provisionDatabase, seedInvoices } from './database.ts'
import { postgresCpuSeconds } from './proc.ts'

const run = promisify(execFile)

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2,4,8' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '8' },
    clients: { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
  },
})
const sizes = values.sizes.split(',').map(Number)
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const clients = Number(values.clients)
/** Invoices per client: every size must divide it (each of a transaction's payments takes its own slice). */
const PER_CLIENT = 840
const PREFIX = 'gc'

for (const size of sizes) {
  // pgbench takes at most 255 variables per statement, and a payment's writes use 29 of them.
  if (!Number.isInteger(size) || size < 2 || size > 8 || PER_CLIENT % size !== 0) {
    throw new Error(`--sizes: each must be an integer from 2 to 8 that divides ${PER_CLIENT}`)
  }
}

interface Form {
  name: string
  /** Payments per transaction. */
  size: number
  script: string
}

/**
 * A payment's JSON as its events carry it: the fields of the API's object, about 1.2 KB,
 * with a space after each key's colon (as PostgreSQL writes `jsonb`): pgbench would take
 * `:true` for a variable.
 */
const PAYMENT_JSON = JSON.stringify({
  id: '@ID@',
  active: true,
  amount: '10.00',
  object: 'payment',
  subject: '@INVOICE@',
  attempts: [],
  currency: 'usd',
  human_id: '@HUMAN@',
  metadata: {},
  failed_at: null,
  tenant_id: '@TENANT@',
  cancel_url: null,
  created_at: '2026-12-07T00:59:51.896Z',
  created_by: 'key_bench',
  updated_at: '2026-12-07T00:59:51.896Z',
  updated_by: 'key_bench',
  amount_paid: '10.00',
  customer_id: 'cus_bench',
  description: null,
  invoice_ids: ['@INVOICE@'],
  payment_url: null,
  refunded_at: null,
  status_code: null,
  success_url: null,
  cancelled_at: null,
  payment_date: null,
  succeeded_at: '2026-12-07T00:59:51.896Z',
  current_state: 'succeeded',
  discount_code: null,
  error_message: null,
  destination_id: '@INVOICE@',
  environment_id: '@ENVIRONMENT@',
  invoice_number: '@NUMBER@',
  payment_status: 'SUCCEEDED',
  track_attempts: true,
  amount_refunded: '0.00',
  amount_reserved: '0.00',
  billing_address: null,
  idempotency_key: null,
  payment_gateway: 'offline',
  destination_type: 'INVOICE',
  gateway_metadata: {},
  payment_method_id: null,
  gateway_payment_id: null,
  gateway_tracking_id: null,
  payment_method_type: 'OFFLINE',
  save_card_and_make_default: false,
}).replaceAll('":', '": ')

/** SQL pieces of the `i`th payment of a transaction, over pgbench's variables `:n<i>` and `:v<i>`. */
function payment(i: number) {
  const invoice = `'inv_${PREFIX}_' || :v${i}::text`
  const id = `'pay_${PREFIX}_' || :n${i}::text`
  const human = `upper(lpad(to_hex(:n${i}::bigint), 10, '0'))`
  const number = `'${PREFIX}-' || :v${i}::text`
  const customer = `'cus_bench_' || (1 + :v${i}::int % 1000)`
  const now = 'now()'
  // Concatenated at run time, so PostgreSQL parses each event's JSON as it does Payrail's.
  // Only the payment's id is a variable in it: pgbench takes at most 255 per statement.
  const json = `(${PAYMENT_JSON.split('@ID@')
    .map((piece) => `'${piece.replace(/@[A-Z]+@/g, 'x'.repeat(30))}'`)
    .join(` || ${id} || `)})::jsonb`
  return {
    invoice,
    payment: `(${id}, ${human}, :tenant, :environment, ${customer}, 'INVOICE', ${invoice}, ${invoice}, 1000, 'usd', 'SUCCEEDED', 'OFFLINE', NULL, 'offline', NULL, NULL, false, '{}'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL, NULL, ${number}, array[${invoice}], 'key_bench', 'key_bench', ${now}, ${now}, 1000, ${now})`,
    allocation: `(${invoice}, 0, 1000, ${id}, 1000)`,
    update: `update "invoices" set "amount_paid" = 1000, "amount_remaining" = 0, "payment_status" = 'SUCCEEDED', "paid_at" = ${now}, "next_payment_attempt" = NULL, "updated_at" = ${now} where "id" = ${invoice}`,
    transitions: `(${id}, NULL, 'INITIATED', 'api', 'key_bench', NULL, ${now}), (${id}, 'INITIATED', 'SUCCEEDED', 'api', 'key_bench', 'POST /v1/payments', ${now})`,
    events: ['payment.created', 'invoice.paid', 'payment.succeeded']
      .map(
        (type, j) =>
          `('evt_${PREFIX}_' || :n${i}::text || '_${j}', :tenant, :environment, '${type}', 'payment', ${id}, ${json}, ${now})`,
      )
      .join(', '),
  }
}

/** The statements of a transaction of the payments `parts`, each statement for all of them (one part: `single`). */
function statements(parts: ReturnType<typeof payment>[]): string[] {
  const invoices = parts.map((p) => p.invoice).join(', ')
  const updates = parts.map((p, i) => `u${i} as (${p.update})`).join(', ')
  return [
    `select "invoices".*, "l"."id" as "line_id", "l"."position" as "line_position", "l"."description" as "line_description", "l"."quantity" as "line_quantity", "l"."unit_amount" as "line_unit_amount", "l"."amount" as "line_amount", "l"."price_id" as "line_price_id", "l"."period_start" as "line_period_start", "l"."period_end" as "line_period_end" from "invoices" left join "invoice_lines" as "l" on "l"."invoice_id" = "invoices"."id" where "invoices"."environment_id" = :environment and "invoices"."id" in (${invoices}) order by "invoices"."id", "l"."position" for update of "invoices";`,
    `select "payment_allocations"."invoice_id", sum("payment_allocations"."amount") as "total" from "payment_allocations" inner join "payments" on "payments"."id" = "payment_allocations"."payment_id" where "payment_allocations"."invoice_id" in (${invoices}) and "payments"."payment_status" = 'PROCESSING' group by "payment_allocations"."invoice_id";`,
    `with w0 as (insert into "payments" ("id", "human_id", "tenant_id", "environment_id", "customer_id", "destination_type", "destination_id", "subject", "amount", "currency", "payment_status", "payment_method_type", "payment_method_id", "payment_gateway", "success_url", "cancel_url", "save_card_and_make_default", "metadata", "gateway_metadata", "idempotency_key", "description", "billing_address", "discount_code", "payment_date", "invoice_number", "invoice_ids", "created_by", "updated_by", "created_at", "updated_at", "amount_paid", "succeeded_at") values ${parts.map((p) => p.payment).join(', ')}), w1 as (insert into "payment_allocations" ("invoice_id", "position", "amount", "payment_id", "applied_amount") values ${parts.map((p) => p.allocation).join(', ')}), ${updates}, w3 as (insert into "payment_transitions" ("payment_id", "from_status", "to_status", "cause", "cause_id", "note", "created_at") values ${parts.map((p) => p.transitions).join(', ')}) insert into "events" ("id", "tenant_id", "environment_id", "type", "object_type", "object_id", "data", "created_at") values ${parts.map((p) => p.events).join(', ')};`,
  ]
}

/** pgbench's variables for `size` payments: one slice of the client's invoices each, a random id each. */
function variables(size: number): string[] {
  const slice = PER_CLIENT / size
  const lines = [`\\set b random(0, ${slice - 1})`]
  for (let i = 0; i < size; i++) {
    lines.push(`\\set n${i} random(1, 1000000000000)`)
    lines.push(`\\set v${i} :client_id * ${PER_CLIENT} + ${1 + i * slice} + :b`)
  }
  return lines
}

/** Statements sent together, in one round trip (pgbench's pipeline mode), as Payrail's client sends them. */
const roundTrip = (statements: string[]) => ['\\startpipeline', ...statements, '\\endpipeline']

/**
 * A transaction of `parts` as Payrail's client would send it: the `begin` with the
 * lock and the sum after it, then the writes with the `commit` (two round trips).
 */
function transaction(parts: ReturnType<typeof payment>[]): string[] {
  const [lock = '', sum = '', writes = ''] = statements(parts)
  return [...roundTrip(['begin;', lock, sum]), ...roundTrip([writes, 'commit;'])]
}

/**
 * K payments one after another in a transaction, each in a savepoint, with as few round
 * trips as a pipelining client would need: one payment's writes, its release, the next
 * one's savepoint, lock and sum go together (K + 1 round trips).
 */
function serial(parts: ReturnType<typeof payment>[]): string[] {
  const lines: string[] = []
  let pending = ['begin;']
  parts.forEach((part, i) => {
    const [lock = '', sum = '', writes = ''] = statements([part])
    lines.push(...roundTrip([...pending, `savepoint p${i};`, lock, sum]))
    pending = [writes, `release savepoint p${i};`]
  })
  lines.push(...roundTrip([...pending, 'commit;']))
  return lines
}

function forms(): Form[] {
  const single: Form = {
    name: 'single',
    size: 1,
    script: [...variables(1), ...transaction([payment(0)])].join('\n'),
  }
  const grouped = sizes.flatMap((size): Form[] => {
    const parts = Array.from({ length: size }, (_, i) => payment(i))
    return [
      {
        name: `serial ${size}`,
        size,
        script: [...variables(size), ...serial(parts)].join('\n'),
      },
      {
        name: `merged ${size}`,
        size,
        script: [...variables(size), ...transaction(parts)].join('\n'),
      },
    ]
  })
  return [single, ...grouped]
}

interface Measured {
  payments_per_s: number
  postgres_cpu_ms_per_payment: number
}

async function measure(db: BenchDatabase, form: Form, file: string): Promise<Measured> {
  await db.client.pool.query(
    'truncate payments, payment_allocations, payment_transitions, events, payment_daily_counts cascade',
  )
  await db.client.pool.query('vacuum analyze')
  const before = postgresCpuSeconds()
  const { stdout } = await run(
    'pgbench',
    [
      ...['-n', '-M', 'prepared', '-c', String(clients), '-j', '2', '-T', String(seconds)],
      ...['-D', `tenant=${db.tenantId}`, '-D', `environment=${db.environmentId}`],
      ...['-f', file, db.url],
    ],
    { maxBuffer: 1 << 24 },
  )
  const cpu = postgresCpuSeconds() - before
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1])
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0)
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1])
  // A client that fails aborts, and pgbench then exits non-zero: `run` throws.
  if (!transactions || failed > 0) {
    throw new Error(`pgbench failed on ${form.name}:\n${stdout}`)
  }
  const payments = transactions * form.size
  return {
    payments_per_s: tps * form.size,
    postgres_cpu_ms_per_payment: (cpu * 1000) / payments,
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

const db = await provisionDatabase({ keep: values.keep })
const dir = await mkdtemp(path.join(tmpdir(), 'payrail-group-commit-'))
try {
  process.stderr.write(`seeding ${clients * PER_CLIENT} invoices\n`)
  await seedInvoices(db, PREFIX, clients * PER_CLIENT)
  const all = forms()
  const results = new Map<string, Measured[]>(all.map((form) => [form.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const form of all) {
      const file = path.join(dir, `${form.name.replace(' ', '-')}.sql`)
      await writeFile(file, form.script)
      const measured = await measure(db, form, file)
      results.get(form.name)?.push(measured)
      process.stderr.write(
        `round ${round} ${form.name.padEnd(9)} ${measured.payments_per_s.toFixed(0).padStart(5)} payments/s, PostgreSQL ${measured.postgres_cpu_ms_per_payment.toFixed(3)} ms CPU per payment\n`,
      )
    }
  }
  // Each form against `single` of the same round, then the median over the rounds: the
  // machine's speed drifts from round to round more than between neighbouring runs.
  const single = results.get('single') ?? []
  const summary = all.map((form) => {
    const runs = results.get(form.name) ?? []
    const against = (pick: (m: Measured) => number) =>
      median(runs.map((r, i) => pick(r) / pick(single[i] ?? r)))
    return {
      form: form.name,
      payments_per_s: median(runs.map((r) => r.payments_per_s)),
      throughput_ratio: against((m) => m.payments_per_s),
      postgres_cpu_ms_per_payment: median(runs.map((r) => r.postgres_cpu_ms_per_payment)),
      cpu_ratio: against((m) => m.postgres_cpu_ms_per_payment),
    }
  })
  console.log(
    '\nform       payments/s  × single  PG CPU ms/payment  × single\n---------  ----------  --------  -----------------  --------',
  )
  for (const row of summary) {
    console.log(
      [
        row.form.padEnd(9),
        row.payments_per_s.toFixed(0).padStart(10),
        row.throughput_ratio.toFixed(2).padStart(8),
        row.postgres_cpu_ms_per_payment.toFixed(3).padStart(17),
        row.cpu_ratio.toFixed(2).padStart(8),
      ].join('  '),
    )
  }
} finally {
  await rm(dir, { recursive: true, force: true })
  await db.close()
}
