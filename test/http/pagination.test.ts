import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { pageFrom } from '../../src/http/pagination.ts'
import { createApiKey } from '../../src/modules/api-keys/service.ts'
import { createCustomer, createInvoice } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { offlinePayment } from '../payments-helpers.ts'

interface KeyList {
  items: { id: string }[]
  pagination: { total: number; limit: number; offset: number }
}

interface StatusList {
  items: Record<string, unknown>[]
  pagination: { total: number; limit: number; offset: number }
}

let ctx: TestContext
let all: string[]

beforeAll(async () => {
  ctx = await createTestContext()
  for (let i = 0; i < 11; i++) {
    ctx.clock.advance(1000)
    await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
      name: `k${i}`,
    })
  }
  const res = await ctx.get<KeyList>('/v1/api_keys?limit=1000')
  all = res.body.items.map((k) => k.id)
})
afterAll(() => ctx.close())

describe('pageFrom', () => {
  test.each([
    [{}, { limit: 50, offset: 0 }],
    [{ limit: 10 }, { limit: 10, offset: 0 }],
    [
      { limit: 10, offset: 30 },
      { limit: 10, offset: 30 },
    ],
    [
      { size: 20, page: 2 },
      { limit: 20, offset: 40 },
    ],
    [{ size: 20 }, { limit: 20, offset: 0 }],
    [{ page: 1 }, { limit: 50, offset: 50 }],
    [
      { limit: 5, size: 5, page: 3 },
      { limit: 5, offset: 15 },
    ],
  ])('%j → %j', (query, page) => {
    expect(pageFrom(query)).toEqual(page)
  })

  test.each([[{ offset: 1, page: 1 }], [{ limit: 5, size: 6 }]])('%j is refused', (query) => {
    expect(() => pageFrom(query)).toThrow()
  })
})

describe('list responses', () => {
  test('the documented shape with total, limit and offset', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys')
    expect(res.status).toBe(200)
    expect(Object.keys(res.body)).toEqual(['items', 'pagination'])
    expect(res.body.pagination).toEqual({ total: 12, limit: 50, offset: 0 })
    expect(res.body.items).toHaveLength(12)
  })

  test('limit and offset walk the list without overlap', async () => {
    const first = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=0')
    const second = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=5')
    const third = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=10')
    expect(
      [...first.body.items, ...second.body.items, ...third.body.items].map((k) => k.id),
    ).toEqual(all)
    expect(third.body.items).toHaveLength(2)
    expect(third.body.pagination).toEqual({ total: 12, limit: 5, offset: 10 })
  })

  test('size and page give the same pages', async () => {
    const byPage = await ctx.get<KeyList>('/v1/api_keys?size=5&page=1')
    const byOffset = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=5')
    expect(byPage.body).toEqual(byOffset.body)
  })

  test('newest first', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys?limit=2')
    expect(res.body.items.map((k) => k.id)).toEqual(all.slice(0, 2))
    expect(all[0]! > all[1]!).toBe(true)
  })

  test('past the end is an empty page, not an error', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys?offset=500')
    expect(res.status).toBe(200)
    expect(res.body.items).toEqual([])
    expect(res.body.pagination.total).toBe(12)
  })

  test.each([
    'limit=0',
    'limit=1001',
    'offset=-1',
    'page=-1',
    'size=0',
    'limit=abc',
    'offset=1&page=1',
    'offset=1000000001',
    'page=1e307',
    'size=1000&page=1000001',
  ])('%s is 400', async (query) => {
    // A list the database pages, and lists paged in memory (a few rows held in full).
    for (const path of ['/v1/api_keys', '/v1/gateway_connections']) {
      const res = await ctx.get<ErrorBody>(`${path}?${query}`)
      expect(res.status, `${path}?${query}: ${res.text}`).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
  })
})

describe('date bounds of API keys', () => {
  test('to_date=<a key created_at> includes that key: its created_at is the millisecond the API shows', async () => {
    const t = await ctx.createTenantFixture('Key dates')
    const created = await ctx.post<{ id: string; created_at: string }>(
      '/v1/api_keys',
      { name: 'window' },
      { key: t.key },
    )
    expect(created.status, created.text).toBe(201)
    expect(created.body.created_at).toBe(ctx.clock.now().toISOString())
    const at = encodeURIComponent(created.body.created_at)
    const res = await ctx.get<KeyList>(`/v1/api_keys?from_date=${at}&to_date=${at}`, {
      key: t.key,
    })
    expect(res.status, res.text).toBe(200)
    expect(res.body.items.map((k) => k.id)).toEqual([created.body.id])
    expect(res.body.pagination.total).toBe(1)
  })

  test('a key created outside a request (the CLI, the bootstrap) is stored to the millisecond too', async () => {
    const { record } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.live.id,
      role: 'admin',
    })
    const { rows } = await ctx.pool.query<{ sub_ms: string }>(
      'select (extract(microseconds from created_at)::bigint % 1000)::text as sub_ms from api_keys where id = $1',
      [record.id],
    )
    expect(rows[0]?.sub_ms).toBe('0')
  })
})

describe('list query strings', () => {
  const lists = async () => {
    const customer = await createCustomer(ctx)
    return [
      '/v1/customers',
      '/v1/products',
      '/v1/discounts',
      '/v1/orders',
      '/v1/subscriptions',
      '/v1/invoices',
      '/v1/payments',
      '/v1/refunds',
      '/v1/events',
      '/v1/webhook_endpoints',
      '/v1/webhook_deliveries',
      '/v1/gateway_connections',
      '/v1/api_keys',
      `/v1/customers/${customer.id}/payment_methods`,
      `/v1/customers/${customer.id}/balance_transactions`,
    ]
  }

  test('an unknown (misspelt) parameter is 400 validation_error naming it, not ignored', async () => {
    for (const path of await lists()) {
      const res = await ctx.get<ErrorBody>(`${path}?limit=5&payment_staus=FAILED`)
      expect(res.status, `${path} ${res.text}`).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
      expect(res.body.error.message).toContain('payment_staus')
      expect(res.body.error.details).toEqual({
        errors: [{ field: 'querystring.payment_staus', message: expect.any(String) }],
      })
    }
    // Near misses of real filters, that would list everything.
    for (const path of [
      '/v1/invoices?customer=cus_nobody',
      '/v1/refunds?payment=pay_nobody',
      '/v1/payments?statuss=FAILED',
    ]) {
      const res = await ctx.get<ErrorBody>(path)
      expect(res.status, path).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
  })

  test('every documented filter is taken', async () => {
    const common = 'limit=5&offset=0&sort=created_at&from_date=2025-01-01&to_date=9999-12-31'
    const customer = await createCustomer(ctx)
    const filters: Record<string, string> = {
      '/v1/customers': 'email=a@example.com&external_id=x&name=a',
      '/v1/products': 'type=one_time&active=true',
      '/v1/discounts': 'active=true&code=SAVE10',
      '/v1/orders': 'status=PENDING&type=SUBSCRIPTION&customer_id=cus_x',
      '/v1/subscriptions': 'status=active&customer_id=cus_x',
      '/v1/invoices':
        'status=FINALIZED&invoice_status=FINALIZED&payment_status=PENDING&customer_id=cus_x&subscription_id=sub_x&currency=usd&source=native',
      '/v1/payments':
        'status=SUCCEEDED&payment_status=SUCCEEDED&payment_method_type=OFFLINE&payment_gateway=sandbox&destination_id=inv_x&customer_id=cus_x&currency=usd&include_inactive=true',
      '/v1/refunds': 'payment_id=pay_x&status=pending',
      '/v1/events': 'type=payment.*&object_id=pay_x',
      '/v1/webhook_endpoints': 'status=enabled',
      '/v1/webhook_deliveries': 'endpoint_id=we_x&event_id=evt_x&status=pending',
      '/v1/gateway_connections': '',
      '/v1/api_keys': '',
      [`/v1/customers/${customer.id}/payment_methods`]: '',
      [`/v1/customers/${customer.id}/balance_transactions`]: 'type=top_up&currency=usd',
    }
    for (const [path, query] of Object.entries(filters)) {
      const res = await ctx.get<KeyList>(`${path}?${common}${query ? `&${query}` : ''}`)
      expect(res.status, `${path} ${res.text}`).toBe(200)
      const paged = await ctx.get<KeyList>(`${path}?size=5&page=0`)
      expect(paged.status, path).toBe(200)
    }
  })

  test.each([
    ['/v1/payments', 'status', 'payment_status', 'SUCCEEDED', 'FAILED'],
    ['/v1/invoices', 'status', 'invoice_status', 'FINALIZED', 'DRAFT'],
  ])(
    '%s: %s and %s that disagree are refused, not one preferred; that agree are one filter',
    async (path, name, alias, value, other) => {
      // A SUCCEEDED payment on a FINALIZED invoice, and a DRAFT invoice the filter leaves out.
      const { customer } = await offlinePayment(ctx)
      await createInvoice(ctx, customer.id)
      const refused = await ctx.get<ErrorBody>(`${path}?${name}=${value}&${alias}=${other}`)
      expect(refused.status, refused.text).toBe(400)
      expect(refused.body.error.code).toBe('validation_error')
      expect(refused.body.error.details).toEqual({ fields: [alias, name] })
      const both = await ctx.get<StatusList>(
        `${path}?${name}=${value}&${alias}=${value}&limit=1000`,
      )
      expect(both.status, both.text).toBe(200)
      expect(both.body.items.length).toBeGreaterThan(0)
      expect(both.body.items.every((i) => i[alias] === value)).toBe(true)
      for (const one of [name, alias]) {
        const single = await ctx.get<StatusList>(`${path}?${one}=${value}&limit=1000`)
        expect(single.body).toEqual(both.body)
      }
    },
  )
})
