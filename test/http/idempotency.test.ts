import type { FastifyPluginAsync } from 'fastify'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  canonicalJson,
  hashRequest,
  IDEMPOTENCY_LOCK_TIMEOUT_MS,
  IDEMPOTENCY_TTL_MS,
} from '../../src/http/idempotency.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'

/** A probe that counts how often its handler really runs, and can be held open or made to fail. */
const calls = { count: 0 }
let gate: Promise<void> | undefined
let failNext = false

const probes: FastifyPluginAsync = async (app) => {
  app.post('/_probe/charge', async (request, reply) => {
    calls.count += 1
    const n = calls.count
    if (gate) await gate
    if (failNext) {
      failNext = false
      throw new Error('upstream exploded')
    }
    return reply.code(201).send({ run: n, body: request.body })
  })
}

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext({ extraRoutes: probes })
})
afterAll(() => ctx.close())
beforeEach(() => {
  calls.count = 0
  gate = undefined
  failNext = false
})

let keySeq = 0
const newKey = () => `idem-${Date.now()}-${keySeq++}`

describe('Idempotency-Key', () => {
  test('same key and body replays the first response without running again', async () => {
    const key = newKey()
    const first = await ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 100 },
      { idempotencyKey: key },
    )
    const second = await ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 100 },
      { idempotencyKey: key },
    )
    expect(first.status).toBe(201)
    expect(second.status).toBe(201)
    expect(second.text).toBe(first.text)
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    expect(calls.count).toBe(1)
  })

  test('key order in the body does not matter', async () => {
    const key = newKey()
    await ctx.post('/v1/_probe/charge', { a: 1, b: { c: 2, d: 3 } }, { idempotencyKey: key })
    const replay = await ctx.post(
      '/v1/_probe/charge',
      { b: { d: 3, c: 2 }, a: 1 },
      { idempotencyKey: key },
    )
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(calls.count).toBe(1)
  })

  test('same key with another body is 422 idempotency_mismatch', async () => {
    const key = newKey()
    await ctx.post('/v1/_probe/charge', { amount: 100 }, { idempotencyKey: key })
    const res = await ctx.post<ErrorBody>(
      '/v1/_probe/charge',
      { amount: 200 },
      { idempotencyKey: key },
    )
    expect(res.status).toBe(422)
    expect(res.body.error.code).toBe('idempotency_mismatch')
    expect(calls.count).toBe(1)
  })

  test('same key on another route is a mismatch', async () => {
    const key = newKey()
    await ctx.post('/v1/_probe/charge', {}, { idempotencyKey: key })
    const res = await ctx.post<ErrorBody>('/v1/api_keys', {}, { idempotencyKey: key })
    expect(res.status).toBe(422)
  })

  test('a concurrent request with the key in flight is 409, then the result replays', async () => {
    const key = newKey()
    let open: () => void = () => undefined
    gate = new Promise((resolve) => {
      open = resolve
    })
    const first = ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 1 },
      { idempotencyKey: key },
    )
    await waitFor(() => calls.count === 1)
    const during = await ctx.post<ErrorBody>(
      '/v1/_probe/charge',
      { amount: 1 },
      { idempotencyKey: key },
    )
    expect(during.status).toBe(409)
    expect(during.body.error.code).toBe('idempotency_conflict')
    open()
    expect((await first).status).toBe(201)
    const after = await ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 1 },
      { idempotencyKey: key },
    )
    expect(after.status).toBe(201)
    expect(after.body.run).toBe(1)
    expect(calls.count).toBe(1)
  })

  test('20 simultaneous requests with one key run the handler once', async () => {
    const key = newKey()
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        ctx.post('/v1/_probe/charge', { amount: 7 }, { idempotencyKey: key }),
      ),
    )
    expect(calls.count).toBe(1)
    for (const res of responses) expect([201, 409]).toContain(res.status)
    expect(
      responses.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined),
    ).toHaveLength(1)
  })

  test('the record holds across processes: a second app on the same database replays it', async () => {
    const second = await ctx.buildSecondApp({ extraRoutes: probes })
    const key = newKey()
    await ctx.post('/v1/_probe/charge', { amount: 3 }, { idempotencyKey: key })
    const res = await second.inject({
      method: 'POST',
      url: '/v1/_probe/charge',
      headers: { authorization: `Bearer ${ctx.main.key}`, 'idempotency-key': key },
      payload: { amount: 3 },
    })
    expect(res.statusCode).toBe(201)
    expect(res.headers['idempotent-replayed']).toBe('true')
    expect(calls.count).toBe(1)
  })

  test('a 5xx is not stored: the retry runs again', async () => {
    const key = newKey()
    failNext = true
    const failed = await ctx.post('/v1/_probe/charge', { amount: 5 }, { idempotencyKey: key })
    expect(failed.status).toBe(500)
    const retried = await ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 5 },
      { idempotencyKey: key },
    )
    expect(retried.status).toBe(201)
    expect(retried.headers['idempotent-replayed']).toBeUndefined()
    expect(calls.count).toBe(2)
  })

  test('a response that cannot be stored still goes out, and the key stays in flight: a retry is a 409, not a second run', async () => {
    const key = newKey()
    // The completion's update fails for this key, as a database error at that moment would.
    await ctx.pool.query(`
      create function fail_completion() returns trigger language plpgsql as $$
      begin
        if new.key = '${key}' and new.state = 'completed' then
          raise exception 'completion refused for the test';
        end if;
        return new;
      end $$;
      create trigger fail_completion before update on idempotency_keys
        for each row execute function fail_completion();
    `)
    try {
      const first = await ctx.post<{ run: number }>(
        '/v1/_probe/charge',
        { amount: 7 },
        { idempotencyKey: key },
      )
      expect(first.status).toBe(201)
      expect(first.body.run).toBe(1)
      const retried = await ctx.post<ErrorBody>(
        '/v1/_probe/charge',
        { amount: 7 },
        { idempotencyKey: key },
      )
      expect(retried.status).toBe(409)
      expect(retried.body.error.code).toBe('idempotency_conflict')
      expect(calls.count).toBe(1)
    } finally {
      await ctx.pool.query(
        'drop trigger fail_completion on idempotency_keys; drop function fail_completion()',
      )
    }
  })

  test('a 4xx is stored and replayed like Stripe does', async () => {
    const key = newKey()
    const first = await ctx.post<ErrorBody>(
      '/v1/api_keys',
      { expires_at: '2000-01-01T00:00:00Z' },
      { idempotencyKey: key },
    )
    expect(first.status).toBe(400)
    const again = await ctx.post<ErrorBody>(
      '/v1/api_keys',
      { expires_at: '2000-01-01T00:00:00Z' },
      { idempotencyKey: key },
    )
    expect(again.status).toBe(400)
    expect(again.headers['idempotent-replayed']).toBe('true')
  })

  test('keys expire after 24 hours and can be used afresh', async () => {
    const key = newKey()
    await ctx.post('/v1/_probe/charge', { amount: 9 }, { idempotencyKey: key })
    ctx.clock.advance(IDEMPOTENCY_TTL_MS + 1000)
    const res = await ctx.post<{ run: number }>(
      '/v1/_probe/charge',
      { amount: 10 },
      { idempotencyKey: key },
    )
    expect(res.status).toBe(201)
    expect(res.headers['idempotent-replayed']).toBeUndefined()
    expect(calls.count).toBe(2)
  })

  test('a key left in flight by a crashed process is taken over after the lock timeout', async () => {
    const key = newKey()
    const now = ctx.clock.now()
    await ctx.db
      .insertInto('idempotency_keys')
      .values({
        environment_id: ctx.main.test.id,
        key,
        method: 'POST',
        path: '/v1/_probe/charge',
        request_hash: hashRequest({
          method: 'POST',
          url: '/v1/_probe/charge',
          body: { amount: 1 },
        }),
        state: 'in_flight',
        locked_at: now,
        expires_at: new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
      })
      .execute()
    expect(
      (await ctx.post('/v1/_probe/charge', { amount: 1 }, { idempotencyKey: key })).status,
    ).toBe(409)
    ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS + 1)
    const res = await ctx.post('/v1/_probe/charge', { amount: 1 }, { idempotencyKey: key })
    expect(res.status).toBe(201)
    expect(calls.count).toBe(1)
  })

  test('keys are scoped per environment', async () => {
    const key = newKey()
    await ctx.post('/v1/_probe/charge', { amount: 1 }, { idempotencyKey: key })
    const live = await ctx.post(
      '/v1/_probe/charge',
      { amount: 1 },
      { idempotencyKey: key, key: ctx.main.liveKey },
    )
    expect(live.headers['idempotent-replayed']).toBeUndefined()
    expect(calls.count).toBe(2)
  })

  test('a too long key is 400', async () => {
    const res = await ctx.post<ErrorBody>(
      '/v1/_probe/charge',
      {},
      { idempotencyKey: 'k'.repeat(256) },
    )
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('a replayed key creation returns the same key and creates one', async () => {
    const key = newKey()
    const first = await ctx.post<{ id: string; key: string }>(
      '/v1/api_keys',
      { name: 'ci' },
      { idempotencyKey: key },
    )
    const second = await ctx.post<{ id: string; key: string }>(
      '/v1/api_keys',
      { name: 'ci' },
      { idempotencyKey: key },
    )
    expect(first.status).toBe(201)
    expect(second.body).toEqual(first.body)
    const rows = await ctx.db.selectFrom('api_keys').select('id').where('name', '=', 'ci').execute()
    expect(rows).toHaveLength(1)
    // The stored response is sealed: the secret is not in the table in clear text.
    const stored = await ctx.db
      .selectFrom('idempotency_keys')
      .select('response_body')
      .where('key', '=', key)
      .executeTakeFirstOrThrow()
    expect(stored.response_body).not.toContain(first.body.key)
  })

  test('requests without the header are never deduplicated', async () => {
    await ctx.post('/v1/_probe/charge', { amount: 1 })
    await ctx.post('/v1/_probe/charge', { amount: 1 })
    expect(calls.count).toBe(2)
  })
})

describe('canonicalJson', () => {
  test('sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: [{ y: 1, x: undefined, w: null }] })).toBe(
      '{"a":[{"w":null,"y":1}],"b":1}',
    )
  })
})

async function waitFor(condition: () => boolean, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
