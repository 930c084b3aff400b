import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  createCustomer,
  type InvoiceBody,
  type List,
  oneTimePrice,
  payInvoice,
  recurringPrice,
  topUpPrice,
} from '../fixtures.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'

interface OrderBody {
  id: string
  type: string
  status: string
  amount: string
  currency: string
  invoice_id: string
  subscription_id: string | null
  fulfilled_at: string | null
  invoice: InvoiceBody
}
interface CustomerBody {
  balances: Record<string, string>
}
interface SubscriptionBody {
  id: string
  status: string
  started_at: string | null
  current_period_start: string
  current_period_end: string
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other')
})
afterAll(() => ctx.close())

const pay = (invoiceId: string, amount: bigint) => payInvoice(ctx, invoiceId, amount)

async function order(body: Record<string, unknown>) {
  const res = await ctx.post<OrderBody>('/v1/orders', body)
  expect(res.status).toBe(201)
  return res.body
}

describe('orders', () => {
  test('ONE_TIME_PRODUCT: a finalized invoice; paying it fulfils the order', async () => {
    const customer = await createCustomer(ctx)
    const priceId = await oneTimePrice(ctx, '99.00')
    const created = await order({
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: priceId,
      quantity: 2,
    })
    expect(created).toMatchObject({
      type: 'ONE_TIME_PRODUCT',
      status: 'PENDING',
      amount: '198.00',
      currency: 'usd',
    })
    expect(created.invoice).toMatchObject({
      id: created.invoice_id,
      invoice_status: 'FINALIZED',
      billing_reason: 'order',
      total: '198.00',
      order_id: created.id,
    })
    expect(created.invoice.lines).toEqual([
      expect.objectContaining({
        description: 'Onboarding package',
        quantity: 2,
        price_id: priceId,
      }),
    ])
    await pay(created.invoice_id, 19800n)
    const fulfilled = await ctx.get<OrderBody>(`/v1/orders/${created.id}`)
    expect(fulfilled.body).toMatchObject({
      status: 'FULFILLED',
      fulfilled_at: ctx.clock.now().toISOString(),
    })
  })

  test('CREDIT_TOP_UP credits the balance once, through the ledger', async () => {
    const customer = await createCustomer(ctx)
    const priceId = await topUpPrice(ctx, '50.00')
    const created = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      price_id: priceId,
    })
    await pay(created.invoice_id, 2000n)
    expect((await ctx.get<CustomerBody>(`/v1/customers/${customer.id}`)).body.balances).toEqual({})
    await pay(created.invoice_id, 3000n)
    await pay(created.invoice_id, 500n) // overpayment after the fact: no second top-up
    expect((await ctx.get<CustomerBody>(`/v1/customers/${customer.id}`)).body.balances).toEqual({
      usd: '50.00',
    })
    const ledger = await ctx.get<List<{ type: string; source_id: string; amount: string }>>(
      `/v1/customers/${customer.id}/balance_transactions`,
    )
    expect(ledger.body.items).toEqual([
      expect.objectContaining({ type: 'top_up', source_id: created.id, amount: '50.00' }),
    ])
  })

  test('CREDIT_TOP_UP with a custom amount', async () => {
    const customer = await createCustomer(ctx)
    const created = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '12.34',
      currency: 'EUR',
    })
    expect(created).toMatchObject({ amount: '12.34', currency: 'eur', price_id: null })
    await pay(created.invoice_id, 1234n)
    expect((await ctx.get<CustomerBody>(`/v1/customers/${customer.id}`)).body.balances).toEqual({
      eur: '12.34',
    })
  })

  test('SUBSCRIPTION: an incomplete subscription that paying its first invoice starts', async () => {
    const customer = await createCustomer(ctx)
    const priceId = await recurringPrice(ctx, '20.00', 'month')
    const created = await order({
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: priceId,
    })
    expect(created.subscription_id).toMatch(/^sub_/)
    expect(created.invoice).toMatchObject({
      billing_reason: 'subscription_create',
      subscription_id: created.subscription_id,
      collection_method: 'charge_automatically',
      period_start: ctx.clock.now().toISOString(),
    })
    const before = await ctx.get<SubscriptionBody>(`/v1/subscriptions/${created.subscription_id}`)
    expect(before.body).toMatchObject({ status: 'incomplete', started_at: null })
    ctx.clock.advance(3600_000)
    await pay(created.invoice_id, 2000n)
    const after = await ctx.get<SubscriptionBody>(`/v1/subscriptions/${created.subscription_id}`)
    expect(after.body).toMatchObject({
      status: 'active',
      started_at: ctx.clock.now().toISOString(),
    })
    expect((await ctx.get<OrderBody>(`/v1/orders/${created.id}`)).body.status).toBe('FULFILLED')
  })

  test('voiding the invoice cancels the order and the never-started subscription', async () => {
    const customer = await createCustomer(ctx)
    const priceId = await recurringPrice(ctx)
    const created = await order({
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: priceId,
    })
    await ctx.post(`/v1/invoices/${created.invoice_id}/void`)
    expect((await ctx.get<OrderBody>(`/v1/orders/${created.id}`)).body.status).toBe('CANCELLED')
    expect(
      (await ctx.get<SubscriptionBody>(`/v1/subscriptions/${created.subscription_id}`)).body.status,
    ).toBe('canceled')
  })

  test('a 100% discount fulfils the order at once', async () => {
    const customer = await createCustomer(ctx)
    await ctx.post('/v1/discounts', { code: 'FREEBIE', percent_off: 100 })
    const priceId = await oneTimePrice(ctx, '10.00')
    const created = await order({
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: priceId,
      discount_code: 'freebie',
    })
    expect(created.status).toBe('FULFILLED')
    expect(created.invoice).toMatchObject({
      total: '0.00',
      total_discount: '10.00',
      payment_status: 'SUCCEEDED',
    })
  })

  test.each([
    [{ type: 'SUBSCRIPTION' }, 'price_id'],
    [{ type: 'CREDIT_TOP_UP' }, 'price_id'],
    [{ type: 'CREDIT_TOP_UP', amount: '0', currency: 'usd' }, 'amount'],
    [{ type: 'CREDIT_TOP_UP', amount: '10', currency: 'usd', price_id: 'PRICE' }, 'amount'],
    [{ type: 'LAYAWAY', price_id: 'PRICE' }, 'body.type'],
    [{ type: 'SUBSCRIPTION', price_id: 'ONE_TIME' }, 'recurring'],
    [{ type: 'ONE_TIME_PRODUCT', price_id: 'RECURRING' }, 'one_time'],
    [{ type: 'ONE_TIME_PRODUCT', price_id: 'ONE_TIME', quantity: 0 }, 'body.quantity'],
  ])('%j is 400 (%s)', async (body, message) => {
    const customer = await createCustomer(ctx)
    const ids: Record<string, string> = {
      PRICE: await oneTimePrice(ctx),
      ONE_TIME: await oneTimePrice(ctx),
      RECURRING: await recurringPrice(ctx),
    }
    const resolved = Object.fromEntries(
      Object.entries(body).map(([k, v]) => [k, typeof v === 'string' && ids[v] ? ids[v] : v]),
    )
    const before = await ctx.db.selectFrom('orders').select('id').execute()
    const res = await ctx.post<ErrorBody>('/v1/orders', { customer_id: customer.id, ...resolved })
    expect(res.status).toBe(400)
    expect(res.body.error.message).toContain(message)
    expect(await ctx.db.selectFrom('orders').select('id').execute()).toHaveLength(before.length)
  })

  test('an unknown price or customer is 404; an inactive product is 400', async () => {
    const customer = await createCustomer(ctx)
    expect(
      (
        await ctx.post('/v1/orders', {
          customer_id: customer.id,
          type: 'ONE_TIME_PRODUCT',
          price_id: 'price_x',
        })
      ).status,
    ).toBe(404)
    const priceId = await oneTimePrice(ctx)
    expect(
      (
        await ctx.post('/v1/orders', {
          customer_id: 'cus_x',
          type: 'ONE_TIME_PRODUCT',
          price_id: priceId,
        })
      ).status,
    ).toBe(404)
    const inactive = await ctx.post<{ id: string; prices: { id: string }[] }>('/v1/products', {
      name: 'Retired',
      type: 'one_time',
      prices: [{ amount: '1', currency: 'usd' }],
      active: false,
    })
    const res = await ctx.post<ErrorBody>('/v1/orders', {
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: inactive.body.prices[0]!.id,
    })
    expect(res.status).toBe(400)
  })

  test("list filters; a customer token sees only its own orders; other tenants' orders are 404", async () => {
    const mine = await createCustomer(ctx)
    const theirs = await createCustomer(ctx)
    const priceId = await oneTimePrice(ctx)
    const own = await order({ customer_id: mine.id, type: 'ONE_TIME_PRODUCT', price_id: priceId })
    const foreign = await order({
      customer_id: theirs.id,
      type: 'CREDIT_TOP_UP',
      amount: '5',
      currency: 'usd',
    })
    const byType = await ctx.get<List<OrderBody>>(
      `/v1/orders?type=CREDIT_TOP_UP&customer_id=${theirs.id}`,
    )
    expect(byType.body.items.map((o) => o.id)).toEqual([foreign.id])
    const token = (await ctx.post<{ token: string }>(`/v1/customers/${mine.id}/tokens`)).body.token
    const list = await ctx.get<List<OrderBody>>('/v1/orders', { key: token })
    expect(list.body.items.map((o) => o.id)).toEqual([own.id])
    expect((await ctx.get(`/v1/orders/${foreign.id}`, { key: token })).status).toBe(404)
    expect(
      (
        await ctx.post(
          '/v1/orders',
          { customer_id: mine.id, type: 'ONE_TIME_PRODUCT', price_id: priceId },
          { key: token },
        )
      ).status,
    ).toBe(403)
    expect((await ctx.get(`/v1/orders/${own.id}`, { key: other.key })).status).toBe(404)
  })
})
