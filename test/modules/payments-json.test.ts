import { type RawBuilder, sql } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { PAYMENT_STATUSES } from '../../src/core/payment-state.ts'
import {
  type JsonText,
  jsonObject,
  jsonText,
  LiteralJson,
  type RequiredJson,
  requiredLiteral,
  requiredString,
} from '../../src/db/json-sql.ts'
import type { ListRequest } from '../../src/http/list-query.ts'
import { paginated } from '../../src/http/pagination.ts'
import { paymentJson } from '../../src/modules/payments/json.ts'
import {
  listPayments,
  type PaymentFilters,
  type PaymentSortField,
} from '../../src/modules/payments/repository.ts'
import { toPaymentResponse } from '../../src/modules/payments/schemas.ts'
import { attemptsByPayment } from '../../src/modules/payments/service.ts'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'

/**
 * `GET /v1/payments` is built by PostgreSQL (payments/json.ts); every other payment
 * response by `toPaymentResponse`. The two must give the same objects.
 */
let ctx: TestContext
let customers: string[]
const COUNT = 60
const CURRENCIES = ['usd', 'jpy', 'kwd', 'eur', 'clp', 'bhd', 'clf', 'uyi']

beforeAll(async () => {
  ctx = await createTestContext()
  customers = [(await createCustomer(ctx)).id, (await createCustomer(ctx)).id]
  const statuses = sql.raw(`array[${PAYMENT_STATUSES.map((s) => `'${s}'`).join(',')}]`)
  const currencies = sql.raw(`array[${CURRENCIES.map((c) => `'${c}'`).join(',')}]`)
  await sql`
    insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type,
      destination_id, subject, invoice_ids, amount, amount_paid, amount_reserved, amount_refunded,
      currency, payment_status, payment_method_type, payment_method_id, payment_gateway,
      gateway_payment_id, gateway_tracking_id, gateway_metadata, payment_url, active, payment_date,
      billing_address, description, metadata, status_code, error_message, success_url, cancel_url,
      save_card_and_make_default, idempotency_key, track_attempts, invoice_number, discount_code,
      created_by, updated_by, succeeded_at, failed_at, refunded_at, cancelled_at, created_at, updated_at)
    select 'pay_json_' || g, ${ctx.main.tenant.id}, ${ctx.main.test.id}, 'J' || lpad(g::text, 5, '0'),
      (${sql.val(customers)}::text[])[1 + g % 2], 'INVOICE', 'inv_json_' || (g % 7),
      case when g % 3 = 0 then 'Subject "' || g || '" é ✓' end,
      case when g % 4 = 0 then array[]::text[] else array['inv_json_' || (g % 7), 'inv_x' || g] end,
      1 + g * 12345, (g * 3) % 1000, case when g % 5 = 0 then 7 else 0 end, g % 2,
      (${currencies})[1 + g % ${CURRENCIES.length}], (${statuses})[1 + g % ${PAYMENT_STATUSES.length}],
      (array['PAYMENT_LINK','CARD','CRYPTO','CREDITS','OFFLINE','EXTERNAL'])[1 + g % 6],
      case when g % 2 = 0 then 'pm_' || g end, case when g % 3 <> 1 then 'sandbox' end,
      case when g % 2 = 1 then 'gp_' || g end, case when g % 3 = 2 then 'gt_' || g end,
      case when g % 4 = 1 then jsonb_build_object('k', g, 'nested', jsonb_build_object('a', array[1, 2])) else '{}'::jsonb end,
      case when g % 2 = 0 then 'https://pay.example/' || g end,
      g % 9 <> 0,
      case when g % 3 = 0 then timestamptz '2026-03-01 10:00:00.123456+00' + g * interval '1 hour 17.000321 seconds' end,
      case g % 4 when 0 then null when 1 then '{"line1":"1 Main St","city":"Oslo","country":"NO"}'::jsonb
        when 2 then '{"line1":null,"line2":"Apt \\"2\\"","state":"CA","postal_code":"94000","extra":"x"}'::jsonb
        else 'null'::jsonb end,
      case when g % 2 = 0 then E'line\nbreak\ttab \\ back' end,
      case when g % 3 = 0 then jsonb_build_object('order', 'o_' || g, 'empty', '') else '{}'::jsonb end,
      case when g % 5 = 1 then 'card_declined' end, case when g % 5 = 1 then 'Declined: "no"' end,
      case when g % 2 = 0 then 'https://ok.example/' || g end, case when g % 2 = 1 then 'https://no.example' end,
      g % 2 = 0, case when g % 3 = 0 then 'idem_' || g end, g % 4 <> 3,
      case when g % 2 = 0 then 'INV-' || g end, case when g % 6 = 0 then 'SAVE10' end,
      'api', case when g % 2 = 0 then 'webhook' end,
      case when g % 2 = 0 then timestamptz '2026-03-02 00:00:00.999999+00' + g * interval '1 minute' end,
      case when g % 5 = 3 then now() end, case when g % 7 = 2 then timestamptz '2026-03-03 12:00:00.0005+00' end,
      case when g % 8 = 5 then now() end,
      timestamptz '2026-03-01 00:00:00.000001+00' + g * interval '5 hours 3.000457 seconds',
      timestamptz '2026-03-05 00:00:00+00' + (g % 5) * interval '1 second'
    from generate_series(1, ${COUNT}::int) g`.execute(ctx.db)
  await sql`
    insert into payment_attempts (id, payment_id, gateway, gateway_payment_id, gateway_tracking_id,
      status, error_code, error_message, created_at, updated_at)
    select 'att_json_' || g || '_' || n, 'pay_json_' || g, 'sandbox',
      case when n = 1 then 'gp_' || g end, null, case when n = 1 then 'failed' else 'succeeded' end,
      case when n = 1 then 'card_declined' end, case when n = 1 then 'Declined' end,
      timestamptz '2026-03-01 00:00:00.000777+00' + (g * 10 + n) * interval '1 second', now()
    from generate_series(1, ${COUNT}::int) g, generate_series(1, 3) n where n <= g % 4`.execute(
    ctx.db,
  )
})
afterAll(() => ctx.close())

/** What `toPaymentResponse` gives for these rows, through JSON as a response would be. */
async function expectedPage(filters: PaymentFilters, request: ListRequest<PaymentSortField>) {
  const { items, total } = await listPayments(ctx.db, ctx.main.test.id, filters, request)
  const attempts = await attemptsByPayment(
    ctx.db,
    items.map((p) => p.id),
  )
  const body = paginated(
    items.map((p) => toPaymentResponse(p, attempts.get(p.id) ?? [], p.invoice_ids)),
    total,
    request.page,
  )
  return JSON.parse(JSON.stringify(body))
}

describe('payments as JSON from PostgreSQL', () => {
  test('every payment: the SQL object equals toPaymentResponse', async () => {
    const { rows } = await sql<{ id: string; j: unknown }>`
      select p.id, ${paymentJson('p').json}::json as j from payments p where p.id like 'pay_json_%'`.execute(
      ctx.db,
    )
    expect(rows).toHaveLength(COUNT)
    const payments = await ctx.db
      .selectFrom('payments')
      .selectAll()
      .where('id', 'like', 'pay_json_%')
      .execute()
    const attempts = await attemptsByPayment(
      ctx.db,
      payments.map((p) => p.id),
    )
    const byId = new Map(payments.map((p) => [p.id, p]))
    for (const row of rows) {
      const payment = byId.get(row.id)
      if (!payment) throw new Error(`no payment ${row.id}`)
      const expected = toPaymentResponse(payment, attempts.get(row.id) ?? [], payment.invoice_ids)
      expect(row.j, row.id).toEqual(JSON.parse(JSON.stringify(expected)))
    }
  })

  test('the columns paymentJson writes without coalesce (requiredString, requiredLiteral) are NOT NULL', async () => {
    // A null there would be written as nothing: `"id":""`, or `"active":,` (not JSON).
    const required = {
      payments: [
        'id',
        'tenant_id',
        'environment_id',
        'customer_id',
        'destination_type',
        'destination_id',
        'amount',
        'amount_paid',
        'amount_reserved',
        'amount_refunded',
        'currency',
        'payment_status',
        'payment_method_type',
        'gateway_metadata',
        'active',
        'metadata',
        'save_card_and_make_default',
        'track_attempts',
        'created_at',
        'updated_at',
      ],
      payment_attempts: ['id', 'status', 'created_at', 'updated_at'],
    }
    const { rows } = await sql<{ table_name: string; column_name: string }>`
      select table_name, column_name from information_schema.columns
      where table_schema = 'public' and is_nullable = 'NO'
        and table_name in ('payments', 'payment_attempts')`.execute(ctx.db)
    for (const [table, columns] of Object.entries(required)) {
      const notNull = rows.filter((r) => r.table_name === table).map((r) => r.column_name)
      expect(notNull).toEqual(expect.arrayContaining(columns))
    }
  })

  test('jsonObject writes compact JSON for any number of fields, past the 100 arguments of one concat', async () => {
    const values = (n: number) =>
      Array.from({ length: n }, (_, i): [string, unknown] => [
        `k${i}`,
        [null, i, `text "${i}" \\ é\n`, i % 2 === 0, [i, 'x'], { nested: i }][i % 6] ?? null,
      ])
    for (const count of [0, 1, 47, 60, 130]) {
      const fields = values(count)
      const object = jsonObject(
        fields.map(([key, value]): [string, RawBuilder<unknown> | JsonText] => [
          key,
          value !== null && typeof value === 'object'
            ? jsonText(sql`${JSON.stringify(value)}::text`)
            : sql`${value === null ? null : JSON.stringify(value)}::jsonb`,
        ]),
      )
      const { rows } = await sql<{ text: string }>`select ${object.json} as text`.execute(ctx.db)
      const text = rows[0]?.text ?? ''
      expect(text, `${count} fields`).toBe(JSON.stringify(Object.fromEntries(fields)))
    }
  })

  test('jsonObject folds required values and constants into the literal pieces: the same text, past 100 arguments', async () => {
    const values = (n: number) =>
      Array.from({ length: n }, (_, i): [string, string | number | boolean] => [
        `k${i}`,
        [`id_${i}`, i, i % 4 === 1, 'const'][i % 4] ?? '',
      ])
    for (const count of [1, 4, 90, 250]) {
      const fields = values(count)
      const object = jsonObject(
        fields.map(([key, value], i): [string, RequiredJson | LiteralJson] => [
          key,
          i % 4 === 3
            ? new LiteralJson(JSON.stringify(value))
            : typeof value === 'string'
              ? requiredString(sql`${value}::text`)
              : requiredLiteral(
                  typeof value === 'boolean' ? sql`${value}::boolean` : sql`${value}::int`,
                ),
        ]),
      )
      const { rows } = await sql<{ text: string }>`select ${object.json} as text`.execute(ctx.db)
      expect(rows[0]?.text, `${count} fields`).toBe(JSON.stringify(Object.fromEntries(fields)))
    }
  })

  test.each([
    ['no filter', '', {}],
    ['a status', '?status=SUCCEEDED', { status: 'SUCCEEDED' }],
    ['a customer (counted with count(*))', '?customer_id=CUSTOMER', { customerId: 'CUSTOMER' }],
    ['inactive too', '?include_inactive=true', { includeInactive: true }],
    ['a currency', '?currency=JPY', { currency: 'jpy' }],
  ] as const)(
    'GET /v1/payments with %s equals the objects of toPaymentResponse',
    async (_name, query, filters) => {
      const customer = customers[0] ?? ''
      const resolved: PaymentFilters = {
        ...filters,
        ...('customerId' in filters ? { customerId: customer } : {}),
      }
      const cases: [string, ListRequest<PaymentSortField>][] = [
        [
          '',
          {
            sort: { field: 'created_at', direction: 'desc' },
            page: { limit: 50, offset: 0 },
            created: {},
          },
        ],
        [
          'limit=7&offset=3&sort=amount',
          {
            sort: { field: 'amount', direction: 'asc' },
            page: { limit: 7, offset: 3 },
            created: {},
          },
        ],
        [
          'from_date=2026-03-02T20:00:00Z&to_date=2026-03-04T03:00:00Z',
          {
            sort: { field: 'created_at', direction: 'desc' },
            page: { limit: 50, offset: 0 },
            created: {
              from: new Date('2026-03-02T20:00:00Z'),
              to: new Date('2026-03-04T03:00:00Z'),
            },
          },
        ],
        [
          'from_date=2026-03-03T05:00:00Z&to_date=2026-03-08T00:00:00Z&sort=-updated_at',
          {
            sort: { field: 'updated_at', direction: 'desc' },
            page: { limit: 50, offset: 0 },
            created: {
              from: new Date('2026-03-03T05:00:00Z'),
              to: new Date('2026-03-08T00:00:00Z'),
            },
          },
        ],
      ]
      for (const [extra, request] of cases) {
        const path = `/v1/payments${query.replace('CUSTOMER', customer)}${extra ? `${query ? '&' : '?'}${extra}` : ''}`
        const res = await ctx.get(path)
        expect(res.status, path).toBe(200)
        expect(res.headers['content-type']).toMatch(/^application\/json/)
        expect(res.body, path).toEqual(await expectedPage(resolved, request))
      }
    },
  )

  test('newest first by a status and dates: one plan for any values; other lists plan for theirs', async () => {
    /** The plan_cache_mode of each connection that ran a statement of the request. */
    const modesOf = async (path: string) => {
      const clients: pg.Client[] = []
      const original = pg.Client.prototype.query
      const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
        this: pg.Client,
        ...args: unknown[]
      ) {
        clients.push(this)
        return Reflect.apply(original, this, args)
      } as never)
      try {
        expect((await ctx.get(path)).status, path).toBe(200)
      } finally {
        spy.mockRestore()
      }
      const modes: string[] = []
      for (const client of clients) {
        const { rows } = await client.query<{ mode: string }>(
          `select current_setting('plan_cache_mode') as mode`,
        )
        modes.push(rows[0]?.mode ?? '')
      }
      return modes
    }
    expect(await modesOf('/v1/payments')).toEqual(['force_generic_plan'])
    expect(
      await modesOf(
        '/v1/payments?status=FAILED&from_date=2026-03-02T20:00:00Z&to_date=2026-03-04T03:00:00Z&sort=created_at',
      ),
    ).toEqual(['force_generic_plan'])
    for (const path of [
      `/v1/payments?customer_id=${customers[0]}`,
      '/v1/payments?currency=usd',
      '/v1/payments?include_inactive=true',
      '/v1/payments?sort=amount',
    ]) {
      expect(await modesOf(path), path).toEqual(['auto'])
    }
  })

  test("another tenant's key, and the live key, list none of these payments", async () => {
    const other = await ctx.createTenantFixture('Other tenant')
    for (const key of [other.key, ctx.main.liveKey]) {
      const res = await ctx.get<{ items: { id: string }[]; pagination: { total: number } }>(
        '/v1/payments?include_inactive=true',
        { key },
      )
      expect(res.status).toBe(200)
      expect(res.body.items.filter((p) => p.id.startsWith('pay_json_'))).toEqual([])
      expect(res.body.pagination.total).toBe(0)
    }
  })

  test.each([
    ['an unknown status', '?status=BOGUS'],
    ['a bad date', '?from_date=yesterday'],
    [
      'a range that ends before it starts',
      '?from_date=2026-03-05T00:00:00Z&to_date=2026-03-01T00:00:00Z',
    ],
    ['an unknown sort field', '?sort=customer_id'],
  ])('%s is a 400 in the error shape', async (_name, query) => {
    const res = await ctx.get<{ error: { code: string } }>(`/v1/payments${query}`)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('a page past the end is empty with the total', async () => {
    const res = await ctx.get<{ items: unknown[]; pagination: { total: number } }>(
      '/v1/payments?offset=1000&include_inactive=true',
    )
    expect(res.status).toBe(200)
    expect(res.body.items).toEqual([])
    expect(res.body.pagination.total).toBe(COUNT)
  })
})
