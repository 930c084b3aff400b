import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { jsonNestingExceeds, MAX_JSON_DEPTH } from '../../src/http/json-body.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { invoiceToPay } from '../payments-helpers.ts'

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
