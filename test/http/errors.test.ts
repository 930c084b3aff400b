import { randomBytes } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { AppError, ERROR_CODES, httpStatusFor } from '../../src/core/errors.ts'
import { stripeSdk } from '../../src/gateways/stripe/stripe.client.ts'
import { toErrorBody } from '../../src/http/error-handler.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'

/** Routes that fail on purpose, to see what callers get. */
const probes: FastifyPluginAsync = async (app) => {
  app.get('/_probe/crash', async () => {
    throw new Error('secret internals: connection string postgres://user:pw@host')
  })
  app.get('/_probe/app-error', async () => {
    throw new AppError('invalid_state_transition', 'Cannot go from SUCCEEDED to PENDING', {
      from: 'SUCCEEDED',
    })
  })
  // PostgreSQL's own 54000: an index entry over its size limit.
  app.get('/_probe/too-large', async () => {
    await sql`create temp table if not exists probe_wide (v text primary key)`.execute(ctx.db)
    await sql`insert into probe_wide values (${randomBytes(6000).toString('hex')})`.execute(ctx.db)
  })
  app.post(
    '/_probe/typed',
    {
      schema: {
        body: Type.Object({
          amount: Type.Integer({ minimum: 1 }),
          email: Type.String({ format: 'email' }),
        }),
      },
    },
    async () => ({ ok: true }),
  )
}

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext({ extraRoutes: probes })
})
afterAll(() => ctx.close())

function expectErrorShape(body: unknown, code: string) {
  expect(body).toEqual({
    error: { code, message: expect.any(String), details: expect.any(Object) },
  })
}

describe('error shape', () => {
  test('a value too large for PostgreSQL to index (54000) is 400 validation_error, not a 500', async () => {
    const res = await ctx.get<ErrorBody>('/v1/_probe/too-large')
    expect(res.status, res.text).toBe(400)
    expectErrorShape(res.body, 'validation_error')
    expect(res.body.error.message).toBe('A value in the request is too large')
  })

  test('malformed JSON is 400 validation_error', async () => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/v1/api_keys',
      headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': 'application/json' },
      payload: '{"name": ',
    })
    expect(res.statusCode).toBe(400)
    expectErrorShape(res.json(), 'validation_error')
    expect(res.json().error.message).toMatch(/Malformed JSON/)
  })

  test('an empty JSON body is 400', async () => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/v1/api_keys',
      headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': 'application/json' },
      payload: '',
    })
    expect(res.statusCode).toBe(400)
    expectErrorShape(res.json(), 'validation_error')
  })

  test.each(['text/plain', 'application/xml', 'application/x-www-form-urlencoded'])(
    'content type %s is 415 unsupported_media_type',
    async (contentType) => {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/v1/api_keys',
        headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': contentType },
        payload: 'name=x',
      })
      expect(res.statusCode).toBe(415)
      expectErrorShape(res.json(), 'unsupported_media_type')
    },
  )

  test('an oversized body is 413 payload_too_large', async () => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/v1/api_keys',
      headers: { authorization: `Bearer ${ctx.main.key}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }),
    })
    expect(res.statusCode).toBe(413)
    expectErrorShape(res.json(), 'payload_too_large')
  })

  test.each([
    ['GET', '/v1/nothing-here'],
    ['POST', '/v1/nothing-here'],
    ['GET', '/'],
  ])('unknown route %s %s is 404 not_found', async (method, url) => {
    const res = await ctx.request<ErrorBody>(
      method as 'GET',
      url,
      method === 'POST' ? {} : undefined,
    )
    expect(res.status).toBe(404)
    expectErrorShape(res.body, 'not_found')
  })

  test('schema validation names the field', async () => {
    const res = await ctx.post<ErrorBody>('/v1/_probe/typed', { amount: 0, email: 'a@b.co' })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message).toMatch(/^body\.amount /)
    expect(res.body.error.details).toEqual({
      errors: [{ field: 'body.amount', message: expect.any(String) }],
    })
  })

  test('a missing required field is named', async () => {
    const res = await ctx.post<ErrorBody>('/v1/_probe/typed', { amount: 5 })
    expect(res.status).toBe(400)
    expect(res.body.error.message).toMatch(/^body\.email /)
  })

  test('a bad query parameter is 400', async () => {
    const res = await ctx.get<ErrorBody>('/v1/api_keys?limit=abc')
    expect(res.status).toBe(400)
    expect(res.body.error.message).toMatch(/querystring\.limit/)
  })

  test('an unexpected error is 500 internal_error without internals', async () => {
    const res = await ctx.get<ErrorBody>('/v1/_probe/crash')
    expect(res.status).toBe(500)
    expectErrorShape(res.body, 'internal_error')
    expect(res.text).not.toContain('secret internals')
    expect(res.text).not.toContain('at ')
  })

  test('an AppError keeps its code, status and details', async () => {
    const res = await ctx.get<ErrorBody>('/v1/_probe/app-error')
    expect(res.status).toBe(422)
    expect(res.body).toEqual({
      error: {
        code: 'invalid_state_transition',
        message: 'Cannot go from SUCCEEDED to PENDING',
        details: { from: 'SUCCEEDED' },
      },
    })
  })

  test('every response carries a request id, and an incoming one is kept', async () => {
    const res = await ctx.get('/v1/api_keys', { headers: { 'x-request-id': 'trace-123' } })
    expect(res.headers['x-request-id']).toBe('trace-123')
    const other = await ctx.get('/v1/api_keys')
    expect(String(other.headers['x-request-id'])).toMatch(/^req_/)
  })

  test('routes answer under /api/v1 too', async () => {
    const res = await ctx.get<{ items: unknown[] }>('/api/v1/api_keys')
    expect(res.status).toBe(200)
    expect(Array.isArray(res.body.items)).toBe(true)
  })
})

describe('error codes', () => {
  test.each([
    ['validation_error', 400],
    ['unauthorized', 401],
    ['card_declined', 402],
    ['insufficient_funds', 402],
    ['expired_card', 402],
    ['authentication_required', 402],
    ['no_default_payment_method', 402],
    ['forbidden', 403],
    ['not_found', 404],
    ['conflict', 409],
    ['idempotency_conflict', 409],
    ['invalid_state_transition', 422],
    ['idempotency_mismatch', 422],
    ['rate_limited', 429],
    ['internal_error', 500],
    ['gateway_error', 502],
  ] as const)('%s is %i', (code, status) => {
    expect(httpStatusFor(code)).toBe(status)
  })

  test('every code maps to a 4xx or 5xx', () => {
    for (const code of ERROR_CODES) expect(httpStatusFor(code)).toBeGreaterThanOrEqual(400)
  })

  test('a Stripe SDK error is 502 gateway_error, whatever status Stripe answered Payrail with', async () => {
    const { errors } = await stripeSdk()
    const revoked = new errors.StripeAuthenticationError({
      message: 'Invalid API Key provided: sk_test_****oked',
      statusCode: 401,
      type: 'invalid_request_error',
    })
    // Before, its 401 read as a Fastify error: the caller's 400 validation_error.
    expect(toErrorBody(revoked)).toEqual({
      status: 502,
      body: {
        error: {
          code: 'gateway_error',
          message: 'Stripe refused the request: Invalid API Key provided: sk_test_****oked',
          details: { gateway: 'stripe', status_code: 401 },
        },
      },
    })
  })

  test('a request body that broke off while read (the client gone) is 400, not a 500 of ours', () => {
    // As Fastify's body reader passes on Node's `aborted`: the stream's error, marked 400.
    const aborted = Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 })
    expect(toErrorBody(aborted)).toEqual({
      status: 400,
      body: {
        error: {
          code: 'validation_error',
          message: 'The request body ended before it was complete',
          details: {},
        },
      },
    })
    // A provider call's reset connection carries no such mark: Payrail's fault, 500.
    const outbound = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
    expect(toErrorBody(outbound).status).toBe(500)
  })

  test("another library's error carrying a statusCode is no Fastify error: 500 internal_error", () => {
    const error = Object.assign(new Error('upstream said no'), { statusCode: 401, code: 'E_UP' })
    expect(toErrorBody(error)).toEqual({
      status: 500,
      body: { error: { code: 'internal_error', message: expect.any(String), details: {} } },
    })
  })

  test('a database error becomes internal_error', () => {
    const pgError = Object.assign(new Error('duplicate key value violates unique constraint'), {
      code: '23505',
    })
    expect(toErrorBody(pgError)).toEqual({
      status: 500,
      body: { error: { code: 'internal_error', message: expect.any(String), details: {} } },
    })
  })
})
