import { createHmac, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  customerWithSavedCard,
  invoiceToPay,
  type PaymentBody,
} from '../payments-helpers.ts'

/**
 * What the contract (DESIGN) names that an audit found missing or answered otherwise, and
 * requests that were answered 500 instead of the 4xx they deserve.
 */

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('requests answered 500 instead of a 4xx', () => {
  test('POST /v1/gateway_connections with gateway "__proto__", "constructor" or "toString" is 400 validation_error', async () => {
    for (const gateway of ['__proto__', 'constructor', 'toString']) {
      const res = await ctx.post<ErrorBody>('/v1/gateway_connections', {
        gateway,
        credentials: {},
      })
      expect(res.status, `${gateway}: ${res.text}`).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
  })

  test('POST /v1/payments with payment_date at a leap second (23:59:60Z, valid date-time) is 400, not 500', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '1.00',
      payment_date: '2030-12-31T23:59:60Z',
      process_payment: false,
    })
    expect(res.status, res.text).toBe(400)
    expect((res.body as unknown as ErrorBody).error.code).toBe('validation_error')
  })

  test('a signed external webhook whose event_id is 4 KB is 400, not 500', async () => {
    const connected = await ctx.post('/v1/gateway_connections', {
      gateway: 'external',
      credentials: { webhook_secret: 'whsec_hunt' },
    })
    expect(connected.status, connected.text).toBe(201)
    const { invoice } = await invoiceToPay(ctx)
    const payment = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '10.00',
    })
    expect(payment.status, payment.text).toBe(201)
    const body = JSON.stringify({
      event_id: randomBytes(3000).toString('base64'),
      payment_id: payment.body.id,
      status: 'processing',
    })
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/v1/webhooks/external/${ctx.main.tenant.id}/${ctx.main.test.id}`,
      headers: {
        'content-type': 'application/json',
        'x-signature': createHmac('sha256', 'whsec_hunt').update(body).digest('hex'),
      },
      payload: body,
    })
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400)
    expect(res.statusCode, res.body).toBeLessThan(500)
  })
})

describe('CARD payments (DESIGN: "PAYMENT_LINK needs a gateway; CARD uses payment_method_id or the customer\'s default (else 402 no_default_payment_method)")', () => {
  test('a CARD payment without payment_gateway for a customer with no default card is 402 no_default_payment_method', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      amount: '30.00',
    })
    expect(res.status, res.text).toBe(402)
    expect((res.body as unknown as ErrorBody).error.code).toBe('no_default_payment_method')
  })

  test("a CARD payment without payment_gateway on another tenant's invoice is 404, and its card is not looked up", async () => {
    const other = await ctx.createTenantFixture('Other tenant')
    const { nextInvoiceId } = await customerWithSavedCard(ctx)
    const res = await createPayment(
      ctx,
      { destination_id: nextInvoiceId, payment_method_type: 'CARD', amount: '30.00' },
      { key: other.key },
    )
    expect(res.status, res.text).toBe(404)
    expect((res.body as unknown as ErrorBody).error.code).toBe('not_found')
    const written = await ctx.db
      .selectFrom('payments')
      .select('id')
      .where('destination_id', '=', nextInvoiceId)
      .execute()
    expect(written).toEqual([])
  })

  test("a CARD payment without payment_gateway charges the customer's saved default card", async () => {
    const { nextInvoiceId } = await customerWithSavedCard(ctx)
    const res = await createPayment(ctx, {
      destination_id: nextInvoiceId,
      payment_method_type: 'CARD',
      amount: '30.00',
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body.payment_method_id).not.toBeNull()
  })
})

describe('lists (DESIGN: "filters `status` / `payment_status`")', () => {
  test('GET /v1/webhook_endpoints?status=disabled lists only disabled endpoints', async () => {
    const enabled = await ctx.post<{ id: string }>('/v1/webhook_endpoints', {
      url: 'http://127.0.0.1:9/enabled',
    })
    const disabled = await ctx.post<{ id: string }>('/v1/webhook_endpoints', {
      url: 'http://127.0.0.1:9/disabled',
    })
    expect(enabled.status).toBe(201)
    const patched = await ctx.patch(`/v1/webhook_endpoints/${disabled.body.id}`, {
      status: 'disabled',
    })
    expect(patched.status, patched.text).toBe(200)
    const res = await ctx.get<{ items: { id: string; status: string }[] }>(
      '/v1/webhook_endpoints?status=disabled&limit=1000',
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.items.map((e) => e.status)).not.toContain('enabled')
    expect(res.body.items.map((e) => e.id)).toContain(disabled.body.id)
    // A status no endpoint has is refused, not ignored.
    const bogus = await ctx.get<ErrorBody>('/v1/webhook_endpoints?status=paused')
    expect(bogus.status, bogus.text).toBe(400)
    expect(bogus.body.error.code).toBe('validation_error')
  })
})

describe('routes named by DESIGN', () => {
  test('POST /v1/orders/pay takes the DESIGN body {"orders":[ids],"payment_method":...}', async () => {
    const customer = await createCustomer(ctx)
    const order = await ctx.post<{ id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '5.00',
      currency: 'usd',
    })
    expect(order.status, order.text).toBe(201)
    const res = await ctx.post('/v1/orders/pay', {
      orders: [order.body.id],
      payment_method: 'OFFLINE',
    })
    expect(res.status, res.text).toBe(201)
  })

  test('POST /v1/orders/pay takes payment_method as an object, and refuses one that disagrees with the flat fields', async () => {
    const customer = await createCustomer(ctx)
    const order = async () =>
      (
        await ctx.post<{ id: string }>('/v1/orders', {
          customer_id: customer.id,
          type: 'CREDIT_TOP_UP',
          amount: '5.00',
          currency: 'usd',
        })
      ).body.id
    const paid = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [await order()],
      payment_method: { type: 'OFFLINE', gateway: 'offline' },
    })
    expect(paid.status, paid.text).toBe(201)
    expect(paid.body).toMatchObject({ payment_method_type: 'OFFLINE', payment_gateway: 'offline' })
    const disagreeing = await ctx.post<ErrorBody>('/v1/orders/pay', {
      orders: [await order()],
      payment_method_type: 'CREDITS',
      payment_method: 'OFFLINE',
    })
    expect(disagreeing.status, disagreeing.text).toBe(400)
    expect(disagreeing.body.error.details).toMatchObject({ field: 'payment_method_type' })
    const neither = await ctx.post<ErrorBody>('/v1/orders/pay', { orders: [await order()] })
    expect(neither.status, neither.text).toBe(400)
    // A payment_method with a field it does not take is refused, not read in part.
    const unknown = await ctx.post<ErrorBody>('/v1/orders/pay', {
      orders: [await order()],
      payment_method: { type: 'OFFLINE', card: 'pm_x' },
    })
    expect(unknown.status, unknown.text).toBe(400)
    expect(unknown.body.error.code).toBe('validation_error')
  })
})

// docs/api.md: an action that takes no fields refuses one by name (Stripe's "unknown
// parameter"), as every other body does, rather than ignoring it while it acts.
describe('actions that take no body', () => {
  const missing = 'x_01jzzzzzzzzzzzzzzzzzzzzzzz'
  test.each([
    ['DELETE', `/v1/api_keys/${missing}`],
    ['POST', `/v1/customers/${missing}/payment_methods/${missing}/default`],
    ['DELETE', `/v1/customers/${missing}/tokens`],
    ['DELETE', `/v1/gateway_connections/${missing}`],
    ['POST', `/v1/invoices/${missing}/finalize`],
    ['POST', `/v1/invoices/${missing}/void`],
    ['POST', `/v1/invoices/${missing}/mark_uncollectible`],
    ['DELETE', `/v1/payments/${missing}`],
    ['POST', `/v1/payments/${missing}/process`],
    ['POST', `/v1/payments/${missing}/cancel`],
    ['DELETE', `/v1/webhook_endpoints/${missing}`],
    ['POST', `/v1/webhook_deliveries/${missing}/redeliver`],
    ['POST', `/api/v1/payments/${missing}/cancel`],
  ] as const)(
    '%s %s: a field is 400 naming it; no body or {} reach the route',
    async (method, path) => {
      const refused = await ctx.request<ErrorBody>(method, path, { note: 'x' })
      expect(refused.status, refused.text).toBe(400)
      expect(refused.body.error).toMatchObject({
        code: 'validation_error',
        details: {
          errors: [{ field: 'body.note', message: 'must NOT have additional properties' }],
        },
      })
      // Past validation, the object is not found.
      for (const body of [undefined, {}]) {
        const res = await ctx.request<ErrorBody>(method, path, body)
        expect(res.status, `${JSON.stringify(body)}: ${res.text}`).toBe(404)
        expect(res.body.error.code).toBe('not_found')
      }
    },
  )

  test('/openapi.json still documents them', async () => {
    const res = await ctx.get<{ paths: Record<string, Record<string, unknown>> }>('/openapi.json', {
      key: null,
    })
    expect(res.status, res.text).toBe(200)
    expect(Object.keys(res.body.paths['/v1/payments/{id}/cancel'] ?? {})).toContain('post')
    expect(Object.keys(res.body.paths['/v1/api_keys/{id}'] ?? {})).toContain('delete')
  })
})
