import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createApiKey, hashSecret, revokeKey } from '../../src/modules/api-keys/service.ts'
import { createCustomer } from '../fixtures.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'

interface ApiKeyBody {
  id: string
  environment_id: string
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other tenant')
})
afterAll(() => ctx.close())

describe('authentication', () => {
  test('no key is 401 in the error shape', async () => {
    const res = await ctx.get<ErrorBody>('/v1/api_keys', { key: null })
    expect(res.status).toBe(401)
    expect(res.body).toEqual({
      error: {
        code: 'unauthorized',
        message: expect.stringContaining('Missing API key'),
        details: {},
      },
    })
  })

  test.each([
    ['an unknown key', 'sk_test_doesnotexist'],
    ['an empty bearer', ''],
    ['a key with a typo', 'typo'],
  ])('%s is 401', async (_name, key) => {
    const res = await ctx.get<ErrorBody>('/v1/api_keys', {
      key: null,
      headers: { authorization: `Bearer ${key}` },
    })
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })

  test.each([
    ['Authorization: Bearer', (key: string) => ({ authorization: `Bearer ${key}` })],
    ['x-api-key', (key: string) => ({ 'x-api-key': key })],
    [
      'Basic with the key as username',
      (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` }),
    ],
  ])('accepts the key via %s', async (_name, headers) => {
    const res = await ctx.get('/v1/api_keys', { key: null, headers: headers(ctx.main.key) })
    expect(res.status).toBe(200)
  })

  test('a revoked key is 401 at once', async () => {
    const { key, record } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
    })
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    const revoked = await ctx.delete<{ revoked_at: string }>(`/v1/api_keys/${record.id}`)
    expect(revoked.status).toBe(200)
    expect(revoked.body.revoked_at).toBe(ctx.clock.now().toISOString())
    const res = await ctx.get<ErrorBody>('/v1/api_keys', { key })
    expect(res.status).toBe(401)
    expect(res.body.error.message).toMatch(/revoked/)
  })

  test('an expired key is 401', async () => {
    const { key } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
      expiresAt: new Date(ctx.clock.now().getTime() + 60_000),
    })
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    ctx.clock.advance(60_000)
    const res = await ctx.get<ErrorBody>('/v1/api_keys', { key })
    expect(res.status).toBe(401)
    expect(res.body.error.message).toMatch(/expired/)
  })

  test('a key cannot revoke itself', async () => {
    const self = await ctx.get<{ items: ApiKeyBody[] }>('/v1/api_keys')
    const { key, record } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
    })
    expect(self.status).toBe(200)
    const res = await ctx.delete<ErrorBody>(`/v1/api_keys/${record.id}`, { key })
    expect(res.status).toBe(409)
    expect(res.body.error.code).toBe('conflict')
  })
})

describe('X-Environment-ID', () => {
  test.each([
    ['the environment id', () => ctx.main.test.id, 200],
    ['the environment type', () => 'test', 200],
    ['another environment of the same tenant', () => ctx.main.live.id, 403],
    ['the other type', () => 'live', 403],
    ['another tenant environment', () => other.test.id, 403],
  ])('%s', async (_name, header, status) => {
    const res = await ctx.get<ErrorBody>('/v1/api_keys', {
      headers: { 'x-environment-id': header() },
    })
    expect(res.status).toBe(status)
    if (status === 403) expect(res.body.error.code).toBe('forbidden')
  })
})

describe('tenant and environment scoping', () => {
  test("another tenant's object is a 404, never a 403", async () => {
    const { record } = await createApiKey(ctx.db, {
      tenantId: other.tenant.id,
      environmentId: other.test.id,
      role: 'admin',
    })
    const res = await ctx.get<ErrorBody>(`/v1/api_keys/${record.id}`)
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
    const revoke = await ctx.delete<ErrorBody>(`/v1/api_keys/${record.id}`)
    expect(revoke.status).toBe(404)
    // And it still works for its owner.
    expect((await ctx.get(`/v1/api_keys/${record.id}`, { key: other.key })).status).toBe(200)
  })

  test("the live environment's objects are invisible to a test key", async () => {
    const { record } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.live.id,
      role: 'admin',
    })
    expect((await ctx.get(`/v1/api_keys/${record.id}`)).status).toBe(404)
    expect((await ctx.get(`/v1/api_keys/${record.id}`, { key: ctx.main.liveKey })).status).toBe(200)
    const list = await ctx.get<{ items: ApiKeyBody[] }>('/v1/api_keys')
    expect(list.body.items.every((k) => k.environment_id === ctx.main.test.id)).toBe(true)
  })
})

describe('roles', () => {
  test('a customer token (role user) is refused on admin routes', async () => {
    const { key } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'user',
      customerId: 'cus_test',
    })
    expect(key.startsWith('ct_test_')).toBe(true)
    const res = await ctx.get<ErrorBody>('/v1/api_keys', { key })
    expect(res.status).toBe(403)
    expect(res.body.error.code).toBe('forbidden')
  })

  test('secret keys carry their environment in the prefix', async () => {
    expect(ctx.main.key).toMatch(/^sk_test_[0-9A-Za-z]{40}$/)
    expect(ctx.main.liveKey).toMatch(/^sk_live_[0-9A-Za-z]{40}$/)
  })

  test('only a hash of the key is stored', async () => {
    const rows = await ctx.db.selectFrom('api_keys').select(['key_hash', 'key_prefix']).execute()
    for (const row of rows) {
      expect(row.key_hash).toMatch(/^[0-9a-f]{64}$/)
      expect(row.key_prefix.length).toBeLessThanOrEqual(12)
    }
    const serialized = JSON.stringify(rows)
    expect(serialized).not.toContain(ctx.main.key)
  })

  test('revoking through the service refuses the caller key itself', async () => {
    const { record } = await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
    })
    const principal = {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      environmentType: 'test' as const,
      role: 'admin' as const,
      keyId: record.id,
      customerId: null,
    }
    await expect(revokeKey(ctx.db, principal, record.id, ctx.clock, principal)).rejects.toThrow(
      /cannot revoke itself/,
    )
  })
})

describe('API key cache', () => {
  const newKey = () =>
    createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
    })
  const cache = () => {
    const apiKeys = ctx.deps.apiKeys
    if (!apiKeys) throw new Error('the harness starts an API key cache')
    return apiKeys
  }
  const untilLive = async () => {
    for (let i = 0; i < 200 && !cache().live; i++) await new Promise((r) => setTimeout(r, 10))
    expect(cache().live).toBe(true)
  }
  /** The status a request with `key` gets, polled until it is `expected` or 2 s pass. */
  const statusSoon = async (key: string, expected: number) => {
    let status = 0
    for (let i = 0; i < 200; i++) {
      status = (await ctx.get('/v1/api_keys', { key })).status
      if (status === expected) break
      await new Promise((r) => setTimeout(r, 10))
    }
    return status
  }

  test('a key is looked up once, then served from the cache', async () => {
    await untilLive()
    const { key, record } = await newKey()
    const before = cache().size
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    expect(cache().size).toBe(before + 1)
    // A cached key does not read api_keys: a row changed without the trigger stays cached.
    await ctx.pool.query('alter table api_keys disable trigger api_keys_notify')
    try {
      await ctx.pool.query('update api_keys set revoked_at = now() where id = $1', [record.id])
      expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    } finally {
      await ctx.pool.query('alter table api_keys enable trigger api_keys_notify')
    }
  })

  test('a key revoked in SQL, by another process, is refused once the notification arrives', async () => {
    await untilLive()
    const { key, record } = await newKey()
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    await ctx.pool.query('update api_keys set revoked_at = now() where id = $1', [record.id])
    expect(await statusSoon(key, 401)).toBe(401)
  })

  test('a key revoked through a second process is refused by the first', async () => {
    await untilLive()
    const second = await ctx.buildSecondApp()
    const { key, record } = await newKey()
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    const revoked = await second.inject({
      method: 'DELETE',
      url: `/v1/api_keys/${record.id}`,
      headers: { authorization: `Bearer ${ctx.main.key}` },
    })
    expect(revoked.statusCode).toBe(200)
    expect(await statusSoon(key, 401)).toBe(401)
  })

  test("a customer's tokens are revoked at once, in this process and the others; not by a token, nor another customer's", async () => {
    await untilLive()
    const customer = await createCustomer(ctx)
    const other = await createCustomer(ctx)
    const token = async (customerId: string) =>
      (await ctx.post<{ token: string }>(`/v1/customers/${customerId}/tokens`, {})).body.token
    const [first, second, kept] = [
      await token(customer.id),
      await token(customer.id),
      await token(other.id),
    ]
    const own = `/v1/customers/${customer.id}`
    // What a token may read: its customer's invoices.
    const readable = '/v1/invoices'
    for (const key of [first, second]) expect((await ctx.get(readable, { key })).status).toBe(200)
    const secondApp = await ctx.buildSecondApp()
    const seen = await secondApp.inject({
      method: 'GET',
      url: readable,
      headers: { authorization: `Bearer ${first}` },
    })
    expect(seen.statusCode).toBe(200)
    // A token cannot revoke (admin route).
    expect((await ctx.delete(`${own}/tokens`, { key: first })).status).toBe(403)
    const revoked = await ctx.delete<{ revoked: number; customer_id: string }>(`${own}/tokens`)
    expect(revoked.status, revoked.text).toBe(200)
    expect(revoked.body).toEqual({
      object: 'customer_token_revocation',
      customer_id: customer.id,
      revoked: 2,
    })
    for (const key of [first, second]) expect((await ctx.get(readable, { key })).status).toBe(401)
    // The other process, which had it cached, refuses it once the notification arrives.
    let status = 0
    for (let i = 0; i < 200 && status !== 401; i++) {
      status = (
        await secondApp.inject({
          method: 'GET',
          url: readable,
          headers: { authorization: `Bearer ${first}` },
        })
      ).statusCode
      if (status !== 401) await new Promise((r) => setTimeout(r, 10))
    }
    expect(status).toBe(401)
    // Another customer's token is untouched; revoking again revokes nothing; an unknown customer is 404.
    expect((await ctx.get(readable, { key: kept })).status).toBe(200)
    expect((await ctx.delete<{ revoked: number }>(`${own}/tokens`)).body.revoked).toBe(0)
    expect((await ctx.delete('/v1/customers/cus_unknown/tokens')).status).toBe(404)
    // Another tenant's key does not reach this customer: 404, and its token still works.
    const stranger = await ctx.createTenantFixture('Token stranger')
    const foreign = await ctx.delete(`/v1/customers/${other.id}/tokens`, { key: stranger.key })
    expect(foreign.status).toBe(404)
    expect((await ctx.get(readable, { key: kept })).status).toBe(200)
  })

  test('DELETE /v1/customers/:id/tokens counts only live tokens (one expired already is not)', async () => {
    const customer = await createCustomer(ctx)
    const first = await ctx.post(`/v1/customers/${customer.id}/tokens`, { expires_in: 60 })
    expect(first.status, first.text).toBe(201)
    ctx.clock.set(new Date(ctx.clock.now().getTime() + 120_000))
    const second = await ctx.post(`/v1/customers/${customer.id}/tokens`, { expires_in: 3600 })
    expect(second.status, second.text).toBe(201)
    const res = await ctx.delete<{ revoked: number }>(`/v1/customers/${customer.id}/tokens`)
    expect(res.status, res.text).toBe(200)
    // One token was live; the schema says "How many live tokens were revoked".
    expect(res.body.revoked).toBe(1)
  })

  test('a lookup that raced a change is not cached', async () => {
    await untilLive()
    const { key } = await newKey()
    const hash = hashSecret(key)
    const before = cache().size
    const lookup = cache().lookup(ctx.db, hash)
    cache().forget(hash)
    expect(await lookup).toBeDefined()
    expect(cache().size).toBe(before)
  })

  test('while the notification connection is down, every request reads its key', async () => {
    await untilLive()
    const { key, record } = await newKey()
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(200)
    await ctx.pool.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
       where datname = current_database() and application_name = 'payrail-payrail_api_keys'`,
    )
    for (let i = 0; i < 200 && cache().live; i++) await new Promise((r) => setTimeout(r, 5))
    // Revoked with the trigger off: no notification could tell the cache.
    await ctx.pool.query('alter table api_keys disable trigger api_keys_notify')
    try {
      await ctx.pool.query('update api_keys set revoked_at = now() where id = $1', [record.id])
    } finally {
      await ctx.pool.query('alter table api_keys enable trigger api_keys_notify')
    }
    // Down or back (and emptied), the cache cannot serve the revoked key.
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(401)
    await untilLive()
    expect((await ctx.get('/v1/api_keys', { key })).status).toBe(401)
    expect((await ctx.get('/v1/api_keys')).status).toBe(200)
  })
})
