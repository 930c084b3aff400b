import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'

interface CustomerBody {
  id: string
  name: string
  email: string | null
  external_id: string | null
  billing_address: Record<string, string | null> | null
  auto_pay: boolean
  default_payment_method_id: string | null
  balances: Record<string, string>
  metadata: Record<string, string>
}
interface List<T> {
  items: T[]
  pagination: { total: number; limit: number; offset: number }
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other')
})
afterAll(() => ctx.close())

async function newCustomer(body: Record<string, unknown> = {}) {
  const res = await ctx.post<CustomerBody>('/v1/customers', {
    name: 'Ada Lovelace',
    email: 'ada@example.com',
    ...body,
  })
  expect(res.status).toBe(201)
  return res.body
}

describe('customers', () => {
  test('create returns every field, null when empty', async () => {
    const res = await ctx.post<CustomerBody>('/v1/customers', {
      name: 'Grace Hopper',
      email: 'grace@example.com',
      external_id: 'user_42',
      billing_address: { line1: '1 Navy Way', country: 'US' },
      auto_pay: true,
      metadata: { plan: 'pro' },
    })
    expect(res.status).toBe(201)
    expect(res.body).toEqual({
      id: expect.stringMatching(/^cus_/),
      object: 'customer',
      name: 'Grace Hopper',
      email: 'grace@example.com',
      external_id: 'user_42',
      billing_address: {
        line1: '1 Navy Way',
        line2: null,
        city: null,
        state: null,
        postal_code: null,
        country: 'US',
      },
      auto_pay: true,
      default_payment_method_id: null,
      gateway_customer_ids: {},
      balances: {},
      metadata: { plan: 'pro' },
      created_at: ctx.clock.now().toISOString(),
      updated_at: ctx.clock.now().toISOString(),
    })
    expect((await ctx.get(`/v1/customers/${res.body.id}`)).body).toEqual(res.body)
  })

  test('external_id is unique per environment: 409, and the first customer is untouched', async () => {
    const first = await newCustomer({ external_id: 'dup-1' })
    const res = await ctx.post<ErrorBody>('/v1/customers', {
      name: 'Other',
      email: 'o@example.com',
      external_id: 'dup-1',
    })
    expect(res.status).toBe(409)
    expect(res.body.error.code).toBe('conflict')
    expect((await ctx.get<CustomerBody>(`/v1/customers/${first.id}`)).body.name).toBe(
      'Ada Lovelace',
    )
    // The live environment and other tenants have their own namespace.
    const live = await ctx.post(
      '/v1/customers',
      { name: 'L', email: 'l@example.com', external_id: 'dup-1' },
      { key: ctx.main.liveKey },
    )
    expect(live.status).toBe(201)
    const otherTenant = await ctx.post(
      '/v1/customers',
      { name: 'T', email: 't@example.com', external_id: 'dup-1' },
      { key: other.key },
    )
    expect(otherTenant.status).toBe(201)
  })

  test.each([
    [{ email: 'ada@example.com' }, 'body.name'],
    [{ name: '', email: 'ada@example.com' }, 'body.name'],
    [{ name: 'Ada', email: 'not-an-email' }, 'body.email'],
    [
      { name: 'Ada', email: 'a@example.com', billing_address: { country: 'USA' } },
      'body.billing_address.country',
    ],
    [{ name: 'Ada', email: 'a@example.com', metadata: { n: { deep: 1 } } }, 'body.metadata.n'],
    [{ name: 'Ada', email: 'a@example.com', auto_pay: 'maybe' }, 'body.auto_pay'],
  ])('%j is 400 naming %s', async (body, field) => {
    const res = await ctx.post<ErrorBody>('/v1/customers', body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message.startsWith(field)).toBe(true)
  })

  test('update changes the given fields and merges metadata', async () => {
    const customer = await newCustomer({ metadata: { a: '1', b: '2' } })
    ctx.clock.advance(1000)
    const res = await ctx.patch<CustomerBody & { updated_at: string }>(
      `/v1/customers/${customer.id}`,
      {
        name: 'Ada King',
        metadata: { b: '', c: '3' },
        auto_pay: true,
      },
    )
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      name: 'Ada King',
      email: 'ada@example.com',
      auto_pay: true,
      metadata: { a: '1', c: '3' },
    })
    expect(res.body.updated_at).toBe(ctx.clock.now().toISOString())
  })

  test("a default payment method must be one of the customer's own", async () => {
    const customer = await newCustomer()
    const stranger = await newCustomer()
    const scope = { tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id }
    const card = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: `card_${customer.id}`,
      brand: 'visa',
      last4: '4242',
      expMonth: 12,
      expYear: 2030,
    })
    const wrong = await ctx.post<ErrorBody>(
      `/v1/customers/${stranger.id}/payment_methods/${card.id}/default`,
    )
    expect(wrong.status).toBe(404)
    const res = await ctx.post<CustomerBody>(
      `/v1/customers/${customer.id}/payment_methods/${card.id}/default`,
    )
    expect(res.status).toBe(200)
    expect(res.body.default_payment_method_id).toBe(card.id)
    const methods = await ctx.get<
      List<{ id: string; is_default: boolean; card: { last4: string } }>
    >(`/v1/customers/${customer.id}/payment_methods`)
    expect(methods.body.items).toEqual([
      expect.objectContaining({
        id: card.id,
        is_default: true,
        card: expect.objectContaining({ last4: '4242' }),
      }),
    ])
    const cleared = await ctx.patch<CustomerBody>(`/v1/customers/${customer.id}`, {
      default_payment_method_id: null,
    })
    expect(cleared.body.default_payment_method_id).toBeNull()
  })

  test('list filters by email and external_id, sorts, and paginates both ways', async () => {
    const tag = `f${Date.now()}`
    for (const name of ['Carol', 'Alice', 'Bob']) {
      ctx.clock.advance(1000)
      await newCustomer({
        name,
        email: `${name.toLowerCase()}@${tag}.test`,
        external_id: `${tag}-${name}`,
      })
    }
    const byEmail = await ctx.get<List<CustomerBody>>(`/v1/customers?email=ALICE@${tag}.test`)
    expect(byEmail.body.items.map((c) => c.name)).toEqual(['Alice'])
    const byExternal = await ctx.get<List<CustomerBody>>(`/v1/customers?external_id=${tag}-Bob`)
    expect(byExternal.body.items.map((c) => c.name)).toEqual(['Bob'])
    const sorted = await ctx.get<List<CustomerBody>>(
      `/v1/customers?name=${''}&sort=name&limit=1000`,
    )
    const names = sorted.body.items.map((c) => c.name)
    expect(names).toEqual([...names].sort())
    const page = await ctx.get<List<CustomerBody>>('/v1/customers?size=2&page=1')
    const offset = await ctx.get<List<CustomerBody>>('/v1/customers?limit=2&offset=2')
    expect(page.body).toEqual(offset.body)
    const bad = await ctx.get<ErrorBody>('/v1/customers?sort=password')
    expect(bad.status).toBe(400)
  })

  test('from_date and to_date bound the creation time', async () => {
    const before = Math.floor(ctx.clock.now().getTime() / 1000)
    ctx.clock.advance(60_000)
    const fresh = await newCustomer({ name: 'Fresh' })
    const res = await ctx.get<List<CustomerBody>>(`/v1/customers?from_date=${before + 1}`)
    expect(res.body.items.map((c) => c.id)).toEqual([fresh.id])
    const iso = await ctx.get<List<CustomerBody>>(
      `/v1/customers?to_date=${new Date(before * 1000).toISOString()}`,
    )
    expect(iso.body.items.map((c) => c.id)).not.toContain(fresh.id)
    expect((await ctx.get<ErrorBody>('/v1/customers?from_date=yesterday')).status).toBe(400)
  })

  test("another tenant's customer is a 404 for every route", async () => {
    const foreign = await ctx.post<CustomerBody>(
      '/v1/customers',
      { name: 'F', email: 'f@example.com' },
      { key: other.key },
    )
    const id = foreign.body.id
    for (const res of [
      await ctx.get(`/v1/customers/${id}`),
      await ctx.patch(`/v1/customers/${id}`, { name: 'x' }),
      await ctx.get(`/v1/customers/${id}/payment_methods`),
      await ctx.get(`/v1/customers/${id}/balance_transactions`),
      await ctx.post(`/v1/customers/${id}/balance_transactions`, {
        amount: '1.00',
        currency: 'usd',
      }),
      await ctx.post(`/v1/customers/${id}/tokens`),
    ]) {
      expect(res.status).toBe(404)
    }
    expect((await ctx.get<CustomerBody>(`/v1/customers/${id}`, { key: other.key })).body.name).toBe(
      'F',
    )
  })

  test('customer routes need an admin key', async () => {
    const customer = await newCustomer()
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`)
    for (const res of [
      await ctx.get('/v1/customers', { key: token.body.token }),
      await ctx.get(`/v1/customers/${customer.id}`, { key: token.body.token }),
      await ctx.post(
        '/v1/customers',
        { name: 'x', email: 'x@example.com' },
        { key: token.body.token },
      ),
      await ctx.post(
        `/v1/customers/${customer.id}/balance_transactions`,
        { amount: '5', currency: 'usd' },
        { key: token.body.token },
      ),
    ]) {
      expect(res.status).toBe(403)
    }
    expect((await ctx.get('/v1/customers', { key: null })).status).toBe(401)
  })

  test('a metadata key sent as "" on create is not set, as Stripe leaves it out', async () => {
    const res = await ctx.post<CustomerBody>('/v1/customers', {
      name: 'Ada',
      email: 'ada.meta@example.com',
      metadata: { plan: 'pro', removed: '' },
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body.metadata).toEqual({ plan: 'pro' })
    const read = await ctx.get<CustomerBody>(`/v1/customers/${res.body.id}`)
    expect(read.body.metadata).toEqual({ plan: 'pro' })
  })
})

describe('customer tokens', () => {
  test('201 with a token that expires', async () => {
    const customer = await newCustomer()
    const res = await ctx.post<{ token: string; customer_id: string; expires_at: string }>(
      `/v1/customers/${customer.id}/tokens`,
      { expires_in: 120 },
    )
    expect(res.status).toBe(201)
    expect(res.body).toEqual({
      object: 'customer_token',
      token: expect.stringMatching(/^ct_test_/),
      customer_id: customer.id,
      expires_at: new Date(ctx.clock.now().getTime() + 120_000).toISOString(),
    })
    expect((await ctx.get('/v1/events', { key: res.body.token })).status).toBe(403)
    ctx.clock.advance(121_000)
    expect((await ctx.get('/v1/invoices', { key: res.body.token })).status).toBe(401)
  })

  test.each([[{ expires_in: 10 }], [{ expires_in: 999999999 }]])('%j is 400', async (body) => {
    const customer = await newCustomer()
    expect((await ctx.post(`/v1/customers/${customer.id}/tokens`, body)).status).toBe(400)
  })
})

describe('balance adjustments and ledger', () => {
  test('credits and debits move the balance; the ledger records balance_after', async () => {
    const customer = await newCustomer()
    const credit = await ctx.post<{ amount: string; balance_after: string; type: string }>(
      `/v1/customers/${customer.id}/balance_transactions`,
      { amount: '25.00', currency: 'USD', description: 'goodwill' },
    )
    expect(credit.status).toBe(201)
    expect(credit.body).toMatchObject({
      amount: '25.00',
      balance_after: '25.00',
      type: 'adjustment',
      currency: 'usd',
    })
    ctx.clock.advance(1000)
    const debit = await ctx.post<{ amount: string; balance_after: string }>(
      `/v1/customers/${customer.id}/balance_transactions`,
      { amount: '-10.50', currency: 'usd' },
    )
    expect(debit.body).toMatchObject({ amount: '-10.50', balance_after: '14.50' })
    const shown = await ctx.get<CustomerBody>(`/v1/customers/${customer.id}`)
    expect(shown.body.balances).toEqual({ usd: '14.50' })
    const ledger = await ctx.get<List<{ amount: string }>>(
      `/v1/customers/${customer.id}/balance_transactions`,
    )
    expect(ledger.body.items.map((t) => t.amount)).toEqual(['-10.50', '25.00'])
  })

  test('a debit below zero is 409 and changes nothing', async () => {
    const customer = await newCustomer()
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '5',
      currency: 'eur',
    })
    const res = await ctx.post<ErrorBody>(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '-5.01',
      currency: 'eur',
    })
    expect(res.status).toBe(409)
    // Amounts at the API edge are decimal strings of the currency, as everywhere else.
    expect(res.body.error.details).toMatchObject({ balance: '5.00', requested: '5.01' })
    expect((await ctx.get<CustomerBody>(`/v1/customers/${customer.id}`)).body.balances).toEqual({
      eur: '5.00',
    })
    const ledger = await ctx.get<List<unknown>>(`/v1/customers/${customer.id}/balance_transactions`)
    expect(ledger.body.pagination.total).toBe(1)
  })

  test.each([
    [{ amount: '0', currency: 'usd' }],
    [{ amount: '1.001', currency: 'usd' }],
    [{ amount: '1.5', currency: 'jpy' }],
    [{ amount: 'ten', currency: 'usd' }],
    [{ amount: '1', currency: 'zzz' }],
  ])('%j is 400', async (body) => {
    const customer = await newCustomer()
    const res = await ctx.post<ErrorBody>(`/v1/customers/${customer.id}/balance_transactions`, body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('ledger filters by type and currency', async () => {
    const customer = await newCustomer()
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '1',
      currency: 'usd',
    })
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '2',
      currency: 'eur',
    })
    const eur = await ctx.get<List<{ currency: string }>>(
      `/v1/customers/${customer.id}/balance_transactions?currency=EUR`,
    )
    expect(eur.body.items.map((t) => t.currency)).toEqual(['eur'])
    const topUps = await ctx.get<List<unknown>>(
      `/v1/customers/${customer.id}/balance_transactions?type=top_up`,
    )
    expect(topUps.body.items).toEqual([])
  })
})
