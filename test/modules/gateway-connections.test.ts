import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SecretBox } from '../../src/core/secret-box.ts'
import { GATEWAY_NAMES } from '../../src/gateways/gateway.ts'
import { gatewayFor } from '../../src/gateways/registry.ts'
import { FAILURES_PAID_LATE } from '../../src/modules/payments/repository.ts'
import {
  bitpayPaymentWithLostInvoice,
  connectBitpay,
  listenForNotifications,
} from '../crypto-helpers.ts'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  payrailLockWaits,
} from '../payments-helpers.ts'

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

async function storedCredentials(id: string): Promise<Record<string, string>> {
  const row = await ctx.db
    .selectFrom('gateway_connections')
    .select('credentials')
    .where('id', '=', id)
    .executeTakeFirstOrThrow()
  return JSON.parse(ctx.deps.secretBox.open(row.credentials)) as Record<string, string>
}

describe('gateway connections: concurrent and unreadable', () => {
  test("stripe's base_url takes no path (its SDK would drop it); the other gateways' do", async () => {
    const { key } = await ctx.createTenantFixture('Stripe base')
    const stripe = { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' }
    const refused = await ctx.post<ErrorBody>(
      '/v1/gateway_connections',
      {
        gateway: 'stripe',
        credentials: stripe,
        settings: { base_url: 'http://127.0.0.1:9/stripe-proxy' },
      },
      { key },
    )
    expect(refused.status, refused.text).toBe(400)
    expect(refused.body.error.details).toMatchObject({ field: 'settings.base_url' })
    const created = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      { gateway: 'stripe', credentials: stripe, settings: { base_url: 'http://127.0.0.1:9/' } },
      { key },
    )
    expect(created.status, created.text).toBe(201)
    const patched = await ctx.patch(
      `/v1/gateway_connections/${created.body.id}`,
      { settings: { base_url: 'https://proxy.example/stripe' } },
      { key },
    )
    expect(patched.status).toBe(400)
    const checkout = await ctx.post(
      '/v1/gateway_connections',
      {
        gateway: 'checkout',
        credentials: { secret_key: 'sk', signature_key: 'sig' },
        settings: { base_url: 'https://proxy.example/checkout' },
      },
      { key },
    )
    expect(checkout.status, checkout.text).toBe(201)
  })

  test('a base_url that is no http(s) URL is 400 on settings.base_url for every gateway, on create and PATCH, and nothing is stored', async () => {
    const { key } = await ctx.createTenantFixture('Bad bases')
    const credentials: Record<string, Record<string, string>> = {
      stripe: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
      bitpay: { token: 't' },
      checkout: { secret_key: 'sk_sbox_x', signature_key: 's' },
      coinpayments: { public_key: 'p', private_key: 'k', ipn_secret: 'i', merchant_id: 'm' },
    }
    // Each passes the schema (`format: uri`, `^https?://`) but does not parse as a URL: it
    // was a 500 for Stripe, and stored for the others, every call then a retryable 502.
    const unparseable = ['http://h:99999', 'http://999.1.1.1', 'http://[v1.x]/']
    for (const gateway of Object.keys(credentials)) {
      for (const base_url of unparseable) {
        const res = await ctx.post<ErrorBody>(
          '/v1/gateway_connections',
          { gateway, credentials: credentials[gateway], settings: { base_url } },
          { key },
        )
        expect(res.status, `${gateway} ${base_url}: ${res.text}`).toBe(400)
        expect(res.body.error).toMatchObject({
          code: 'validation_error',
          details: { field: 'settings.base_url' },
        })
      }
    }
    const notHttp = await ctx.post<ErrorBody>(
      '/v1/gateway_connections',
      { gateway: 'bitpay', credentials: credentials.bitpay, settings: { base_url: 'ftp://x/' } },
      { key },
    )
    expect(notHttp.status, notHttp.text).toBe(400)
    const listed = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections', { key })
    expect(listed.body.items).toEqual([])
    const created = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      {
        gateway: 'stripe',
        credentials: credentials.stripe,
        settings: { base_url: 'http://127.0.0.1:9' },
      },
      { key },
    )
    expect(created.status, created.text).toBe(201)
    const patched = await ctx.patch<ErrorBody>(
      `/v1/gateway_connections/${created.body.id}`,
      { settings: { base_url: 'http://999.1.1.1' } },
      { key },
    )
    expect(patched.status, patched.text).toBe(400)
    expect(patched.body.error).toMatchObject({
      code: 'validation_error',
      details: { field: 'settings.base_url' },
    })
    const kept = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections', { key })
    expect(kept.body.items).toMatchObject([{ settings: { base_url: 'http://127.0.0.1:9' } }])
  })

  test('two PATCHes rotating different credentials at once both take effect (no lost update)', async () => {
    const { key } = await ctx.createTenantFixture('Rotations')
    const created = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      { gateway: 'checkout', credentials: { secret_key: 'sk_old', signature_key: 'sig_old' } },
      { key },
    )
    expect(created.status, created.text).toBe(201)
    const id = created.body.id
    // Another transaction holds the row for a moment (a third PATCH, say): both requests read
    // the credentials, then wait to write them.
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from gateway_connections where id = $1 for update', [id])
      const a = ctx.patch(
        `/v1/gateway_connections/${id}`,
        { credentials: { secret_key: 'sk_new' } },
        { key },
      )
      const b = ctx.patch(
        `/v1/gateway_connections/${id}`,
        { credentials: { signature_key: 'sig_new' } },
        { key },
      )
      for (let i = 0; i < 400 && (await payrailLockWaits(ctx)) < 2; i++)
        await new Promise((r) => setTimeout(r, 5))
      await holder.query('commit')
      expect((await a).status).toBe(200)
      expect((await b).status).toBe(200)
    } finally {
      holder.release()
    }
    // Before, the later write put back the credentials it had read: one rotation was lost.
    expect(await storedCredentials(id)).toEqual({ secret_key: 'sk_new', signature_key: 'sig_new' })
  })

  test('a connection whose credentials cannot be opened does not break the list, and can still be deleted', async () => {
    const other = await ctx.createTenantFixture('Old key')
    const key = other.key
    const created = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      { gateway: 'bitpay', credentials: { token: 't1' } },
      { key },
    )
    expect(created.status).toBe(201)
    // Sealed under a PAYRAIL_SECRET_KEY that is not the server's any more.
    const foreign = new SecretBox(Buffer.alloc(32, 9)).seal(JSON.stringify({ token: 'old' }))
    await ctx.db
      .updateTable('gateway_connections')
      .set({ credentials: foreign })
      .where('id', '=', created.body.id)
      .execute()
    // Before, the list was a 500 for the whole environment, and so was DELETE.
    const listed = await ctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections', { key })
    expect(listed.status, listed.text).toBe(200)
    expect(listed.body.items).toMatchObject([{ id: created.body.id, credential_keys: [] }])
    // Changing it needs every credential again; with them, it works and they open again.
    const partial = await ctx.patch<ErrorBody>(
      `/v1/gateway_connections/${created.body.id}`,
      { settings: {} },
      { key },
    )
    expect(partial.status, partial.text).toBe(400)
    expect(partial.body.error.message).toMatch(/cannot be opened/)
    const resealed = await ctx.patch<ConnectionBody>(
      `/v1/gateway_connections/${created.body.id}`,
      { credentials: { token: 't2' } },
      { key },
    )
    expect(resealed.status, resealed.text).toBe(200)
    expect(await storedCredentials(created.body.id)).toEqual({ token: 't2' })
    await ctx.db
      .updateTable('gateway_connections')
      .set({ credentials: foreign })
      .where('id', '=', created.body.id)
      .execute()
    const deleted = await ctx.delete<ConnectionBody>(`/v1/gateway_connections/${created.body.id}`, {
      key,
    })
    expect(deleted.status, deleted.text).toBe(200)
    expect(deleted.body.active).toBe(false)
  })
})

describe('gateway connections: BitPay payments that may still bring money hold the connection', () => {
  let bctx: TestContext
  let bitpay: BitpayEmulator
  let address: string
  let connectionId: string

  beforeAll(async () => {
    bctx = await createTestContext({ start: new Date() })
    address = await listenForNotifications(bctx)
    bitpay = await startBitpayEmulator({ clock: bctx.clock })
    await connectBitpay(bctx, bitpay)
    const listed = await bctx.get<{ items: ConnectionBody[] }>('/v1/gateway_connections')
    connectionId = String(listed.body.items[0]?.id)
  })
  afterAll(async () => {
    await bitpay?.close()
    await bctx?.close()
  })

  test('the failures that hold a connection are those of the gateways that report money after a failure', () => {
    const paysAfterFailure = GATEWAY_NAMES.filter(
      (name) => gatewayFor(name).capabilities.paysAfterFailure,
    )
    expect(Object.keys(FAILURES_PAID_LATE).sort()).toEqual([...paysAfterFailure].sort())
  })

  /** Deactivates the connection (refused while a payment awaits), and connects it again. */
  async function deleteAndReconnect(): Promise<number> {
    const deleted = await bctx.delete(`/v1/gateway_connections/${connectionId}`)
    if (deleted.status === 200) {
      const again = await bctx.patch(`/v1/gateway_connections/${connectionId}`, { active: true })
      expect(again.status, again.text).toBe(200)
    }
    return deleted.status
  }

  /** `DELETE` of the connection is 409, naming the payment that holds it. */
  async function expectDeleteRefusedFor(paymentId: string): Promise<void> {
    const refused = await bctx.delete<ErrorBody>(`/v1/gateway_connections/${connectionId}`)
    expect(refused.status, refused.text).toBe(409)
    expect(refused.body.error.details).toMatchObject({ payment_ids: [paymentId] })
  }

  /** A BitPay payment of a new invoice of 100.00, its invoice paid and then `invalid`. */
  async function invalidPayment(): Promise<PaymentBody> {
    const { invoice } = await invoiceToPay(bctx)
    const created = await createPayment(bctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'bitpay',
      amount: '100.00',
    })
    expect(created.status, created.text).toBe(201)
    const tracking = String(created.body.gateway_tracking_id)
    bitpay.pay(tracking)
    await bitpay.waitForNotifications()
    bitpay.invalidate(tracking)
    await bitpay.waitForNotifications()
    expect(await getPayment(bctx, created.body.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'invalid',
    })
    return created.body
  }

  test('a payment whose invoice answer was lost (INITIATED, its invoice may exist) holds it (409) until BitPay reports it', async () => {
    const { invoice } = await invoiceToPay(bctx)
    const { paymentId, lostId } = await bitpayPaymentWithLostInvoice(
      bctx,
      bitpay,
      address,
      invoice.id,
    )
    expect(await getPayment(bctx, paymentId)).toMatchObject({ payment_status: 'INITIATED' })
    // Deactivated, the money paid on that invoice would have been reported to a 404.
    for (const refused of [
      await bctx.delete<ErrorBody>(`/v1/gateway_connections/${connectionId}`),
      await bctx.patch<ErrorBody>(`/v1/gateway_connections/${connectionId}`, { active: false }),
    ]) {
      expect(refused.status, refused.text).toBe(409)
      expect(refused.body.error).toMatchObject({
        code: 'conflict',
        details: { gateway: 'bitpay', payment_ids: [paymentId] },
      })
    }
    bitpay.pay(lostId)
    bitpay.confirm(lostId)
    await bitpay.waitForNotifications()
    expect(await getPayment(bctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await deleteAndReconnect()).toBe(200)
  })

  test('a payment FAILED as invalid (paid, unconfirmed in the hour) holds it, as BitPay may still complete it; one expired unpaid does not', async () => {
    const invalid = await invalidPayment()
    await expectDeleteRefusedFor(invalid.id)
    // The transaction confirms late: BitPay completes the invoice, and the payment records it.
    const tracking = String(invalid.gateway_tracking_id)
    const record = bitpay.findInvoice(tracking)
    if (!record) throw new Error(`no BitPay invoice ${tracking}`)
    record.status = 'complete'
    bitpay.resendNotification(tracking)
    await bitpay.waitForNotifications()
    expect(await getPayment(bctx, invalid.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    // An invoice that expired unpaid ends there: its payment holds nothing.
    const { invoice } = await invoiceToPay(bctx)
    const expiring = await createPayment(bctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'bitpay',
      amount: '100.00',
    })
    expect(expiring.status, expiring.text).toBe(201)
    bitpay.expire(String(expiring.body.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect(await getPayment(bctx, expiring.body.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
    expect(await deleteAndReconnect()).toBe(200)
  })

  test('DELETE with force=true disconnects it all the same, the merchant giving up those reports', async () => {
    const invalid = await invalidPayment()
    await expectDeleteRefusedFor(invalid.id)
    const forced = await bctx.delete<ConnectionBody>(
      `/v1/gateway_connections/${connectionId}?force=true`,
    )
    expect(forced.status, forced.text).toBe(200)
    expect(forced.body.active).toBe(false)
  })
})
