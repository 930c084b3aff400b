import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { adminAccess } from '../../src/core/principal.ts'
import { SecretBox } from '../../src/core/secret-box.ts'
import { hmacHex } from '../../src/core/webhook-signature.ts'
import { chargeDueInvoices } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import {
  OPEN_PAGE_GRACE_MS,
  payInvoiceAutomatically,
} from '../../src/modules/payments/automatic.ts'
import { createCustomer, finalizedInvoice, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { getInvoice, type PaymentBody, payrailLockWaits } from '../payments-helpers.ts'

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
}

async function storedCredentials(id: string): Promise<Record<string, string>> {
  const row = await ctx.db
    .selectFrom('gateway_connections')
    .select('credentials')
    .where('id', '=', id)
    .executeTakeFirstOrThrow()
  return JSON.parse(ctx.deps.secretBox.open(row.credentials)) as Record<string, string>
}

describe('gateway connections', () => {
  test('two PATCHes rotating different credentials at once both take effect (no lost update)', async () => {
    const created = await ctx.post<ConnectionBody>('/v1/gateway_connections', {
      gateway: 'checkout',
      credentials: { secret_key: 'sk_old', signature_key: 'sig_old' },
    })
    expect(created.status, created.text).toBe(201)
    const id = created.body.id
    // Another transaction holds the row for a moment (a third PATCH, say): both requests read
    // the credentials, then wait to write them.
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from gateway_connections where id = $1 for update', [id])
      const a = ctx.patch(`/v1/gateway_connections/${id}`, {
        credentials: { secret_key: 'sk_new' },
      })
      const b = ctx.patch(`/v1/gateway_connections/${id}`, {
        credentials: { signature_key: 'sig_new' },
      })
      for (let i = 0; i < 400 && (await payrailLockWaits(ctx)) < 2; i++)
        await new Promise((r) => setTimeout(r, 5))
      await holder.query('commit')
      expect((await a).status).toBe(200)
      expect((await b).status).toBe(200)
    } finally {
      holder.release()
    }
    expect(await storedCredentials(id)).toEqual({ secret_key: 'sk_new', signature_key: 'sig_new' })
  })

  test('a disconnected gateway does not strand its open payments: the report of money taken is still applied (or the DELETE refused)', async () => {
    const other = await ctx.createTenantFixture('Stranded')
    const key = other.key
    const connected = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      { gateway: 'external', credentials: { webhook_secret: 'ext-secret' } },
      { key },
    )
    expect(connected.status, connected.text).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'Ext', email: 'ext@example.com' },
      { key },
    )
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      },
      { key },
    )
    expect((await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })).status).toBe(
      200,
    )
    const payment = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        currency: 'usd',
        amount: '10.00',
        payment_method_type: 'EXTERNAL',
        payment_gateway: 'external',
      },
      { key },
    )
    expect(payment.status, payment.text).toBe(201)
    expect(payment.body.payment_status).toBe('PENDING')
    const deleted = await ctx.delete(`/v1/gateway_connections/${connected.body.id}`, { key })
    if (deleted.status === 409) return
    expect(deleted.status).toBe(200)
    // The third party took the money before it heard of the disconnection, and reports it.
    const body = JSON.stringify({
      event_id: 'ext_evt_1',
      payment_id: payment.body.id,
      status: 'succeeded',
    })
    const report = await ctx.app.inject({
      method: 'POST',
      url: `/v1/webhooks/external/${other.tenant.id}/${other.test.id}`,
      headers: {
        'content-type': 'application/json',
        'x-signature': hmacHex('ext-secret', '', body),
      },
      payload: body,
    })
    const cancel = await ctx.post(`/v1/payments/${payment.body.id}/cancel`, {}, { key })
    const shown = await ctx.get<PaymentBody>(`/v1/payments/${payment.body.id}`, { key })
    expect(
      shown.body.payment_status,
      `report ${report.statusCode} ${report.body}; cancel ${cancel.status} ${cancel.text}`,
    ).toBe('SUCCEEDED')
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
    const listed = await ctx.get('/v1/gateway_connections', { key })
    const deleted = await ctx.delete(`/v1/gateway_connections/${created.body.id}`, { key })
    expect([listed.status, deleted.status], `${listed.text} / ${deleted.text}`).toEqual([200, 200])
  })
})

describe('customer tokens', () => {
  test('a customer token cannot forge the automatic-charge flag and keep its invoice from being charged', async () => {
    const customer = await createCustomer(ctx, { auto_pay: true })
    const card = await ctx.db
      .insertInto('sandbox_cards')
      .values({
        id: `sbcard_${customer.id}`,
        environment_id: ctx.main.test.id,
        customer_id: customer.id,
        number: '4242424242424242',
        brand: 'visa',
        last4: '4242',
        exp_month: 12,
        exp_year: 2030,
      })
      .returningAll()
      .executeTakeFirstOrThrow()
    const method = await savePaymentMethod(ctx.db, ctx.scope, {
      customerId: customer.id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: card.id,
      last4: card.last4,
    })
    await ctx.patch(`/v1/customers/${customer.id}`, { default_payment_method_id: method.id })
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`, {})
    expect(token.status, token.text).toBe(201)
    // The customer opens nothing: a payment it never processes, flagged as Payrail flags its own charges.
    const forged = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.id,
        currency: 'usd',
        amount: invoice.amount_due,
        payment_method_type: 'CRYPTO',
        payment_gateway: 'sandbox',
        process_payment: false,
        metadata: { automatic_charge: 'true' },
      },
      { key: token.body.token },
    )
    // Either the flag is refused, or it is ignored by the job.
    if (forged.status === 201) {
      await chargeDueInvoices(ctx.deps)
      const shown = await getInvoice(ctx, invoice.id)
      const payments = (
        await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoice.id}`)
      ).body.items
      expect(
        payments.filter((p) => p.payment_method_type === 'CARD').map((p) => p.payment_status),
        JSON.stringify(payments.map((p) => [p.payment_method_type, p.payment_status])),
      ).toEqual(['SUCCEEDED'])
      expect(shown.payment_status).toBe('SUCCEEDED')
    } else {
      expect(forged.status).toBe(400)
    }
  })
})

describe('gateway connection settings', () => {
  test('settings.base_url with a path is the API base for Stripe too (its path is not dropped)', async () => {
    const paths: string[] = []
    const server = createServer((req, res) => {
      paths.push(String(req.url))
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { type: 'invalid_request_error', message: 'no' } }))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    try {
      const port = (server.address() as AddressInfo).port
      const other = await ctx.createTenantFixture('Stripe base')
      const key = other.key
      const connected = await ctx.post(
        '/v1/gateway_connections',
        {
          gateway: 'stripe',
          credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
          settings: { base_url: `http://127.0.0.1:${port}/stripe-proxy` },
        },
        { key },
      )
      expect(connected.status, connected.text).toBe(201)
      const customer = await ctx.post<{ id: string }>(
        '/v1/customers',
        { name: 'S', email: 's@example.com' },
        { key },
      )
      const invoice = await ctx.post<{ id: string }>(
        '/v1/invoices',
        {
          customer_id: customer.body.id,
          currency: 'usd',
          lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
        },
        { key },
      )
      await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })
      await ctx.post(
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: invoice.body.id,
          currency: 'usd',
          amount: '10.00',
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'stripe',
        },
        { key },
      )
      expect(paths.length).toBeGreaterThan(0)
      expect(
        paths.every((p) => p.startsWith('/stripe-proxy/')),
        paths.join(', '),
      ).toBe(true)
    } finally {
      server.close()
    }
  })
})

describe('dashboard', () => {
  test('a same-origin sign-in through a reverse proxy that rewrites Host is not refused as cross-site', async () => {
    const origin = new URL(ctx.config.publicUrl).origin
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/dashboard/login',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        host: 'payrail-upstream:8080',
        origin,
        'sec-fetch-site': 'same-origin',
      },
      payload: new URLSearchParams({ key: ctx.main.key }).toString(),
    })
    expect(res.statusCode, res.body.slice(0, 300)).toBe(303)
  })
})

describe('saved payment methods', () => {
  test("a CARD payment naming another gateway than its card's is refused before anything is written", async () => {
    const other = await ctx.createTenantFixture('Card gateways')
    const key = other.key
    const scope = { tenantId: other.tenant.id, environmentId: other.test.id }
    expect(
      (
        await ctx.post(
          '/v1/gateway_connections',
          {
            gateway: 'stripe',
            credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
            settings: { base_url: 'http://127.0.0.1:9' },
          },
          { key },
        )
      ).status,
    ).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'C', email: 'c@example.com' },
      { key },
    )
    const method = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.body.id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: `sbcard_${customer.body.id}`,
      last4: '4242',
    })
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      },
      { key },
    )
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })
    const res = await ctx.post(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        currency: 'usd',
        amount: '10.00',
        payment_method_type: 'CARD',
        payment_gateway: 'stripe',
        payment_method_id: method.id,
      },
      { key },
    )
    expect(res.status, res.text).toBe(400)
    const left = await ctx.get<List<PaymentBody>>(
      `/v1/payments?destination_id=${invoice.body.id}`,
      { key },
    )
    expect(
      left.body.items.map((p) => [p.payment_status, p.payment_gateway, p.payment_method_id]),
    ).toEqual([])
  })
})

describe('default card of a disconnected gateway', () => {
  test("the automatic charge that cannot run (its card's gateway disconnected) withdraws none of the customer's open pages", async () => {
    const other = await ctx.createTenantFixture('Disconnected default')
    const key = other.key
    const scope = { tenantId: other.tenant.id, environmentId: other.test.id }
    const connection = await ctx.post<ConnectionBody>(
      '/v1/gateway_connections',
      {
        gateway: 'stripe',
        credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
        settings: { base_url: 'http://127.0.0.1:9' },
      },
      { key },
    )
    expect(connection.status).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'D', email: 'd@example.com', auto_pay: true },
      { key },
    )
    const method = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.body.id,
      gateway: 'stripe',
      gatewayPaymentMethodId: 'pm_stripe_1',
      last4: '4242',
    })
    expect(
      (
        await ctx.patch(
          `/v1/customers/${customer.body.id}`,
          { default_payment_method_id: method.id },
          { key },
        )
      ).status,
    ).toBe(200)
    expect(
      (await ctx.delete(`/v1/gateway_connections/${connection.body.id}`, { key })).status,
    ).toBe(200)
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        collection_method: 'charge_automatically',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      },
      { key },
    )
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })
    const link = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        currency: 'usd',
        amount: '10.00',
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'sandbox',
      },
      { key },
    )
    expect(link.body.payment_status).toBe('PENDING')
    ctx.clock.advance(OPEN_PAGE_GRACE_MS + 60_000)
    const outcome = await payInvoiceAutomatically(ctx.deps, adminAccess(scope), invoice.body.id, {
      cause: 'job',
      causeId: 'test',
    }).then(
      () => 'charged',
      (error: Error) => error.message,
    )
    const shown = await ctx.get<PaymentBody>(`/v1/payments/${link.body.id}`, { key })
    expect(shown.body.payment_status, outcome).toBe('PENDING')
  })
})
