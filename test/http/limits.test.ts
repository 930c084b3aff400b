/**
 * Limits at the API's edge: list date bounds PostgreSQL's `date` cannot hold, and metadata
 * that updates would grow past 50 keys.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parseTimeBound } from '../../src/http/list-query.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { invoiceToPay, offlinePayment, type PaymentBody } from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
  await offlinePayment(ctx, '50.00')
})
afterAll(() => ctx.close())

interface Listing {
  items: unknown[]
  pagination: { total: number; limit: number; offset: number }
}

describe('list date filters', () => {
  test.each([
    ['to_date=9999-12-31'],
    ['to_date=9999-12-31T23:59:59Z'],
    ['from_date=999999999999'],
    ['to_date=999999999999'],
  ])('GET /v1/payments?%s is a 200 like every other list, not a 400 from PostgreSQL', async (q) => {
    // Every other list takes these bounds (unix seconds up to 12 digits, any ISO 8601 day).
    const invoices = await ctx.get<Listing>(`/v1/invoices?${q}`)
    expect(invoices.status).toBe(200)
    const payments = await ctx.get<Listing>(`/v1/payments?${q}`)
    expect(payments.status, payments.text).toBe(200)
    const unfiltered = await ctx.get<Listing>('/v1/payments?customer_id=none')
    expect(unfiltered.status).toBe(200)
  })

  test('a far-future to_date counts the same payments as no to_date; a far-future from_date none', async () => {
    const all = await ctx.get<Listing>('/v1/payments')
    expect(all.body.pagination.total).toBeGreaterThan(0)
    const bounded = await ctx.get<Listing>('/v1/payments?to_date=9999-12-31')
    expect(bounded.status, bounded.text).toBe(200)
    expect(bounded.body.pagination.total).toBe(all.body.pagination.total)
    const after = await ctx.get<Listing>('/v1/payments?from_date=999999999999')
    expect(after.status, after.text).toBe(200)
    expect(after.body).toMatchObject({ items: [], pagination: { total: 0 } })
  })
})

describe('metadata limits', () => {
  const fifty = (prefix: string) =>
    Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${prefix}${i}`, 'v'.repeat(500)]))

  test('a customer token cannot grow a payment past 50 metadata keys by PATCHing again and again', async () => {
    const { customer, payment } = await offlinePayment(ctx, '10.00')
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`, {})
    expect(token.status).toBe(201)
    const first = await ctx.patch<PaymentBody>(
      `/v1/payments/${payment.id}`,
      { metadata: fifty('a') },
      { key: token.body.token },
    )
    expect(first.status, first.text).toBe(200)
    for (let round = 0; round < 3; round++) {
      const more = await ctx.patch<ErrorBody>(
        `/v1/payments/${payment.id}`,
        { metadata: fifty(`b${round}_`) },
        { key: token.body.token },
      )
      expect(more.status, `round ${round}`).toBe(400)
    }
    const after = await ctx.get<PaymentBody>(`/v1/payments/${payment.id}`)
    expect(Object.keys(after.body.metadata as Record<string, string>)).toHaveLength(50)
    // Keys removed make room; a map at the limit still takes changes to its own keys.
    const swap = await ctx.patch<PaymentBody>(
      `/v1/payments/${payment.id}`,
      { metadata: { a0: '', a1: 'changed', b: 'new' } },
      { key: token.body.token },
    )
    expect(swap.status, swap.text).toBe(200)
    expect(Object.keys(swap.body.metadata as Record<string, string>)).toHaveLength(50)
  })

  test.each([['customers', async () => `/v1/customers/${(await invoiceToPay(ctx)).customer.id}`]])(
    'PATCH /v1/%s merges metadata within 50 keys',
    async (_name, path) => {
      const url = await path()
      expect((await ctx.patch(url, { metadata: fifty('a') })).status).toBe(200)
      const res = await ctx.patch<ErrorBody>(url, { metadata: fifty('b') })
      expect(res.status).toBe(400)
      expect(res.body.error).toMatchObject({
        code: 'validation_error',
        details: { field: 'metadata', keys: 100 },
      })
      // Nothing written: the 50 keys it had are the 50 it has.
      const after = await ctx.get<{ metadata: Record<string, string> }>(url)
      expect(Object.keys(after.body.metadata).sort()).toEqual(Object.keys(fifty('a')).sort())
    },
  )
})

describe('time bounds', () => {
  test('a date and time without a zone is UTC, whatever the server time zone', () => {
    const zone = process.env.TZ
    process.env.TZ = 'America/New_York'
    try {
      for (const value of ['2026-01-20T10:00', '2026-01-20 10:00', '2026-01-20T10:00:00.000'])
        expect(parseTimeBound(value, 'change_at').toISOString()).toBe('2026-01-20T10:00:00.000Z')
      expect(parseTimeBound('2026-01-20T10:00-05:00', 'x').toISOString()).toBe(
        '2026-01-20T15:00:00.000Z',
      )
      expect(parseTimeBound('2026-01-20', 'x').toISOString()).toBe('2026-01-20T00:00:00.000Z')
    } finally {
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    }
  })
})
