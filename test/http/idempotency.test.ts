import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { inTransaction } from '../../src/db/transaction.ts'
import {
  canonicalJson,
  hashRequest,
  IDEMPOTENCY_LOCK_TIMEOUT_MS,
  IDEMPOTENCY_TTL_MS,
} from '../../src/http/idempotency.ts'
import { opener } from '../async-helpers.ts'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { invoiceToPay, type PaymentBody } from '../payments-helpers.ts'

/** A probe that counts how often its handler really runs, and can be held open or made to fail. */
const calls = { count: 0 }
let gate: Promise<void> | undefined
let failNext = false
let rollbackNext = false
let holdBeforeCommit: Promise<void> | undefined
let waits: Promise<void>[] = []
let failFirst = false

/** What the probes' transactions wrote (a table of this test file's database). */
const effects = async () =>
  Number((await ctx.pool.query('select count(*) from idempotency_probe_effects')).rows[0].count)

const probes: FastifyPluginAsync = async (app) => {
  // Commits a write. The first call waits for `holdBeforeCommit` first, if set; after the
  // commit, a call waits for `gate`, then fails if `failNext` (a 5xx after the work
  // committed). With `rollbackNext`, its transaction fails instead (nothing commits).
  app.post('/_probe/transfer', async (request, reply) => {
    calls.count += 1
    const n = calls.count
    const hold = holdBeforeCommit
    holdBeforeCommit = undefined
    await inTransaction(ctx.deps.db, async (trx) => {
      await sql`insert into idempotency_probe_effects (note) values (${JSON.stringify(request.body)})`.execute(
        trx,
      )
      if (hold) await hold
      if (rollbackNext) {
        rollbackNext = false
        throw new Error('the transaction failed')
      }
    })
    if (gate) await gate
    if (failNext) {
      failNext = false
      throw new Error('the gateway call after the commit exploded')
    }
    return reply.code(201).send({ run: n })
  })
  // Takes no body; commits a write, then can be held open (`gate`).
  app.post('/_probe/settle', async (_request, reply) => {
    calls.count += 1
    const n = calls.count
    await inTransaction(ctx.deps.db, (trx) =>
      sql`insert into idempotency_probe_effects (note) values ('settle')`.execute(trx),
    )
    if (gate) await gate
    return reply.code(201).send({ run: n })
  })
  // Each call first waits for the next of `waits`, if any; the first fails (5xx, before
  // any transaction) if `failFirst`; then commits a write.
  app.post('/_probe/queue', async (_request, reply) => {
    calls.count += 1
    const n = calls.count
    const wait = waits.shift()
    if (wait) await wait
    if (n === 1 && failFirst) throw new Error('the gateway call before any commit exploded')
    await inTransaction(ctx.deps.db, (trx) =>
      sql`insert into idempotency_probe_effects (note) values ('queue')`.execute(trx),
    )
    return reply.code(201).send({ run: n })
  })
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
  await ctx.pool.query(
    'create table idempotency_probe_effects (id bigserial primary key, note text)',
  )
})
afterAll(() => ctx.close())
beforeEach(async () => {
  await ctx.pool.query('truncate idempotency_probe_effects')
  calls.count = 0
  gate = undefined
  failNext = false
  rollbackNext = false
  holdBeforeCommit = undefined
  waits = []
  failFirst = false
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

  test("a customer's key is its own: another customer, or the merchant, with the same key gets no replay of it and is not held by it", async () => {
    const tokenOf = async () => {
      const { customer, invoice } = await invoiceToPay(ctx)
      const res = await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`)
      expect(res.status).toBe(201)
      return { token: res.body.token, invoice }
    }
    const a = await tokenOf()
    const b = await tokenOf()
    const key = newKey()
    const body = { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' }
    const first = await ctx.post<PaymentBody>(`/v1/invoices/${a.invoice.id}/pay`, body, {
      key: a.token,
      idempotencyKey: key,
    })
    expect(first.status, first.text).toBe(201)
    // B sends A's very request with A's key: B's keys are B's own, so the request runs as
    // B's, and A's invoice does not exist for B. Nothing of A's payment is shown.
    const stolen = await ctx.post<ErrorBody>(`/v1/invoices/${a.invoice.id}/pay`, body, {
      key: b.token,
      idempotencyKey: key,
    })
    expect(stolen.status).toBe(404)
    expect(stolen.text).not.toContain(first.body.id)
    // Nor does a customer's key hold the merchant's: the merchant's request under it runs.
    const merchant = await ctx.post<PaymentBody>(
      `/v1/invoices/${(await invoiceToPay(ctx)).invoice.id}/pay`,
      { payment_method_type: 'OFFLINE' },
      { idempotencyKey: key },
    )
    expect(merchant.status, merchant.text).toBe(201)
    expect(merchant.body.payment_status).toBe('SUCCEEDED')
    // A itself still gets its replay.
    const replay = await ctx.post<PaymentBody>(`/v1/invoices/${a.invoice.id}/pay`, body, {
      key: a.token,
      idempotencyKey: key,
    })
    expect(replay.status).toBe(201)
    expect(replay.body.id).toBe(first.body.id)
  })

  /**
   * A customer (with a token) and a completed record of its `POST /v1/invoices/:id/pay` stored
   * under the bare key, as before keys had namespaces: locked at `lockedAt`, expiring at `expiresAt`.
   */
  async function legacyCustomerRecord(lockedAt: Date, expiresAt: Date) {
    const { customer, invoice } = await invoiceToPay(ctx)
    const token = (await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`)).body
      .token
    const key = newKey()
    const url = `/v1/invoices/${invoice.id}/pay`
    const body = { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' }
    await ctx.db
      .insertInto('idempotency_keys')
      .values({
        environment_id: ctx.main.test.id,
        key,
        method: 'POST',
        path: url,
        request_hash: hashRequest({ method: 'POST', url, body }, `customer ${customer.id}`),
        state: 'completed',
        response_status: 201,
        response_body: ctx.deps.secretBox.seal('{"stored":"before the upgrade"}'),
        response_content_type: 'application/json; charset=utf-8',
        locked_at: lockedAt,
        expires_at: expiresAt,
      })
      .execute()
    return { customer, token, key, url, body }
  }

  test("a customer's record stored under the bare key before keys had namespaces still replays to that customer", async () => {
    const now = ctx.clock.now()
    const { token, key, url, body } = await legacyCustomerRecord(
      now,
      new Date(now.getTime() + 3600_000),
    )
    const replay = await ctx.post<{ stored: string }>(url, body, {
      key: token,
      idempotencyKey: key,
    })
    expect(replay.status, replay.text).toBe(201)
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(replay.body).toEqual({ stored: 'before the upgrade' })
  })

  test("an expired legacy record of a customer's key leaves the bare key to the merchant: the customer's new use goes to its own namespace", async () => {
    const now = ctx.clock.now()
    const { customer, token, key, url, body } = await legacyCustomerRecord(
      new Date(now.getTime() - IDEMPOTENCY_TTL_MS - 3600_000),
      new Date(now.getTime() - 3600_000),
    )
    const fresh = await ctx.post<PaymentBody>(url, body, { key: token, idempotencyKey: key })
    expect(fresh.status, fresh.text).toBe(201)
    expect(fresh.headers['idempotent-replayed']).toBeUndefined()
    expect(fresh.body.payment_status).toBeDefined()
    const records = await ctx.db
      .selectFrom('idempotency_keys')
      .select('key')
      .where('environment_id', '=', ctx.main.test.id)
      .where('key', 'in', [key, `customer\n${customer.id}\n${key}`])
      .orderBy('key')
      .execute()
    // The customer's request is held in its namespace; the bare key keeps the expired record.
    expect(records.map((r) => r.key).sort()).toEqual(
      [key, `customer\n${customer.id}\n${key}`].sort(),
    )
    // The merchant's request under the same key is not held by the customer's: it runs.
    const other = await invoiceToPay(ctx)
    const merchant = await ctx.post<PaymentBody>(
      `/v1/invoices/${other.invoice.id}/pay`,
      { payment_method_type: 'OFFLINE' },
      { idempotencyKey: key },
    )
    expect(merchant.status, merchant.text).toBe(201)
    expect(merchant.headers['idempotent-replayed']).toBeUndefined()
    expect(merchant.body.payment_status).toBe('SUCCEEDED')
  })

  test('a concurrent request with the key in flight is 409, then the result replays', async () => {
    const key = newKey()
    const { promise: held, open } = opener()
    gate = held
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
    await withFailingCompletion(key, async () => {
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
    })
  })

  test('a 5xx after the work committed is stored and replayed: the retry does not run it again', async () => {
    const key = newKey()
    failNext = true
    const failed = await ctx.post('/v1/_probe/transfer', { amount: 5 }, { idempotencyKey: key })
    expect(failed.status).toBe(500)
    const retried = await ctx.post('/v1/_probe/transfer', { amount: 5 }, { idempotencyKey: key })
    expect(retried.status).toBe(500)
    expect(retried.headers['idempotent-replayed']).toBe('true')
    expect(retried.text).toBe(failed.text)
    expect(calls.count).toBe(1)
    expect(await effects()).toBe(1)
  })

  test('work that committed is never run again, though its response was lost: a partial payment applies once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const key = newKey()
    const body = {
      destination_type: 'INVOICE',
      destination_id: invoice.id,
      currency: 'usd',
      payment_method_type: 'OFFLINE',
      amount: '10.00',
    }
    // The response cannot be stored, as when the process stops between the work's commit and
    // the completion: the record stays in flight.
    await withFailingCompletion(key, async () => {
      const first = await ctx.post<PaymentBody>('/v1/payments', body, { idempotencyKey: key })
      expect(first.status).toBe(201)
      const appliedAt = ctx.clock.now()

      // Past the lock timeout, the key would be taken over if nothing had committed.
      ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS + 1)
      const retried = await ctx.post<ErrorBody>('/v1/payments', body, { idempotencyKey: key })
      expect(retried.status).toBe(409)
      expect(retried.body.error.code).toBe('idempotency_conflict')
      expect(retried.body.error.message).toMatch(/was applied/)
      expect(retried.body.error.details).toMatchObject({ idempotency_key: key })
      expect(retried.body.error.details?.applied_at).toBe(appliedAt.toISOString())
      // Marked in the payment's own commit, with the request's clock; still in flight.
      const { state, applied_at } = await recordOf(key)
      expect({ state, applied_at }).toEqual({ state: 'in_flight', applied_at: appliedAt })
    })
    const payments = await ctx.db
      .selectFrom('payments')
      .select(['amount'])
      .where('destination_id', '=', invoice.id)
      .execute()
    expect(payments).toHaveLength(1)
    const paid = await ctx.get<{ amount_paid: string }>(`/v1/invoices/${invoice.id}`)
    expect(paid.body.amount_paid).toBe('10.00')
  })

  // Each creation's commit marks its key: retried after a lost response and the lock
  // timeout, it is refused, not run again.
  test.each([
    ['an API key', async () => ({ path: '/v1/api_keys', body: { name: 'marked' } })],
    [
      'a discount',
      async () => ({ path: '/v1/discounts', body: { code: `MARK${keySeq}`, percent_off: 10 } }),
    ],
    [
      'a customer',
      async () => ({
        path: '/v1/customers',
        body: { name: 'Marked', email: 'marked@example.com' },
      }),
    ],
    [
      'a gateway connection',
      async () => ({
        path: '/v1/gateway_connections',
        body: { gateway: 'external', credentials: { webhook_secret: 'whsec_marked' } },
      }),
    ],
    [
      'a customer token',
      async () => ({
        path: `/v1/customers/${(await createCustomer(ctx)).id}/tokens`,
        body: {},
      }),
    ],
  ])('creating %s marks its key applied in the same commit', async (_name, request) => {
    const { path, body } = await request()
    const key = newKey()
    await withFailingCompletion(key, async () => {
      const first = await ctx.post(path, body, { idempotencyKey: key })
      expect(first.status).toBe(201)
      const { state, applied_at } = await recordOf(key)
      expect({ state, applied_at }).toEqual({ state: 'in_flight', applied_at: ctx.clock.now() })
      ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS + 1)
      const retried = await ctx.post<ErrorBody>(path, body, { idempotencyKey: key })
      expect(retried.status).toBe(409)
      expect(retried.body.error.message).toMatch(/was applied/)
    })
  })

  test('a 5xx whose transaction rolled back is not stored: the retry runs again', async () => {
    const key = newKey()
    rollbackNext = true
    const failed = await ctx.post('/v1/_probe/transfer', { amount: 6 }, { idempotencyKey: key })
    expect(failed.status).toBe(500)
    expect(await effects()).toBe(0)
    const retried = await ctx.post('/v1/_probe/transfer', { amount: 6 }, { idempotencyKey: key })
    expect(retried.status).toBe(201)
    expect(retried.headers['idempotent-replayed']).toBeUndefined()
    expect(calls.count).toBe(2)
    expect(await effects()).toBe(1)
  })

  test('a retry while the first request runs on after its commit is the ordinary 409, then the result replays', async () => {
    const key = newKey()
    const { promise: held, open } = opener()
    gate = held
    const first = ctx.post('/v1/_probe/transfer', { amount: 8 }, { idempotencyKey: key })
    await waitFor(async () => (await effects()) === 1)
    // Until the lock timeout, the applied key's holder may still answer.
    ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS - 1)
    const during = await ctx.post<ErrorBody>(
      '/v1/_probe/transfer',
      { amount: 8 },
      { idempotencyKey: key },
    )
    expect(during.status).toBe(409)
    expect(during.body.error.message).toMatch(/still being processed/)
    open()
    expect((await first).status).toBe(201)
    const after = await ctx.post('/v1/_probe/transfer', { amount: 8 }, { idempotencyKey: key })
    expect(after.status).toBe(201)
    expect(after.headers['idempotent-replayed']).toBe('true')
    expect(calls.count).toBe(1)
    expect(await effects()).toBe(1)
  })

  test('a request that runs past the lock timeout and is taken over cannot commit its work: it applies once, as the retry', async () => {
    const key = newKey()
    const { promise: held, open: release } = opener()
    holdBeforeCommit = held
    // The first request stalls before its commit (a slow gateway, a lock wait) …
    const slow = ctx.post<ErrorBody>('/v1/_probe/transfer', { amount: 9 }, { idempotencyKey: key })
    await waitFor(() => calls.count === 1)
    // … past the lock timeout: its client's retry takes the key over and runs.
    ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS + 1)
    const retry = await ctx.post<{ run: number }>(
      '/v1/_probe/transfer',
      { amount: 9 },
      { idempotencyKey: key },
    )
    expect(retry.status).toBe(201)
    expect(retry.body.run).toBe(2)
    // The first one's commit then finds its claim gone: rolled back.
    release()
    const lost = await slow
    expect(lost.status).toBe(409)
    expect(lost.body.error.code).toBe('idempotency_conflict')
    expect(lost.body.error.message).toMatch(/took this Idempotency-Key over/)
    expect(await effects()).toBe(1)
    // Nor did it overwrite the retry's stored response: that one replays.
    const again = await ctx.post<{ run: number }>(
      '/v1/_probe/transfer',
      { amount: 9 },
      { idempotencyKey: key },
    )
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.body.run).toBe(2)
  })

  test('a transient 409 (deadlock / serialization failure, "retry it") whose work rolled back is not stored: the retry with the same key runs', async () => {
    // A deadlock the first time a customer named 'Deadlock Once' is inserted, as PostgreSQL
    // reports one under concurrency (40P01); the transaction rolls back, nothing committed.
    await ctx.pool.query(`
      create table deadlock_once (n int);
      create function deadlock_once_trigger() returns trigger language plpgsql as $$
      begin
        if new.name = 'Deadlock Once' and not exists (select 1 from deadlock_once) then
          raise exception 'deadlock detected (injected)' using errcode = '40P01';
        end if;
        return new;
      end $$;
      create trigger deadlock_once_trigger before insert on customers
        for each row execute function deadlock_once_trigger();
    `)
    try {
      const key = newKey()
      const body = { name: 'Deadlock Once', email: 'deadlock@example.com' }
      const first = await ctx.post<ErrorBody>('/v1/customers', body, { idempotencyKey: key })
      expect(first.status).toBe(409)
      expect(first.body.error.message).toMatch(/retry it/)
      // The collision is over: the next attempt would go through.
      await ctx.pool.query('insert into deadlock_once values (1)')
      const created = await ctx.db
        .selectFrom('customers')
        .select('id')
        .where('name', '=', 'Deadlock Once')
        .execute()
      expect(created).toHaveLength(0)

      // The client does as told and retries the same request with the same key.
      const retry = await ctx.post<{ id: string }>('/v1/customers', body, { idempotencyKey: key })
      expect(retry.headers['idempotent-replayed']).toBeUndefined()
      expect(retry.status, retry.text).toBe(201)
    } finally {
      await ctx.pool.query(
        'drop trigger deadlock_once_trigger on customers; drop function deadlock_once_trigger(); drop table deadlock_once',
      )
    }
  })

  test("a request overtaken by a retry that then fails with a 5xx does not release the retry's key", async () => {
    const key = newKey()
    const first = opener()
    const second = opener()
    waits = [first.promise, second.promise]
    failFirst = true
    const slow = ctx.post('/v1/_probe/queue', {}, { idempotencyKey: key })
    await waitFor(() => calls.count === 1)
    ctx.clock.advance(IDEMPOTENCY_LOCK_TIMEOUT_MS + 1)
    // The retry takes the key over, and waits in its turn.
    const retry = ctx.post<{ run: number }>('/v1/_probe/queue', {}, { idempotencyKey: key })
    await waitFor(() => calls.count === 2)
    first.open()
    expect((await slow).status).toBe(500)
    // The retry still holds the key: a third request is refused, not run.
    const third = await ctx.post<ErrorBody>('/v1/_probe/queue', {}, { idempotencyKey: key })
    expect(third.status).toBe(409)
    expect(third.body.error.message).toMatch(/still being processed/)
    second.open()
    expect((await retry).status).toBe(201)
    expect(calls.count).toBe(2)
    expect(await effects()).toBe(1)
  })

  test('a client that hangs up does not free its key while its request runs: the retry replays, not runs again', async () => {
    const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
    const key = newKey()
    const headers = { authorization: `Bearer ${ctx.main.key}`, 'idempotency-key': key }
    const { promise: held, open } = opener()
    gate = held
    // A body-less POST (the request is complete at once), abandoned while its handler runs.
    const abandon = new AbortController()
    const abandoned = fetch(`${address}/v1/_probe/settle`, {
      method: 'POST',
      headers,
      signal: abandon.signal,
    }).catch((error: Error) => error)
    await waitFor(() => calls.count === 1)
    abandon.abort()
    expect(await abandoned).toBeInstanceOf(Error)
    // The server sees the hang-up before the handler finishes.
    await new Promise((resolve) => setTimeout(resolve, 100))
    // (On a key freed by the hang-up, this would run the handler again, and wait on the gate.)
    const during = await fetch(`${address}/v1/_probe/settle`, {
      method: 'POST',
      headers,
      signal: AbortSignal.timeout(2000),
    })
    expect(during.status).toBe(409)
    open()
    await waitFor(async () => (await recordOf(key)).state === 'completed')
    const retried = await fetch(`${address}/v1/_probe/settle`, { method: 'POST', headers })
    expect(retried.status).toBe(201)
    expect(retried.headers.get('idempotent-replayed')).toBe('true')
    expect(await retried.json()).toEqual({ run: 1 })
    expect(calls.count).toBe(1)
    // Over real HTTP, too, the request's transaction carried the mark.
    expect(await effects()).toBe(1)
    expect((await recordOf(key)).applied_at).not.toBeNull()
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
    await insertInFlight(
      ctx.main.test.id,
      key,
      hashRequest({ method: 'POST', url: '/v1/_probe/charge', body: { amount: 1 } }),
    )
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

  test("a request's commit marks its own environment's record of the key, never another's", async () => {
    const key = newKey()
    // The live environment holds the same key, in flight with the same claim time.
    const now = ctx.clock.now()
    await insertInFlight(ctx.main.live.id, key, 'another request')
    // A commit, then a 5xx: the test environment's record is marked and kept …
    failNext = true
    const failed = await ctx.post('/v1/_probe/transfer', { amount: 4 }, { idempotencyKey: key })
    expect(failed.status).toBe(500)
    expect((await recordOf(key)).applied_at).toEqual(now)
    // … and the live one is neither marked, completed nor released.
    const other = await recordOf(key, ctx.main.live.id)
    expect(other.applied_at).toBeNull()
    expect(other.state).toBe('in_flight')
    expect(other.response_body).toBeNull()
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
    expect((await recordOf(key)).response_body).not.toContain(first.body.key)
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

/** An environment's record of `key` (the main tenant's test environment's by default). */
function recordOf(key: string, environmentId = ctx.main.test.id) {
  return ctx.db
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('key', '=', key)
    .executeTakeFirstOrThrow()
}

/** A record of `key` in flight since now, as a request that has not answered leaves it. */
async function insertInFlight(environmentId: string, key: string, requestHash: string) {
  const now = ctx.clock.now()
  await ctx.db
    .insertInto('idempotency_keys')
    .values({
      environment_id: environmentId,
      key,
      method: 'POST',
      path: '/v1/_probe/charge',
      request_hash: requestHash,
      state: 'in_flight',
      locked_at: now,
      expires_at: new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
    })
    .execute()
}

/** Runs `run` while storing the response of `key` fails (a trigger refuses the completion). */
async function withFailingCompletion(key: string, run: () => Promise<void>) {
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
    await run()
  } finally {
    await ctx.pool.query(
      'drop trigger fail_completion on idempotency_keys; drop function fail_completion()',
    )
  }
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
