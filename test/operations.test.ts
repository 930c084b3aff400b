import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createTestContext, type TestContext } from './harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('operations routes (no auth)', () => {
  test('GET /health', async () => {
    const res = await ctx.get('/health', { key: null })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 'ok' })
  })

  test('GET /ready checks the database', async () => {
    const res = await ctx.get('/ready', { key: null })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 'ready' })
  })

  test('GET /metrics is Prometheus text with request durations', async () => {
    await ctx.get('/v1/api_keys')
    const res = await ctx.get('/metrics', { key: null })
    expect(res.status).toBe(200)
    expect(String(res.headers['content-type'])).toMatch(/^text\/plain/)
    expect(res.text).toContain('# TYPE payrail_http_request_duration_seconds histogram')
    expect(res.text).toMatch(
      /payrail_http_request_duration_seconds_count\{method="GET",route="\/v1\/api_keys",status="200"\} \d+/,
    )
    expect(res.text).toContain('payrail_process_resident_memory_bytes')
  })

  test('GET /openapi.json documents the routes from their schemas', async () => {
    const res = await ctx.get<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      '/openapi.json',
      {
        key: null,
      },
    )
    expect(res.status).toBe(200)
    expect(res.body.openapi).toBe('3.1.0')
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining(['/v1/api_keys', '/v1/api_keys/{id}', '/health']),
    )
    expect(Object.keys(res.body.paths['/v1/api_keys'] ?? {})).toEqual(
      expect.arrayContaining(['get', 'post']),
    )
    // Checkout.com's return routes answer with a redirect, as documented.
    const back = res.body.paths['/v1/checkout/success']?.get as { responses?: object } | undefined
    expect(Object.keys(back?.responses ?? {})).toEqual(['303'])
    // The /api/v1 alias and internal routes are not documented twice.
    expect(Object.keys(res.body.paths).some((p) => p.startsWith('/api/v1'))).toBe(false)
    expect(Object.keys(res.body.paths)).not.toContain('/metrics')
  })

  test('GET /docs serves the API reference UI', async () => {
    const res = await ctx.app.inject({ method: 'GET', url: '/docs/' })
    expect(res.statusCode).toBe(200)
    expect(res.body).toContain('<html')
  })
})
