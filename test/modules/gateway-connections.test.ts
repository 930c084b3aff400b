import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

interface ConnectionBody {
  id: string
  gateway: string
  credential_keys: string[]
  settings: Record<string, string>
  active: boolean
  webhook_url: string
}

const EXTERNAL = { webhook_secret: 'whsec_external_test' }

describe('gateway connections: credentials', () => {
  test('a connection shows which credentials it holds, never their values', async () => {
    const created = await ctx.post<ConnectionBody>('/v1/gateway_connections', {
      gateway: 'external',
      credentials: EXTERNAL,
    })
    expect(created.status, created.text).toBe(201)
    expect(created.body).toMatchObject({
      gateway: 'external',
      credential_keys: ['webhook_secret'],
      active: true,
    })
    expect(created.text).not.toContain(EXTERNAL.webhook_secret)
    const listed = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections')
    expect(listed.text).not.toContain(EXTERNAL.webhook_secret)
    const again = await ctx.post<ErrorBody>('/v1/gateway_connections', {
      gateway: 'external',
      credentials: EXTERNAL,
    })
    expect(again.status).toBe(409)
    expect((await ctx.delete(`/v1/gateway_connections/${created.body.id}`)).status).toBe(200)
  })

  test('a credential the gateway does not take is 400, naming it: a misspelt key is not stored', async () => {
    const misspelt = await ctx.post<ErrorBody>('/v1/gateway_connections', {
      gateway: 'stripe',
      credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x', webhook_secet: 'whsec_x' },
    })
    expect(misspelt.status, misspelt.text).toBe(400)
    expect(misspelt.body.error).toMatchObject({
      code: 'validation_error',
      details: { field: 'credentials', unknown: ['webhook_secet'] },
    })
    expect(misspelt.body.error.message).toContain('secret_key, webhook_secret')
    const missing = await ctx.post<ErrorBody>('/v1/gateway_connections', {
      gateway: 'stripe',
      credentials: { secret_key: 'sk_test_x' },
    })
    expect(missing.status).toBe(400)
    expect(missing.body.error.details).toMatchObject({ missing: ['webhook_secret'] })
    const listed = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections')
    expect(listed.body.items.filter((c) => c.gateway === 'stripe' && c.active)).toEqual([])
  })

  test('an update takes the keys the gateway reads, one at a time, and refuses others unchanged', async () => {
    const created = await ctx.post<ConnectionBody>('/v1/gateway_connections', {
      gateway: 'checkout',
      credentials: { secret_key: 'sk_sbox_1', signature_key: 'sig_1' },
    })
    expect(created.status, created.text).toBe(201)
    const rotated = await ctx.patch<ConnectionBody>(`/v1/gateway_connections/${created.body.id}`, {
      credentials: { signature_key: 'sig_2' },
    })
    expect(rotated.status, rotated.text).toBe(200)
    expect(rotated.body.credential_keys).toEqual(['secret_key', 'signature_key'])
    const refused = await ctx.patch<ErrorBody>(`/v1/gateway_connections/${created.body.id}`, {
      credentials: { signing_key: 'sig_3' },
    })
    expect(refused.status).toBe(400)
    expect(refused.body.error.details).toMatchObject({ unknown: ['signing_key'] })
    const shown = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections')
    expect(shown.body.items.find((c) => c.id === created.body.id)?.credential_keys).toEqual([
      'secret_key',
      'signature_key',
    ])
  })

  test("another tenant's key neither sees a connection nor changes its credentials", async () => {
    const created = await ctx.post<ConnectionBody>('/v1/gateway_connections', {
      gateway: 'bitpay',
      credentials: { token: 'bitpay_token_1' },
    })
    expect(created.status, created.text).toBe(201)
    const other = await ctx.createTenantFixture('Another merchant')
    const listed = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections', {
      key: other.key,
    })
    expect(listed.body.items.map((c) => c.id)).not.toContain(created.body.id)
    const patched = await ctx.patch<ErrorBody>(
      `/v1/gateway_connections/${created.body.id}`,
      { credentials: { token: 'bitpay_token_2' } },
      { key: other.key },
    )
    expect(patched.status).toBe(404)
    // Nor a key it could not take: refused as 404 first, naming nothing of the connection.
    const probed = await ctx.patch<ErrorBody>(
      `/v1/gateway_connections/${created.body.id}`,
      { credentials: { webhook_secret: 'x' } },
      { key: other.key },
    )
    expect(probed.status).toBe(404)
    expect(
      (await ctx.delete(`/v1/gateway_connections/${created.body.id}`, { key: other.key })).status,
    ).toBe(404)
    const mine = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections')
    expect(mine.body.items.find((c) => c.id === created.body.id)).toMatchObject({
      active: true,
      credential_keys: ['token'],
    })
  })
})
