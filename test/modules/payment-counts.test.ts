import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { PAYMENT_STATUSES, type PaymentStatus } from '../../src/core/payment-state.ts'
import type { TimeRange } from '../../src/http/list-query.ts'
import { countActivePayments } from '../../src/modules/payments/repository.ts'
import { createCustomer, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, invoiceToPay, type PaymentBody } from '../payments-helpers.ts'

let ctx: TestContext
let customerId: string
const DAY = 86_400_000
const base = Date.UTC(2026, 5, 1)

beforeAll(async () => {
  ctx = await createTestContext()
  customerId = (await createCustomer(ctx)).id
})
afterAll(() => ctx.close())

/** `count` payments, spread over 10 days from `base` at odd times, statuses in turn. */
async function seed(prefix: string, letter: string, count: number) {
  await sql`
    insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type,
      destination_id, amount, currency, payment_status, payment_method_type, created_at, updated_at)
    select ${prefix} || g, ${ctx.main.tenant.id}, ${ctx.main.test.id}, ${letter} || lpad(to_hex(g), 5, '0'),
      ${customerId}, 'INVOICE', 'inv_' || g, 100, 'usd',
      (${sql.raw(`array[${['SUCCEEDED', 'FAILED', 'PENDING', 'SUCCEEDED'].map((s) => `'${s}'`).join(',')}]`)})[1 + g % 4],
      'OFFLINE', ${new Date(base)}::timestamptz + (g * 3571 || ' seconds')::interval, now()
    from generate_series(1, ${count}::int) g`.execute(ctx.db)
}

async function exactCount(status: PaymentStatus | undefined, range: TimeRange): Promise<number> {
  let query = ctx.db
    .selectFrom('payments')
    .select(sql<string>`count(*)`.as('n'))
    .where('environment_id', '=', ctx.main.test.id)
    .where('active', '=', true)
  if (status) query = query.where('payment_status', '=', status)
  if (range.from) query = query.where('created_at', '>=', range.from)
  if (range.to) query = query.where('created_at', '<=', range.to)
  return Number((await query.executeTakeFirstOrThrow()).n)
}

function ranges(): TimeRange[] {
  const at = (days: number) => new Date(base + days * DAY)
  return [
    {},
    { from: at(0) },
    { to: at(5) },
    { from: at(1.5), to: at(7.25) },
    { from: at(2), to: at(3) },
    { from: at(2.1), to: at(2.9) },
    { from: at(3), to: at(3) },
    { from: at(6), to: at(2) },
    { from: at(-30), to: at(30) },
    { from: at(4.999), to: at(5.001) },
    // Ends near the start or the end of their day: counted directly or by complement.
    { from: at(0.1) },
    { from: at(0.9) },
    { to: at(5.95) },
    { to: at(5.05) },
    { from: at(2.9), to: at(3.05) },
    { from: at(3.01), to: at(3.99) },
    { from: at(1.2), to: at(6.8) },
    { from: at(1.6), to: at(6.4) },
    { from: at(3), to: at(4) },
  ]
}

async function expectExact(label: string) {
  for (const range of ranges()) {
    for (const status of [undefined, 'SUCCEEDED', 'FAILED', 'PENDING', 'REFUNDED'] as const) {
      const fast = await countActivePayments(ctx.db, ctx.main.test.id, status, range)
      expect(fast, `${label}: ${status ?? 'any'} ${JSON.stringify(range)}`).toBe(
        await exactCount(status, range),
      )
    }
  }
}

describe('list totals from daily counts', () => {
  test('equal count(*) for every range and status, through inserts, status changes, deletes and hiding', async () => {
    await seed('pay_cnt_a_', 'A', 300)
    await expectExact('after insert')
    await sql`update payments set payment_status = 'REFUNDED'
      where id like 'pay_cnt_a_%' and payment_status = 'SUCCEEDED' and substr(id, 11)::int % 3 = 0`.execute(
      ctx.db,
    )
    await expectExact('after status changes')
    await sql`update payments set active = false where id like 'pay_cnt_a_%' and substr(id, 11)::int % 7 = 0`.execute(
      ctx.db,
    )
    await expectExact('after hiding')
    await sql`update payments set active = true where id like 'pay_cnt_a_%' and substr(id, 11)::int % 14 = 0`.execute(
      ctx.db,
    )
    await sql`update payments set updated_at = now(), description = 'touched' where id like 'pay_cnt_a_%'`.execute(
      ctx.db,
    )
    await expectExact('after unhiding and unrelated updates')
    await sql`delete from payments where id like 'pay_cnt_a_%' and substr(id, 11)::int % 5 = 0`.execute(
      ctx.db,
    )
    await expectExact('after deletes')
  })

  test('ranges that end now, at any hour of the day, count exactly (today by its complement)', async () => {
    await sql`
      insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type,
        destination_id, amount, currency, payment_status, payment_method_type, created_at, updated_at)
      select 'pay_cnt_now_' || g, ${ctx.main.tenant.id}, ${ctx.main.test.id}, 'N' || lpad(to_hex(g), 5, '0'),
        ${customerId}, 'INVOICE', 'inv_' || g, 100, 'usd',
        (array['SUCCEEDED', 'FAILED', 'PENDING'])[1 + g % 3], 'OFFLINE',
        now() - (g * 431 || ' seconds')::interval, now()
      from generate_series(1, 400) g`.execute(ctx.db)
    const now = Date.now()
    const today = Math.floor(now / DAY) * DAY
    const recent: TimeRange[] = [
      { to: new Date(now) },
      { from: new Date(now - 3_600_000), to: new Date(now) },
      { from: new Date(today + 60_000), to: new Date(now + 60_000) },
      { from: new Date(now - 30 * 3_600_000), to: new Date(now) },
      { from: new Date(now - 120_000) },
      { from: new Date(today - DAY + 1_000), to: new Date(today + 1_000) },
    ]
    for (const range of recent) {
      for (const status of [undefined, 'SUCCEEDED', 'PENDING'] as const) {
        const fast = await countActivePayments(ctx.db, ctx.main.test.id, status, range)
        expect(fast, `${status ?? 'any'} ${JSON.stringify(range)}`).toBe(
          await exactCount(status, range),
        )
      }
    }
    await sql`delete from payments where id like 'pay_cnt_now_%'`.execute(ctx.db)
  })

  test('concurrent state changes from many connections keep the totals exact', async () => {
    await seed('pay_cnt_b_', 'B', 200)
    const statuses: PaymentStatus[] = PAYMENT_STATUSES.filter((s) => s !== 'INITIATED')
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        ctx.db.transaction().execute(async (trx) => {
          await sql`update payments set payment_status = ${statuses[i % statuses.length]}
            where id like 'pay_cnt_b_%' and substr(id, 11)::int % 40 = ${i}`.execute(trx)
        }),
      ),
    )
    await expectExact('after concurrent changes')
  })

  test("another tenant's payments never count", async () => {
    const before = await countActivePayments(ctx.db, ctx.main.test.id, undefined, {})
    const other = await ctx.createTenantFixture('Counts elsewhere')
    const otherCustomer = await createCustomer(ctx, {}, other.key)
    await sql`
      insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type,
        destination_id, amount, currency, payment_status, payment_method_type)
      select 'pay_cnt_other_' || g, ${other.tenant.id}, ${other.test.id}, 'O' || lpad(to_hex(g), 5, '0'),
        ${otherCustomer.id}, 'INVOICE', 'inv_' || g, 100, 'usd', 'SUCCEEDED', 'OFFLINE'
      from generate_series(1, 25) g`.execute(ctx.db)
    expect(await countActivePayments(ctx.db, ctx.main.test.id, undefined, {})).toBe(before)
    expect(await countActivePayments(ctx.db, other.test.id, 'SUCCEEDED', {})).toBe(25)
    const list = await ctx.get<List<PaymentBody>>('/v1/payments?status=SUCCEEDED&limit=1', {
      key: other.key,
    })
    expect(list.body.pagination.total).toBe(25)
  })

  test('GET /v1/payments reports the exact total for a status and a date range', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const paid = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(paid.status).toBe(201)
    const now = Math.floor(ctx.clock.now().getTime() / 1000)
    const list = await ctx.get<List<PaymentBody>>(
      `/v1/payments?status=SUCCEEDED&from_date=${now - 3 * 86_400}&to_date=${now + 60}&limit=1`,
    )
    expect(list.status).toBe(200)
    const range = { from: new Date((now - 3 * 86_400) * 1000), to: new Date((now + 60) * 1000) }
    expect(list.body.pagination.total).toBe(await exactCount('SUCCEEDED', range))
    expect(list.body.pagination.total).toBeGreaterThanOrEqual(1)
    expect(list.body.items).toHaveLength(1)
  })
})
