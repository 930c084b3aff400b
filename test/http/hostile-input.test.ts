import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { jsonNestingExceeds, MAX_JSON_DEPTH } from '../../src/http/json-body.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createSandboxLink,
  getPayment,
  invoiceToPay,
  offlinePayment,
  type PaymentBody,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

describe('jsonNestingExceeds', () => {
  test('counts arrays and objects, not brackets inside strings', () => {
    expect(jsonNestingExceeds(nested(3), 3)).toBe(false)
    expect(jsonNestingExceeds(nested(4), 3)).toBe(true)
    expect(jsonNestingExceeds('{"a":{"b":[1]}}', 3)).toBe(false)
    expect(jsonNestingExceeds('{"a":{"b":[{}]}}', 3)).toBe(true)
    expect(jsonNestingExceeds(`{"a":"${'['.repeat(100)}"}`, 3)).toBe(false)
    expect(jsonNestingExceeds(`{"a":"\\"${'{'.repeat(100)}"}`, 3)).toBe(false)
    expect(jsonNestingExceeds(`{"a":"\\\\",${'"b":{'.repeat(5)}1${'}'.repeat(5)}}`, 3)).toBe(true)
  })
})

describe('bodies nested past the limit', () => {
  test('are 400 validation_error, with or without an Idempotency-Key, and nothing is created', async () => {
    const body = `{"name":"Deep","email":"deep@example.com","zz":${nested(5000)}}`
    for (const idempotencyKey of [undefined, 'deep-1']) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/v1/customers',
        headers: {
          authorization: `Bearer ${ctx.main.key}`,
          'content-type': 'application/json',
          ...(idempotencyKey && { 'idempotency-key': idempotencyKey }),
        },
        payload: body,
      })
      expect(res.statusCode).toBe(400)
      const error = (res.json() as ErrorBody).error
      expect(error.code).toBe('validation_error')
      expect(error.details).toEqual({ max_depth: MAX_JSON_DEPTH })
    }
    const { rows } = await ctx.pool.query(
      `select count(*)::int as n from customers where email = 'deep@example.com'`,
    )
    expect(rows[0].n).toBe(0)
  })

  test('some_data of the invoice on-ramp nested 5,000 deep is 400, not a 500', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await ctx.app.inject({
      method: 'PUT',
      url: `/v1/invoices/${invoice.id}/payment`,
      headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': 'application/json' },
      payload: `{"type":"EXTERNAL","some_data":${nested(5000)}}`,
    })
    expect(res.statusCode).toBe(400)
  })

  test('nesting within the limit is parsed as before', async () => {
    const res = await ctx.post<{ metadata: Record<string, string> }>('/v1/customers', {
      name: 'Shallow',
      email: 'shallow@example.com',
      metadata: { a: '1' },
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body.metadata).toEqual({ a: '1' })
  })
})

describe("the router's refusals keep the error shape", () => {
  test.each([
    [`/v1/customers/${'x'.repeat(101)}`, /longer than 100/],
    ['/v1/customers/%ff', /malformed/],
    ['/v1/customers/%E0%A4%A', /malformed/],
  ])('GET %s is 400 validation_error', async (url, message) => {
    const res = await ctx.get<ErrorBody>(url)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message).toMatch(message)
  })
})

describe('values that were accepted and should not be', () => {
  test('metadata keys must be 1 to 40 characters', async () => {
    for (const key of ['', 'k'.repeat(41)]) {
      const res = await ctx.post<ErrorBody>('/v1/customers', {
        name: 'Meta',
        email: 'meta@example.com',
        metadata: { [key]: 'v' },
      })
      expect(res.status, JSON.stringify(key)).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
    const ok = await ctx.post('/v1/customers', {
      name: 'Meta',
      email: 'meta@example.com',
      metadata: { ['k'.repeat(40)]: 'v' },
    })
    expect(ok.status).toBe(201)
  })

  test.each([['javascript:alert(1)'], ['ftp://example.com/x'], ['data:text/html,hi']])(
    'success_url and cancel_url %s are 400: a customer is only sent back to http(s)',
    async (url) => {
      const { invoice } = await invoiceToPay(ctx)
      for (const field of ['success_url', 'cancel_url']) {
        const res = await createSandboxLink(ctx, invoice, invoice.amount_due, { [field]: url })
        expect(res.status, field).toBe(400)
      }
    },
  )

  test.each([
    ['13', '2030'],
    ['0', '2030'],
    ['ab', 'cd'],
    ['12', 'cd'],
  ])(
    'a sandbox card expiring %s/%s is refused on the page; nothing is paid',
    async (month, year) => {
      const { invoice } = await invoiceToPay(ctx)
      const link = await createSandboxLink(ctx, invoice)
      const res = await submitCard(
        ctx,
        sessionOf(link.body as PaymentBody),
        '4242424242424242',
        month,
        year,
      )
      expect(res.statusCode).toBe(400)
      expect(res.headers['content-type']).toContain('text/html')
      expect(res.body).toContain('expiration date')
      expect((await getPayment(ctx, link.body.id)).payment_status).toBe('PENDING')
    },
  )
})

describe('every list takes the list query', () => {
  test.each([
    ['/v1/gateway_connections?limit=abc'],
    ['/v1/gateway_connections?limit=0'],
    ['/v1/gateway_connections?offset=-5'],
    ['/v1/api_keys?from_date=abc'],
    // Days that are not on the calendar, which `Date` would move into the next month.
    ['/v1/payments?from_date=2025-02-30'],
    ['/v1/payments?to_date=2025-04-31T10:00:00Z'],
    ['/v1/invoices?from_date=2025-00-10'],
    ['/v1/payments?from_date=2023-02-29'],
    ['/v1/api_keys?sort=bogus'],
  ])('%s is 400', async (url) => {
    const res = await ctx.get<ErrorBody>(url)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('a leap day is a day', async () => {
    expect((await ctx.get('/v1/payments?from_date=2024-02-29&to_date=2024-12-31')).status).toBe(200)
    expect((await ctx.get('/v1/payments?from_date=2000-02-29')).status).toBe(200)
    expect((await ctx.get('/v1/payments?from_date=1900-02-29')).status).toBe(400)
  })

  test("a customer's payment methods page like any list", async () => {
    const { customer } = await invoiceToPay(ctx)
    const bad = await ctx.get(`/v1/customers/${customer.id}/payment_methods?limit=1001`)
    expect(bad.status).toBe(400)
    const ok = await ctx.get<{ pagination: { total: number; limit: number; offset: number } }>(
      `/v1/customers/${customer.id}/payment_methods?limit=5&offset=0`,
    )
    expect(ok.status).toBe(200)
    expect(ok.body.pagination).toEqual({ total: 0, limit: 5, offset: 0 })
  })

  test('API keys take a date range and a sort', async () => {
    const all = await ctx.get<{ items: { id: string }[] }>('/v1/api_keys?sort=created_at')
    expect(all.status).toBe(200)
    const none = await ctx.get<{ items: unknown[]; pagination: { total: number } }>(
      '/v1/api_keys?to_date=2000-01-01T00:00:00Z',
    )
    expect(none.body.pagination.total).toBe(0)
    expect(all.body.items.length).toBeGreaterThan(0)
  })
})

// As Stripe answers an unknown parameter: a body field a route does not declare is a 400
// naming it (src/http/validation.ts `closedObjects`), never dropped without a word.
describe('fields a route does not take are refused by name', () => {
  test('a refund with a misspelt "ammount" is 400, not a refund of the whole payment', async () => {
    const { payment } = await offlinePayment(ctx, '100.00')
    const res = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/refunds`, {
      ammount: '1.00',
    })
    expect(res.status, res.text).toBe(400)
    expect(res.body.error).toMatchObject({
      code: 'validation_error',
      details: { errors: [{ field: 'body.ammount' }] },
    })
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('0.00')
    const { rows } = await ctx.pool.query<{ n: number }>(
      'select count(*)::int as n from refunds where payment_id = $1',
      [payment.id],
    )
    expect(rows[0]?.n).toBe(0)
  })

  test('a nested object refuses keys it does not declare; objects of any keys (metadata) keep them', async () => {
    const bad = await ctx.post<ErrorBody>('/v1/customers', {
      name: 'Nested',
      email: 'nested@example.com',
      billing_address: { line1: '1 Main St', postcode: 'X1' },
    })
    expect(bad.status, bad.text).toBe(400)
    expect(bad.body.error.details).toMatchObject({
      errors: [{ field: 'body.billing_address.postcode' }],
    })
    const good = await ctx.post<{ metadata: Record<string, string> }>('/v1/customers', {
      name: 'Any keys',
      email: 'any-keys@example.com',
      metadata: { anything: 'goes', 'another-key': 'too' },
    })
    expect(good.status, good.text).toBe(201)
    expect(good.body.metadata).toEqual({ anything: 'goes', 'another-key': 'too' })
  })
})

// JSON on the wire is UTF-8 (RFC 8259 §8.1): bytes that are not are refused, never stored as
// replacement characters, and a body that says it is in another charset is 415.
describe('bodies that are not UTF-8', () => {
  const send = (payload: Buffer, contentType: string) =>
    ctx.app.inject({
      method: 'POST',
      url: '/v1/customers',
      headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': contentType },
      payload,
    })
  const stored = async (email: string) => {
    const { rows } = await ctx.pool.query<{ n: number }>(
      'select count(*)::int as n from customers where email = $1',
      [email],
    )
    return rows[0]?.n
  }

  test('bytes that are not UTF-8 are 400, and nothing is stored', async () => {
    const latin1 = Buffer.concat([
      Buffer.from('{"name":"Zo'),
      Buffer.from([0xeb]), // "ë" in ISO-8859-1
      Buffer.from('","email":"zoe-utf8@example.com"}'),
    ])
    const res = await send(latin1, 'application/json')
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json().error.code).toBe('validation_error')
    expect(await stored('zoe-utf8@example.com')).toBe(0)
  })

  test('a charset other than UTF-8 is 415; UTF-8, however spelt, is read', async () => {
    const latin1 = Buffer.from('{"name":"Zoë","email":"zoe-latin1@example.com"}', 'latin1')
    const refused = await send(latin1, 'application/json; charset=iso-8859-1')
    expect(refused.statusCode, refused.body).toBe(415)
    expect(refused.json().error.code).toBe('unsupported_media_type')
    expect(await stored('zoe-latin1@example.com')).toBe(0)
    for (const [i, contentType] of [
      'application/json; charset=utf-8',
      'application/json;charset="UTF-8"',
      'application/json; charset=utf8',
    ].entries()) {
      const email = `zoe-${i}@example.com`
      const res = await send(Buffer.from(`{"name":"Zoë","email":"${email}"}`), contentType)
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json().name).toBe('Zoë')
    }
  })
})

// A date-time the API takes is one it can give back: RFC 3339 writes years 0001 to 9999 (in
// UTC), and PostgreSQL keeps year 0 as 1 BC, which the list then wrote as year 1.
describe('date-times outside years 0001 to 9999 in UTC', () => {
  test.each([
    ['year 0000', '0000-01-01T00:00:00Z'],
    ['year 0001 moved into year 0000 by its offset', '0001-01-01T00:30:00+01:00'],
    ['year 10000 in UTC', '9999-12-31T23:59:59-23:59'],
  ])('%s is 400 in a payment_date, a discount and an API key', async (_name, when) => {
    const { payment } = await offlinePayment(ctx, '10.00')
    const answers = [
      await ctx.patch<ErrorBody>(`/v1/payments/${payment.id}`, { payment_date: when }),
      await ctx.post<ErrorBody>('/v1/discounts', {
        code: `FAR${Date.now()}`,
        percent_off: 5,
        expires_at: when,
      }),
      await ctx.post<ErrorBody>('/v1/api_keys', { expires_at: when }),
    ]
    for (const res of answers) {
      expect(res.status, res.text).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
    expect((await getPayment(ctx, payment.id)).payment_date).toBe(payment.payment_date)
  })

  test('the first and last instants are taken', async () => {
    const { payment } = await offlinePayment(ctx, '10.00')
    for (const when of ['0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']) {
      const res = await ctx.patch<PaymentBody>(`/v1/payments/${payment.id}`, { payment_date: when })
      expect(res.status, res.text).toBe(200)
      expect(res.body.payment_date).toBe(when)
    }
  })
})
