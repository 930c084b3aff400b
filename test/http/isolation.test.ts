// Tenant and environment isolation: an object of another tenant, or of the same tenant's other
// environment, is a 404 on every route that names it (path, query or body), and a customer
// token reaches only its own customer's invoices, payments and orders.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer } from '../fixtures.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'
import { postSandboxWebhook, sandboxEventBody } from '../payments-helpers.ts'

let ctx: TestContext
let other: TenantFixture

interface Obj {
  id: string
  [k: string]: unknown
}

/** Objects of a foreign scope (another tenant, or the main tenant's live environment). */
interface Foreign {
  key: string
  customer: { id: string }
  invoice: Obj
  draft: Obj
  product: Obj
  priceId: string
  discount: Obj
  order: Obj
  payment: Obj
  endpoint: Obj
  connection: Obj
  token: string
}

let foreign: Foreign
let live: Foreign

let n = 0
async function make(key: string): Promise<Foreign> {
  n += 1
  const post = async (path: string, body: unknown) => {
    const res = await ctx.post<Obj>(path, body, { key })
    expect(res.status, `${path} ${res.text}`).toBeLessThan(300)
    return res.body
  }
  const customer = await createCustomer(ctx, { email: `f${n}@example.com` }, key)
  const draft = await post('/v1/invoices', {
    customer_id: customer.id,
    currency: 'usd',
    lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
  })
  const inv = await post('/v1/invoices', {
    customer_id: customer.id,
    currency: 'usd',
    lines: [{ description: 'x', quantity: 1, unit_amount: '100.00' }],
  })
  const invoice = await post(`/v1/invoices/${inv.id}/finalize`, {})
  const product = await post('/v1/products', {
    name: 'P',
    type: 'one_time',
    prices: [{ amount: '30.00', currency: 'usd' }],
  })
  const priceId = (product.prices as { id: string }[])[0]!.id
  const discount = await post('/v1/discounts', { code: `FOREIGN${n}`, percent_off: 50 })
  const order = await post('/v1/orders', {
    customer_id: customer.id,
    type: 'ONE_TIME_PRODUCT',
    price_id: priceId,
  })
  const payment = await post('/v1/payments', {
    destination_type: 'INVOICE',
    destination_id: invoice.id,
    payment_method_type: 'OFFLINE',
    amount: '10.00',
    currency: 'usd',
  })
  const endpoint = await post('/v1/webhook_endpoints', { url: 'http://127.0.0.1:9/hook' })
  const connection = await post('/v1/gateway_connections', {
    gateway: 'external',
    credentials: { webhook_secret: 'whsec_foreign' },
  })
  const tok = await post(`/v1/customers/${customer.id}/tokens`, {})
  return {
    key,
    customer,
    invoice,
    draft,
    product,
    priceId,
    discount,
    order,
    payment,
    endpoint,
    connection,
    token: tok.token as string,
  }
}

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other tenant')
  foreign = await make(other.key)
  live = await make(ctx.main.liveKey)
}, 120_000)
afterAll(() => ctx.close())

function expect404(res: { status: number; body: unknown; text: string }) {
  expect(res.status, res.text).toBe(404)
  expect((res.body as ErrorBody).error.code).toBe('not_found')
}

const scopes = [
  ['another tenant', () => foreign],
  ['the live environment', () => live],
] as const

describe.each(scopes)('ids from %s are 404 for the main test key', (_name, f) => {
  test('path ids: reads', async () => {
    const o = f()
    for (const path of [
      `/v1/customers/${o.customer.id}`,
      `/v1/customers/${o.customer.id}/payment_methods`,
      `/v1/customers/${o.customer.id}/balance_transactions`,
      `/v1/invoices/${o.invoice.id}`,
      `/v1/invoices/${o.invoice.id}/pay_options`,
      `/v1/products/${o.product.id}`,
      `/v1/discounts/${o.discount.id}`,
      `/v1/orders/${o.order.id}`,
      `/v1/payments/${o.payment.id}`,
      `/v1/webhook_endpoints/${o.endpoint.id}`,
    ]) {
      const res = await ctx.get(path)
      expect(res.status, path).toBe(404)
    }
  })

  test('path ids: writes', async () => {
    const o = f()
    const calls: [string, string, unknown][] = [
      ['PATCH', `/v1/customers/${o.customer.id}`, { name: 'hacked' }],
      ['POST', `/v1/customers/${o.customer.id}/tokens`, {}],
      ['DELETE', `/v1/customers/${o.customer.id}/tokens`, undefined],
      ['PATCH', `/v1/products/${o.product.id}`, { name: 'hacked' }],
      ['PATCH', `/v1/discounts/${o.discount.id}`, { active: false }],
      ['POST', `/v1/invoices/${o.draft.id}/finalize`, {}],
      ['POST', `/v1/invoices/${o.invoice.id}/void`, {}],
      ['POST', `/v1/invoices/${o.invoice.id}/mark_uncollectible`, {}],
      ['POST', `/v1/invoices/${o.invoice.id}/pay`, { payment_method_type: 'OFFLINE' }],
      ['PUT', `/v1/invoices/${o.invoice.id}/payment`, { type: 'EXTERNAL' }],
      ['PATCH', `/v1/invoices/${o.invoice.id}/payment`, { success_url: 'https://x.test/' }],
      ['POST', `/v1/invoices/${o.invoice.id}/payment/confirm`, {}],
      ['PATCH', `/v1/payments/${o.payment.id}`, { description: 'hacked' }],
      ['PUT', `/v1/payments/${o.payment.id}`, { description: 'hacked' }],
      ['DELETE', `/v1/payments/${o.payment.id}`, undefined],
      ['POST', `/v1/payments/${o.payment.id}/process`, {}],
      ['POST', `/v1/payments/${o.payment.id}/cancel`, {}],
      ['POST', `/v1/payments/${o.payment.id}/refunds`, { amount: '1.00' }],
      ['PATCH', `/v1/webhook_endpoints/${o.endpoint.id}`, { url: 'http://127.0.0.1:9/x' }],
      ['DELETE', `/v1/webhook_endpoints/${o.endpoint.id}`, undefined],
      ['POST', `/v1/webhook_endpoints/${o.endpoint.id}/rotate_secret`, {}],
      ['PATCH', `/v1/gateway_connections/${o.connection.id}`, { active: false }],
      ['DELETE', `/v1/gateway_connections/${o.connection.id}`, undefined],
    ]
    for (const [method, path, body] of calls) {
      const res = await ctx.request(method as 'GET', path, body)
      expect(res.status, `${method} ${path} ${res.text}`).toBe(404)
    }
    // Nothing changed for the owner.
    const mine = await ctx.get<Obj>(`/v1/customers/${o.customer.id}`, { key: o.key })
    expect(mine.body.name).toBe('Ada Lovelace')
    const conn = await ctx.get<{ items: Obj[] }>('/v1/gateway_connections', { key: o.key })
    expect(conn.body.items.map((c) => c.id)).toContain(o.connection.id)
    const pay = await ctx.get<Obj>(`/v1/payments/${o.payment.id}`, { key: o.key })
    expect(pay.body.payment_status).toBe('SUCCEEDED')
    expect(pay.body.amount_refunded).toBe('0.00')
  })

  test('body ids', async () => {
    const o = f()
    const mine = await createCustomer(ctx)
    const myInvoice = await ctx.post<Obj>('/v1/invoices', {
      customer_id: mine.id,
      currency: 'usd',
      lines: [{ description: 'x', quantity: 1, unit_amount: '100.00' }],
    })
    expect(myInvoice.status).toBe(201)
    const calls: [string, string, unknown, number[]][] = [
      [
        'POST',
        '/v1/invoices',
        {
          customer_id: o.customer.id,
          currency: 'usd',
          lines: [{ description: 'x', quantity: 1, unit_amount: '1.00' }],
        },
        [404],
      ],
      [
        'POST',
        '/v1/invoices',
        {
          customer_id: mine.id,
          currency: 'usd',
          lines: [{ description: 'x', quantity: 1, unit_amount: '1.00' }],
          discount_code: String(o.discount.code),
        },
        [404, 400],
      ],
      [
        'POST',
        '/v1/orders',
        { customer_id: o.customer.id, type: 'ONE_TIME_PRODUCT', price_id: o.priceId },
        [404],
      ],
      [
        'POST',
        '/v1/orders',
        { customer_id: mine.id, type: 'ONE_TIME_PRODUCT', price_id: o.priceId },
        [404],
      ],
      [
        'POST',
        '/v1/orders',
        {
          customer_id: mine.id,
          type: 'CREDIT_TOP_UP',
          amount: '10.00',
          currency: 'usd',
          discount_code: String(o.discount.code),
        },
        [404, 400],
      ],
      ['POST', '/v1/orders/pay', { orders: [o.order.id], payment_method_type: 'OFFLINE' }, [404]],
      [
        'POST',
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: o.invoice.id,
          payment_method_type: 'OFFLINE',
          amount: '1.00',
          currency: 'usd',
        },
        [404],
      ],
    ]
    for (const [method, path, body, statuses] of calls) {
      const res = await ctx.request(method as 'GET', path, body)
      expect(
        statuses,
        `${method} ${path} ${JSON.stringify(body)} -> ${res.status} ${res.text}`,
      ).toContain(res.status)
    }
    // The foreign discount was never redeemed.
    const d = await ctx.get<Obj>(`/v1/discounts/${o.discount.id}`, { key: o.key })
    expect(d.body.times_redeemed).toBe(0)
  })

  test('list filters by a foreign id show nothing', async () => {
    const o = f()
    for (const path of [
      `/v1/invoices?customer_id=${o.customer.id}`,
      `/v1/orders?customer_id=${o.customer.id}`,
      `/v1/payments?customer_id=${o.customer.id}`,
      `/v1/subscriptions?customer_id=${o.customer.id}`,
      `/v1/events?object_id=${o.invoice.id}`,
      `/v1/refunds?payment_id=${o.payment.id}`,
      `/v1/payments?destination_id=${o.invoice.id}`,
    ]) {
      const res = await ctx.get<{ items: unknown[] }>(path)
      expect(res.status, path).toBe(200)
      expect(res.body.items, path).toEqual([])
    }
  })

  test('a foreign customer token cannot be used with the main environment', async () => {
    const o = f()
    const res = await ctx.get(`/v1/invoices/${o.invoice.id}`, {
      key: o.token,
      headers: { 'x-environment-id': ctx.main.test.id },
    })
    expect(res.status).toBe(403)
  })
})

describe('foreign events and deliveries', () => {
  test("another tenant's events and deliveries are 404", async () => {
    // An event after the endpoint exists: a delivery to it.
    await createCustomer(ctx, { email: 'late@example.com' }, other.key)
    const events = await ctx.get<{ items: Obj[] }>('/v1/events?limit=1000', { key: other.key })
    expect(events.body.items.length).toBeGreaterThan(0)
    const event = events.body.items[0]!
    expect404(await ctx.get(`/v1/events/${event.id}`))
    const deliveries = await ctx.get<{ items: Obj[] }>('/v1/webhook_deliveries?limit=1000', {
      key: other.key,
    })
    const delivery = deliveries.body.items[0]
    expect(delivery).toBeDefined()
    if (delivery) expect404(await ctx.post(`/v1/webhook_deliveries/${delivery.id}/redeliver`, {}))
    const mine = await ctx.get<{ items: Obj[] }>('/v1/events?limit=1000')
    expect(mine.body.items.some((e) => e.id === event.id)).toBe(false)
    const myDeliveries = await ctx.get<{ items: Obj[] }>(
      `/v1/webhook_deliveries?limit=1000&endpoint_id=${foreign.endpoint.id}`,
    )
    expect(myDeliveries.body.items).toEqual([])
    const byEvent = await ctx.get<{ items: Obj[] }>(
      `/v1/webhook_deliveries?limit=1000&event_id=${event.id}`,
    )
    expect(byEvent.body.items).toEqual([])
  })
})

describe('customer tokens', () => {
  async function tokenFor(customerId: string, body: Record<string, unknown> = {}) {
    const res = await ctx.post<{ token: string; expires_at: string }>(
      `/v1/customers/${customerId}/tokens`,
      body,
    )
    expect(res.status, res.text).toBe(201)
    return res.body.token
  }
  async function setup() {
    const alice = await createCustomer(ctx, { email: 'alice@example.com' })
    const bob = await createCustomer(ctx, { email: 'bob@example.com' })
    const inv = async (customerId: string) => {
      const d = await ctx.post<Obj>('/v1/invoices', {
        customer_id: customerId,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '100.00' }],
      })
      const f = await ctx.post<Obj>(`/v1/invoices/${d.body.id}/finalize`, {})
      expect(f.status).toBe(200)
      return f.body
    }
    const aliceInvoice = await inv(alice.id)
    const bobInvoice = await inv(bob.id)
    const bobPayment = await ctx.post<Obj>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: bobInvoice.id,
      payment_method_type: 'OFFLINE',
      amount: '10.00',
      currency: 'usd',
    })
    expect(bobPayment.status).toBe(201)
    const price = await ctx.post<Obj>('/v1/products', {
      name: 'P',
      type: 'one_time',
      prices: [{ amount: '30.00', currency: 'usd' }],
    })
    const bobOrder = await ctx.post<Obj>('/v1/orders', {
      customer_id: bob.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: (price.body.prices as { id: string }[])[0]!.id,
    })
    expect(bobOrder.status).toBe(201)
    const token = await tokenFor(alice.id)
    return {
      alice,
      bob,
      aliceInvoice,
      bobInvoice,
      bobPayment: bobPayment.body,
      bobOrder: bobOrder.body,
      token,
    }
  }

  test("another customer's objects are 404 to a token", async () => {
    const s = await setup()
    const calls: [string, string, unknown][] = [
      ['GET', `/v1/invoices/${s.bobInvoice.id}`, undefined],
      ['GET', `/v1/invoices/${s.bobInvoice.id}/pay_options`, undefined],
      ['GET', `/v1/payments/${s.bobPayment.id}`, undefined],
      ['GET', `/v1/orders/${s.bobOrder.id}`, undefined],
      [
        'POST',
        `/v1/invoices/${s.bobInvoice.id}/pay`,
        { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      ],
      ['PUT', `/v1/invoices/${s.bobInvoice.id}/payment`, { type: 'CHECKOUT' }],
      [
        'PUT',
        `/v1/invoices/${s.bobInvoice.id}/payment`,
        { type: 'PLATFORM', account_id: s.bob.id },
      ],
      ['PATCH', `/v1/invoices/${s.bobInvoice.id}/payment`, { success_url: 'https://x.test/' }],
      ['POST', `/v1/invoices/${s.bobInvoice.id}/payment/confirm`, {}],
      ['PATCH', `/v1/payments/${s.bobPayment.id}`, { description: 'x' }],
      ['PUT', `/v1/payments/${s.bobPayment.id}`, { description: 'x' }],
      ['POST', `/v1/payments/${s.bobPayment.id}/process`, {}],
      [
        'POST',
        '/v1/orders/pay',
        {
          orders: [s.bobOrder.id],
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
        },
      ],
      [
        'POST',
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: s.bobInvoice.id,
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
          amount: '1.00',
          currency: 'usd',
        },
      ],
    ]
    for (const [method, path, body] of calls) {
      const res = await ctx.request(method as 'GET', path, body, { key: s.token })
      expect(res.status, `${method} ${path} ${res.text}`).toBe(404)
    }
    for (const path of [
      `/v1/invoices?customer_id=${s.bob.id}`,
      `/v1/payments?customer_id=${s.bob.id}`,
      `/v1/orders?customer_id=${s.bob.id}`,
      `/v1/payments?destination_id=${s.bobInvoice.id}`,
      '/v1/invoices?limit=1000',
      '/v1/payments?limit=1000',
      '/v1/orders?limit=1000',
    ]) {
      const res = await ctx.get<{ items: Obj[]; pagination: { total: number } }>(path, {
        key: s.token,
      })
      expect(res.status, path).toBe(200)
      expect(res.body.pagination.total, path).toBe(res.body.items.length)
      expect(
        res.body.items.filter((i) => i.customer_id !== s.alice.id),
        path,
      ).toEqual([])
    }
  })

  test('a token is refused on admin routes', async () => {
    const s = await setup()
    const calls: [string, string, unknown][] = [
      ['GET', '/v1/customers', undefined],
      ['GET', `/v1/customers/${s.alice.id}`, undefined],
      ['PATCH', `/v1/customers/${s.alice.id}`, { name: 'x' }],
      ['POST', '/v1/customers', { name: 'x', email: 'x@example.com' }],
      ['GET', `/v1/customers/${s.alice.id}/payment_methods`, undefined],
      ['GET', `/v1/customers/${s.alice.id}/balance_transactions`, undefined],
      ['POST', `/v1/customers/${s.alice.id}/tokens`, {}],
      ['DELETE', `/v1/customers/${s.alice.id}/tokens`, undefined],
      ['GET', '/v1/products', undefined],
      [
        'POST',
        '/v1/products',
        { name: 'x', type: 'one_time', prices: [{ amount: '1.00', currency: 'usd' }] },
      ],
      ['GET', '/v1/discounts', undefined],
      ['POST', '/v1/discounts', { code: 'TOKENX', percent_off: 100 }],
      [
        'POST',
        '/v1/orders',
        { customer_id: s.alice.id, type: 'CREDIT_TOP_UP', amount: '10.00', currency: 'usd' },
      ],
      [
        'POST',
        '/v1/invoices',
        {
          customer_id: s.alice.id,
          currency: 'usd',
          lines: [{ description: 'x', quantity: 1, unit_amount: '1.00' }],
        },
      ],
      ['POST', `/v1/invoices/${s.aliceInvoice.id}/void`, {}],
      ['POST', `/v1/invoices/${s.aliceInvoice.id}/mark_uncollectible`, {}],
      ['GET', '/v1/subscriptions', undefined],
      ['GET', '/v1/refunds', undefined],
      ['GET', '/v1/events', undefined],
      ['GET', '/v1/webhook_endpoints', undefined],
      ['GET', '/v1/webhook_deliveries', undefined],
      ['GET', '/v1/gateway_connections', undefined],
      ['GET', '/v1/api_keys', undefined],
      ['POST', `/v1/payments/${s.bobPayment.id}/refunds`, {}],
      ['POST', `/v1/payments/${s.bobPayment.id}/cancel`, {}],
      ['DELETE', `/v1/payments/${s.bobPayment.id}`, undefined],
    ]
    for (const [method, path, body] of calls) {
      const res = await ctx.request(method as 'GET', path, body, { key: s.token })
      expect(res.status, `${method} ${path} ${res.text}`).toBe(403)
      expect((res.body as ErrorBody).error.code).toBe('forbidden')
    }
  })

  test('a token cannot record OFFLINE money on its own invoice', async () => {
    const s = await setup()
    for (const [method, path, body] of [
      ['POST', `/v1/invoices/${s.aliceInvoice.id}/pay`, { payment_method_type: 'OFFLINE' }],
      [
        'POST',
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: s.aliceInvoice.id,
          payment_method_type: 'OFFLINE',
          amount: '100.00',
          currency: 'usd',
        },
      ],
    ] as const) {
      const res = await ctx.request(method, path, body, { key: s.token })
      expect(res.status, `${path} ${res.text}`).toBe(403)
    }
    const inv = await ctx.get<Obj>(`/v1/invoices/${s.aliceInvoice.id}`)
    expect(inv.body.amount_paid).toBe('0.00')
  })

  test('an expired token is 401; a revoked one is 401', async () => {
    const alice = await createCustomer(ctx)
    const token = await tokenFor(alice.id, { expires_in: 60 })
    expect((await ctx.get('/v1/invoices', { key: token })).status).toBe(200)
    ctx.clock.advance(61_000)
    const res = await ctx.get<ErrorBody>('/v1/invoices', { key: token })
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })

  test('X-Environment-ID mismatch with a token is 403', async () => {
    const alice = await createCustomer(ctx)
    const token = await tokenFor(alice.id)
    const res = await ctx.get<ErrorBody>('/v1/invoices', {
      key: token,
      headers: { 'x-environment-id': ctx.main.live.id },
    })
    expect(res.status).toBe(403)
    expect(
      (await ctx.get('/v1/invoices', { key: token, headers: { 'x-environment-id': 'test' } }))
        .status,
    ).toBe(200)
  })
})

describe('more foreign ids', () => {
  test("another tenant's subscription, refund and payment method are 404", async () => {
    const okey = other.key
    const cus = await createCustomer(ctx, {}, okey)
    const product = await ctx.post<Obj>(
      '/v1/products',
      {
        name: 'R',
        type: 'recurring',
        prices: [{ amount: '20.00', currency: 'usd', interval: 'month' }],
      },
      { key: okey },
    )
    const order = await ctx.post<Obj>(
      '/v1/orders',
      {
        customer_id: cus.id,
        type: 'SUBSCRIPTION',
        price_id: (product.body.prices as { id: string }[])[0]!.id,
      },
      { key: okey },
    )
    expect(order.status, order.text).toBe(201)
    const subs = await ctx.get<{ items: Obj[] }>(`/v1/subscriptions?customer_id=${cus.id}`, {
      key: okey,
    })
    const sub = subs.body.items[0]!
    expect(sub).toBeDefined()
    expect404(await ctx.get(`/v1/subscriptions/${sub.id}`))
    expect404(await ctx.patch(`/v1/subscriptions/${sub.id}`, { quantity: 2 }))
    expect404(await ctx.post(`/v1/subscriptions/${sub.id}/cancel`, {}))

    const refund = await ctx.post<Obj>(
      `/v1/payments/${foreign.payment.id}/refunds`,
      { amount: '1.00' },
      { key: okey },
    )
    expect(refund.status, refund.text).toBe(201)
    expect404(await ctx.get(`/v1/refunds/${refund.body.id}`))
    const refunds = await ctx.get<{ items: Obj[] }>('/v1/refunds?limit=1000')
    expect(refunds.body.items.some((r) => r.id === refund.body.id)).toBe(false)

    // A main-tenant subscription cannot move to a foreign price.
    const mine = await createCustomer(ctx)
    const myProduct = await ctx.post<Obj>('/v1/products', {
      name: 'R',
      type: 'recurring',
      prices: [{ amount: '20.00', currency: 'usd', interval: 'month' }],
    })
    const myOrder = await ctx.post<Obj>('/v1/orders', {
      customer_id: mine.id,
      type: 'SUBSCRIPTION',
      price_id: (myProduct.body.prices as { id: string }[])[0]!.id,
    })
    expect(myOrder.status).toBe(201)
    const mySubs = await ctx.get<{ items: Obj[] }>(`/v1/subscriptions?customer_id=${mine.id}`)
    const mySub = mySubs.body.items[0]!
    const moved = await ctx.patch(`/v1/subscriptions/${mySub.id}`, {
      price_id: (product.body.prices as { id: string }[])[0]!.id,
    })
    expect(moved.status, moved.text).toBe(404)
  })

  test("a customer's default cannot be another customer's card", async () => {
    const { savedSandboxCard } = await import('../payments-helpers.ts')
    const alice = await createCustomer(ctx)
    const bob = await createCustomer(ctx)
    const bobCard = await savedSandboxCard(ctx, bob.id, '4242424242424242')
    expect404(await ctx.post(`/v1/customers/${alice.id}/payment_methods/${bobCard.id}/default`, {}))
    const res = await ctx.patch(`/v1/customers/${alice.id}`, {
      default_payment_method_id: bobCard.id,
    })
    expect(res.status).toBe(404)
    // Nor can a token-less CARD payment of Alice's invoice charge Bob's card.
    const d = await ctx.post<Obj>('/v1/invoices', {
      customer_id: alice.id,
      currency: 'usd',
      lines: [{ description: 'x', quantity: 1, unit_amount: '5.00' }],
    })
    await ctx.post(`/v1/invoices/${d.body.id}/finalize`, {})
    for (const gw of [{}, { payment_gateway: 'sandbox' }]) {
      const pay = await ctx.post<Obj>('/v1/payments', {
        destination_type: 'INVOICE',
        destination_id: d.body.id,
        payment_method_type: 'CARD',
        payment_method_id: bobCard.id,
        amount: '5.00',
        currency: 'usd',
        ...gw,
      })
      expect(pay.status, pay.text).toBe(404)
    }
    const inv = await ctx.get<Obj>(`/v1/invoices/${d.body.id}`)
    expect(inv.body.amount_paid).toBe('0.00')
  })

  test('inbound webhook paths: wrong tenant/environment pairs are 404, wrong signature 400 (documented)', async () => {
    const body = sandboxEventBody('evt_iso_1', 'payment.succeeded', {
      payment_id: foreign.payment.id,
    })
    const post = (tenantId: string, environmentId: string, signedFor: string) =>
      postSandboxWebhook(ctx, body, { tenantId, environmentId }, signedFor)
    expect((await post(ctx.main.tenant.id, other.test.id, other.test.id)).statusCode).toBe(404)
    expect((await post(other.tenant.id, ctx.main.test.id, ctx.main.test.id)).statusCode).toBe(404)
    // docs/payments.md: a bad signature is a 400; another environment's signature is a bad one.
    const wrongSig = await post(other.tenant.id, other.test.id, ctx.main.test.id)
    expect(wrongSig.statusCode).toBe(400)
    expect(JSON.parse(wrongSig.body).error.code).toBe('validation_error')
  })
})

describe('odd ids never 500', () => {
  test('ids with a NUL byte or invalid UTF-8 are 404/400, never 500', async () => {
    const odd = ['%00', 'inv_%00x', '%C0%AF', '%FF']
    const paths = (id: string) => [
      ['GET', `/v1/invoices/${id}`],
      ['GET', `/v1/customers/${id}`],
      ['GET', `/v1/payments/${id}`],
      ['GET', `/v1/orders/${id}`],
      ['GET', `/v1/events/${id}`],
      ['GET', `/v1/refunds/${id}`],
      ['GET', `/v1/invoices?customer_id=${id}`],
      ['GET', `/v1/payments?destination_id=${id}`],
      ['POST', `/v1/webhook_deliveries/${id}/redeliver`],
      ['POST', `/v1/webhooks/sandbox/${id}/${id}`],
      ['POST', `/v1/webhooks/sandbox/${ctx.main.tenant.id}/${id}`],
    ]
    const bad: string[] = []
    for (const id of odd) {
      for (const [method, path] of paths(id)) {
        const res = await ctx.request(method as 'GET', path!, method === 'POST' ? {} : undefined)
        if (res.status >= 500) bad.push(`${method} ${path} -> ${res.status} ${res.text}`)
      }
    }
    const alice = await createCustomer(ctx)
    const tok = await ctx.post<{ token: string }>(`/v1/customers/${alice.id}/tokens`, {})
    for (const id of odd) {
      for (const [method, path] of paths(id).slice(0, 4)) {
        const res = await ctx.request(method as 'GET', path!, undefined, { key: tok.body.token })
        if (res.status >= 500) bad.push(`token ${method} ${path} -> ${res.status} ${res.text}`)
      }
    }
    for (const body of [{ orders: ['ord_\u0000'], payment_method_type: 'OFFLINE' }]) {
      const res = await ctx.post('/v1/orders/pay', body)
      if (res.status >= 500) bad.push(`orders/pay -> ${res.status} ${res.text}`)
    }
    const inv = await ctx.post('/v1/invoices', {
      customer_id: 'cus_\u0000',
      currency: 'usd',
      lines: [{ description: 'x', quantity: 1, unit_amount: '1.00' }],
    })
    if (inv.status >= 500) bad.push(`invoices customer_id NUL -> ${inv.status} ${inv.text}`)
    expect(bad).toEqual([])
  })
})
