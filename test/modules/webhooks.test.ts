import { createHmac, randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { newId } from '../../src/core/ids.ts'
import type { PaymentStatus } from '../../src/core/payment-state.ts'
import type { SandboxEvent } from '../../src/gateways/sandbox/sandbox-provider.ts'
import { eventsOf } from '../fixtures.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  payrailWaitsOnLock,
  sessionOf,
  submitCard,
  unprocessedCardPayment,
} from '../payments-helpers.ts'

interface Received {
  received: boolean
  events: { id: string; type: string; outcome: string }[]
}

interface Delivery {
  status: number
  body: Received & ErrorBody
}

interface DeliverOptions {
  app?: FastifyInstance
  gateway?: string
  tenantId?: string
  environmentId?: string
  /** Signs with this secret instead of the environment's sandbox secret. */
  secret?: string
  /** Unix seconds to sign with; defaults to the service clock's now. */
  timestamp?: number
  /** Sends this header as is; `null` sends none. */
  signature?: string | null
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other tenant')
})
afterAll(() => ctx.close())

function sandboxSecret(environmentId: string): string {
  return ctx.deps.secretBox.derive(`sandbox-webhook:${environmentId}`)
}

/** `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, computed here rather than with Payrail's own signer. */
function sign(secret: string, body: string, timestamp: number): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')
  return `t=${timestamp},v1=${mac}`
}

function nowSeconds(): number {
  return Math.floor(ctx.clock.now().getTime() / 1000)
}

async function deliver(
  event: SandboxEvent | string,
  options: DeliverOptions = {},
): Promise<Delivery> {
  const body = typeof event === 'string' ? event : JSON.stringify(event)
  const tenantId = options.tenantId ?? ctx.main.tenant.id
  const environmentId = options.environmentId ?? ctx.main.test.id
  const signature =
    options.signature === undefined
      ? sign(
          options.secret ?? sandboxSecret(environmentId),
          body,
          options.timestamp ?? nowSeconds(),
        )
      : options.signature
  const res = await (options.app ?? ctx.app).inject({
    method: 'POST',
    url: `/v1/webhooks/${options.gateway ?? 'sandbox'}/${tenantId}/${environmentId}`,
    headers: {
      'content-type': 'application/json',
      ...(signature === null ? {} : { 'payrail-signature': signature }),
    },
    payload: body,
  })
  return { status: res.statusCode, body: res.json<Received & ErrorBody>() }
}

function sandboxEvent(
  type: string,
  payment: PaymentBody,
  data: Partial<SandboxEvent['data']> = {},
): SandboxEvent {
  const amount = Math.round(Number(payment.amount) * 100)
  return {
    id: `sbevt_test_${randomBytes(8).toString('hex')}`,
    type,
    created: nowSeconds(),
    data: {
      payment_id: payment.id,
      session_id: payment.gateway_tracking_id,
      charge_id: null,
      amount,
      amount_received: amount,
      currency: payment.currency,
      card: null,
      error: null,
      refund_id: null,
      gateway_refund_id: null,
      ...data,
    },
  }
}

/** A PENDING sandbox payment (hosted page open) for a 100.00 invoice. */
async function pendingSandboxPayment(methodType: 'PAYMENT_LINK' | 'CRYPTO' = 'PAYMENT_LINK') {
  const { customer, invoice } = await invoiceToPay(ctx)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: methodType,
    payment_gateway: 'sandbox',
    amount: '100.00',
  })
  expect(res.status).toBe(201)
  expect(res.body.payment_status).toBe('PENDING')
  expect(res.body.gateway_tracking_id).toBe(sessionOf(res.body))
  return { customer, invoice, payment: res.body }
}

async function inboundRows(eventId: string) {
  return ctx.db
    .selectFrom('webhook_events')
    .selectAll()
    .where('gateway', '=', 'sandbox')
    .where('event_id', '=', eventId)
    .execute()
}

async function transitionsTo(paymentId: string, status: PaymentStatus) {
  return ctx.db
    .selectFrom('payment_transitions')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .where('to_status', '=', status)
    .execute()
}

describe('inbound sandbox webhooks: applying events', () => {
  test('a late charge.failed for an earlier charge, already recorded, does not fail the retry in flight', async () => {
    const { nextInvoiceId, payment: created } = await unprocessedCardPayment(ctx)
    const payment = created
    // As a declined first charge leaves it once retried: the decline recorded as an
    // attempt of charge sbch_first, and the payment PROCESSING again for a new charge.
    await ctx.db
      .insertInto('payment_attempts')
      .values({
        id: newId('paymentAttempt'),
        payment_id: payment.id,
        gateway: 'sandbox',
        gateway_payment_id: 'sbch_first',
        status: 'failed',
        error_code: 'card_declined',
        error_message: 'Your card was declined.',
      })
      .execute()
    await ctx.db
      .updateTable('payments')
      .set({ payment_status: 'PROCESSING', gateway_payment_id: 'sbch_first' })
      .where('id', '=', payment.id)
      .execute()

    const late = await deliver(
      sandboxEvent('charge.failed', payment, {
        charge_id: 'sbch_first',
        error: { code: 'card_declined', message: 'Your card was declined.', decline_code: null },
      }),
    )
    expect(late.status).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')

    // The retry's own outcome still applies: its success, and a failure of its own charge.
    const paid = await deliver(
      sandboxEvent('charge.succeeded', payment, { charge_id: 'sbch_second' }),
    )
    expect(paid.status).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      gateway_payment_id: 'sbch_second',
    })
    expect(await getInvoice(ctx, nextInvoiceId)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('a charge.failed for a charge whose failure is not recorded fails the payment', async () => {
    const { payment: created } = await unprocessedCardPayment(ctx)
    await ctx.db
      .updateTable('payments')
      .set({ payment_status: 'PROCESSING' })
      .where('id', '=', created.id)
      .execute()
    const failed = await deliver(
      sandboxEvent('charge.failed', created, {
        charge_id: 'sbch_only',
        error: { code: 'card_declined', message: 'Your card was declined.', decline_code: null },
      }),
    )
    expect(failed.status).toBe(200)
    expect((await getPayment(ctx, created.id)).payment_status).toBe('FAILED')
  })

  test('checkout.completed moves a PENDING link payment to SUCCEEDED and pays the invoice', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const res = await deliver(event)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      received: true,
      events: [{ id: event.id, type: 'checkout.completed', outcome: 'applied' }],
    })
    const paid = await getPayment(ctx, payment.id)
    expect(paid).toMatchObject({
      payment_status: 'SUCCEEDED',
      current_state: 'succeeded',
      amount_paid: '100.00',
      gateway_payment_id: payment.gateway_tracking_id,
    })
    expect(paid.attempts.at(-1)).toMatchObject({ status: 'succeeded' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    const rows = await inboundRows(event.id)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({
      tenant_id: ctx.main.tenant.id,
      environment_id: ctx.main.test.id,
      event_type: 'checkout.completed',
      outcome: 'applied',
      payload: event,
    })
    expect(rows[0]?.handled_at).not.toBeNull()
    const transitions = await transitionsTo(payment.id, 'SUCCEEDED')
    expect(transitions).toEqual([
      expect.objectContaining({ from_status: 'PENDING', cause: 'webhook', cause_id: event.id }),
    ])
  })

  test('the same event delivered 50 times at once is applied exactly once', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const results = await Promise.all(Array.from({ length: 50 }, () => deliver(event)))
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200))
    const outcomes = results.map((r) => r.body.events[0]?.outcome)
    expect(outcomes.filter((o) => o === 'applied')).toHaveLength(1)
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(49)

    const paid = await getPayment(ctx, payment.id)
    expect(paid).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(paid.attempts.filter((a) => a.status === 'succeeded')).toHaveLength(1)
    const succeeded = await eventsOf(ctx, payment.id, 'payment.succeeded')
    expect(succeeded).toHaveLength(1)
    // The event shows the payment as GET does, with the attempt that completed it.
    expect(succeeded[0]?.data).toEqual({ object: paid })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
    expect(await inboundRows(event.id)).toHaveLength(1)
    expect(await transitionsTo(payment.id, 'SUCCEEDED')).toHaveLength(1)
  })

  test('a duplicate delivered later answers 200 with outcome duplicate and changes nothing', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    expect((await deliver(event)).body.events[0]?.outcome).toBe('applied')
    ctx.clock.advance(60_000)
    const again = await deliver(event)
    expect(again.status).toBe(200)
    expect(again.body).toEqual({
      received: true,
      events: [{ id: event.id, type: 'checkout.completed', outcome: 'duplicate' }],
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
    expect(await eventsOf(ctx, payment.id, 'payment.succeeded')).toHaveLength(1)
    expect(await inboundRows(event.id)).toHaveLength(1)
  })

  test('a duplicate delivery takes no lock: it answers while another transaction holds the payment and its invoice', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    expect((await deliver(event)).body.events[0]?.outcome).toBe('applied')
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from payments where id = $1 for update', [payment.id])
      await holder.query('select id from invoices where id = $1 for update', [invoice.id])
      const again = deliver(event)
      // Were the duplicate to lock the payment or its invoice, it would wait on the holder.
      let waiting = false
      let settled = false
      void again.finally(() => {
        settled = true
      })
      while (!settled && !waiting) waiting = await payrailWaitsOnLock(ctx)
      await holder.query('rollback')
      expect(waiting).toBe(false)
      expect((await again).body.events[0]?.outcome).toBe('duplicate')
    } finally {
      holder.release()
    }
  })

  test('a fresh delivery locks the payment, then its invoice in the same round trip, and waits for them', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from invoices where id = $1 for update', [invoice.id])
      const delivery = deliver(event)
      let waiting = false
      while (!waiting) waiting = await payrailWaitsOnLock(ctx)
      // It waits with the payment locked: another transaction cannot take it meanwhile.
      await expect(
        holder.query('select id from payments where id = $1 for update nowait', [payment.id]),
      ).rejects.toMatchObject({ code: '55P03' })
      await holder.query('rollback')
      expect((await delivery).body.events[0]?.outcome).toBe('applied')
      expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
    } finally {
      holder.release()
    }
  })

  test('the same completion reported again under a new event id is a no-op (repeat)', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    expect((await deliver(sandboxEvent('checkout.completed', payment))).status).toBe(200)
    const before = await getPayment(ctx, payment.id)
    const again = await deliver(sandboxEvent('checkout.completed', payment))
    expect(again.status).toBe(200)
    expect(again.body.events[0]?.outcome).toBe('repeat')
    const after = await getPayment(ctx, payment.id)
    expect(after.payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
    expect(await eventsOf(ctx, payment.id, 'payment.succeeded')).toHaveLength(1)
    // A repeat writes nothing: not even another attempt.
    expect(after.attempts).toHaveLength(before.attempts.length)
  })

  test('out of order: a late crypto.paid or checkout.expired after success is ignored', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    expect((await deliver(sandboxEvent('checkout.completed', payment))).status).toBe(200)
    const latePaid = sandboxEvent('crypto.paid', payment)
    const late = await deliver(latePaid)
    expect(late.status).toBe(200)
    expect(late.body.events).toEqual([{ id: latePaid.id, type: 'crypto.paid', outcome: 'ignored' }])
    const lateExpiry = await deliver(sandboxEvent('checkout.expired', payment))
    expect(lateExpiry.body.events[0]?.outcome).toBe('ignored')

    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      failed_at: null,
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
    expect(await eventsOf(ctx, payment.id, 'payment.processing')).toHaveLength(0)
    expect(await eventsOf(ctx, payment.id, 'payment.failed')).toHaveLength(0)
    expect((await inboundRows(latePaid.id))[0]?.outcome).toBe('ignored')
  })

  test('out of order on a crypto invoice: confirmed before paid leaves it SUCCEEDED', async () => {
    const { invoice, payment } = await pendingSandboxPayment('CRYPTO')
    const confirmed = await deliver(sandboxEvent('crypto.confirmed', payment))
    expect(confirmed.body.events[0]?.outcome).toBe('applied')
    const paid = await deliver(sandboxEvent('crypto.paid', payment))
    expect(paid.body.events[0]?.outcome).toBe('ignored')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('in order on a crypto invoice: paid (PROCESSING) then confirmed (SUCCEEDED)', async () => {
    const { invoice, payment } = await pendingSandboxPayment('CRYPTO')
    expect((await deliver(sandboxEvent('crypto.paid', payment))).body.events[0]?.outcome).toBe(
      'applied',
    )
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
    const repeat = await deliver(sandboxEvent('crypto.paid', payment))
    expect(repeat.body.events[0]?.outcome).toBe('repeat')
    expect((await deliver(sandboxEvent('crypto.confirmed', payment))).status).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('an event for an unknown payment answers 200 with outcome unknown_payment', async () => {
    const { payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment, {
      payment_id: 'pay_00000000000000000000000000',
      session_id: 'sbs_unknown',
    })
    const res = await deliver(event)
    expect(res.status).toBe(200)
    expect(res.body.events).toEqual([
      { id: event.id, type: 'checkout.completed', outcome: 'unknown_payment' },
    ])
    expect((await inboundRows(event.id))[0]?.outcome).toBe('unknown_payment')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })

  test("another tenant's payment is unknown here, even when named by id", async () => {
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'Other', email: 'other@example.com' },
      { key: other.key },
    )
    const theirInvoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '100.00' }],
      },
      { key: other.key },
    )
    await ctx.post(`/v1/invoices/${theirInvoice.body.id}/finalize`, {}, { key: other.key })
    const theirs = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: theirInvoice.body.id,
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'sandbox',
        amount: '100.00',
        currency: 'usd',
      },
      { key: other.key },
    )
    expect(theirs.body.payment_status).toBe('PENDING')
    // Signed with the main tenant's secret and sent to the main tenant's endpoint.
    const res = await deliver(sandboxEvent('checkout.completed', theirs.body))
    expect(res.body.events[0]?.outcome).toBe('unknown_payment')
    const shown = await ctx.get<PaymentBody>(`/v1/payments/${theirs.body.id}`, { key: other.key })
    expect(shown.body.payment_status).toBe('PENDING')
  })

  test('a sandbox event cannot complete a payment of another rail (offline)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const offline = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
      process_payment: false,
    })
    expect(offline.body.payment_status).toBe('INITIATED')
    const res = await deliver(sandboxEvent('checkout.completed', offline.body))
    expect(res.body.events[0]?.outcome).toBe('unknown_payment')
    expect((await getPayment(ctx, offline.body.id)).payment_status).toBe('INITIATED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })

  test('an event type the sandbox does not map is acknowledged and changes nothing', async () => {
    const { payment } = await pendingSandboxPayment()
    const event = sandboxEvent('customer.updated', payment)
    const res = await deliver(event)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ received: true, events: [] })
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })

  test('the route is served under /api/v1 too and needs no API key', async () => {
    const { payment } = await pendingSandboxPayment()
    const body = JSON.stringify(sandboxEvent('checkout.completed', payment))
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/api/v1/webhooks/sandbox/${ctx.main.tenant.id}/${ctx.main.test.id}`,
      headers: {
        'content-type': 'application/json',
        'payrail-signature': sign(sandboxSecret(ctx.main.test.id), body, nowSeconds()),
      },
      payload: body,
    })
    expect(res.statusCode).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })
})

describe('inbound sandbox webhooks: refusals', () => {
  async function expectUnchanged(payment: PaymentBody, invoiceId: string, eventId: string) {
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    expect((await getInvoice(ctx, invoiceId)).amount_paid).toBe('0.00')
    expect(await inboundRows(eventId)).toHaveLength(0)
  }

  test.each<[string, (body: string) => DeliverOptions]>([
    ['a wrong secret', () => ({ secret: 'not-the-secret' })],
    ['the live environment secret', () => ({ secret: sandboxSecret(ctx.main.live.id) })],
    ['no signature header', () => ({ signature: null })],
    ['a malformed header', () => ({ signature: 'v1=abc' })],
    ['an empty v1', () => ({ signature: `t=${nowSeconds()},v1=` })],
    [
      'a signature of another body',
      () => ({ signature: sign(sandboxSecret(ctx.main.test.id), '{}', nowSeconds()) }),
    ],
  ])('%s is 400 validation_error and changes nothing', async (_name, options) => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const res = await deliver(event, options(JSON.stringify(event)))
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    await expectUnchanged(payment, invoice.id, event.id)
  })

  test('a tampered body (amount changed after signing) is 400', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const body = JSON.stringify(event)
    const signature = sign(sandboxSecret(ctx.main.test.id), body, nowSeconds())
    const tampered = body.replace('"amount_received":10000', '"amount_received":99999999')
    expect(tampered).not.toBe(body)
    const res = await deliver(tampered, { signature })
    expect(res.status).toBe(400)
    await expectUnchanged(payment, invoice.id, event.id)
  })

  test.each([
    ['301 s old', -301],
    ['301 s in the future', 301],
    ['an hour old', -3600],
  ])('a timestamp %s is 400', async (_name, offset) => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const res = await deliver(event, { timestamp: nowSeconds() + offset })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    await expectUnchanged(payment, invoice.id, event.id)
  })

  test('a timestamp 299 s old is still accepted', async () => {
    const { payment } = await pendingSandboxPayment()
    const res = await deliver(sandboxEvent('checkout.completed', payment), {
      timestamp: nowSeconds() - 299,
    })
    expect(res.status).toBe(200)
    expect(res.body.events[0]?.outcome).toBe('applied')
  })

  test('a delivery signed now and replayed after the clock moved 301 s is 400', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const signedAt = nowSeconds()
    ctx.clock.advance(301_000)
    try {
      const res = await deliver(event, { timestamp: signedAt })
      expect(res.status).toBe(400)
      await expectUnchanged(payment, invoice.id, event.id)
    } finally {
      ctx.clock.advance(-301_000)
    }
  })

  test.each<[string, () => DeliverOptions]>([
    ['an unknown tenant', () => ({ tenantId: 'ten_00000000000000000000000000' })],
    ['an unknown environment', () => ({ environmentId: 'env_00000000000000000000000000' })],
    [
      "another tenant's environment under this tenant",
      () => ({ environmentId: other.test.id, secret: sandboxSecret(other.test.id) }),
    ],
    ['an unknown gateway', () => ({ gateway: 'paypal' })],
    ['the external gateway, not connected', () => ({ gateway: 'external' })],
  ])('%s is 404 not_found', async (_name, options) => {
    const { invoice, payment } = await pendingSandboxPayment()
    const event = sandboxEvent('checkout.completed', payment)
    const res = await deliver(event, options())
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
    await expectUnchanged(payment, invoice.id, event.id)
  })

  // DESIGN names the platform's path among the inbound webhooks: Payrail's own rails have
  // one, which says they take none (their payments settle inside Payrail's transactions).
  test.each(['platform', 'offline'])(
    'the %s rail takes no webhooks: 422 not_supported',
    async (gateway) => {
      const { invoice, payment } = await pendingSandboxPayment()
      const event = sandboxEvent('checkout.completed', payment)
      const res = await deliver(event, { gateway })
      expect(res.status).toBe(422)
      expect(res.body.error.code).toBe('not_supported')
      await expectUnchanged(payment, invoice.id, event.id)
    },
  )

  test('malformed JSON with a valid signature is 400', async () => {
    const res = await deliver('{"id": "sbevt_x", "type": ')
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('JSON that is not a sandbox event (no data.payment_id) is 400', async () => {
    const res = await deliver(JSON.stringify({ id: 'sbevt_y', type: 'checkout.completed' }))
    expect(res.status).toBe(400)
    expect(await inboundRows('sbevt_y')).toHaveLength(0)
  })

  test('an empty body with a valid signature is 400', async () => {
    const res = await deliver('')
    expect(res.status).toBe(400)
  })

  test('a form-encoded body is still verified on its raw bytes (400, not 415)', async () => {
    const body = 'a=1&b=2'
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/v1/webhooks/sandbox/${ctx.main.tenant.id}/${ctx.main.test.id}`,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'payrail-signature': sign(sandboxSecret(ctx.main.test.id), body, nowSeconds()),
      },
      payload: body,
    })
    expect(res.statusCode).toBe(400)
  })
})

describe('inbound external webhooks', () => {
  test('a connected external gateway applies a report signed with its webhook_secret', async () => {
    const tenant = await ctx.createTenantFixture('External tenant')
    const key = { key: tenant.key }
    const connected = await ctx.post(
      '/v1/gateway_connections',
      { gateway: 'external', credentials: { webhook_secret: 'ext-secret' } },
      key,
    )
    expect(connected.status).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'E', email: 'e@example.com' },
      key,
    )
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '40.00' }],
      },
      key,
    )
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, key)
    const payment = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        payment_method_type: 'EXTERNAL',
        amount: '40.00',
        currency: 'usd',
      },
      key,
    )
    expect(payment.body.payment_status).toBe('PENDING')
    const post = (body: string, signature: string) =>
      ctx.app.inject({
        method: 'POST',
        url: `/v1/webhooks/external/${tenant.tenant.id}/${tenant.test.id}`,
        headers: { 'content-type': 'application/json', 'x-signature': signature },
        payload: body,
      })
    const report = JSON.stringify({
      event_id: 'ext_evt_1',
      payment_id: payment.body.id,
      status: 'succeeded',
    })
    const bad = await post(report, 'sha256=00')
    expect(bad.statusCode).toBe(400)
    const good = await post(
      report,
      `sha256=${createHmac('sha256', 'ext-secret').update(report).digest('hex')}`,
    )
    expect(good.statusCode).toBe(200)
    expect(good.json<Received>().events[0]?.outcome).toBe('applied')
    const shown = await ctx.get<PaymentBody>(`/v1/payments/${payment.body.id}`, key)
    expect(shown.body.payment_status).toBe('SUCCEEDED')
  })
})

describe('sandbox delivery retries', () => {
  test('when the loopback delivery fails, a deliver_sandbox_webhook job holds the signed event', async () => {
    const { invoice, payment } = await pendingSandboxPayment()
    const down = Fastify()
    down.all('/*', async (_request, reply) => reply.code(503).send({ down: true }))
    await down.ready()
    ctx.deps.loopback.bind(down)
    try {
      const page = await submitCard(ctx, sessionOf(payment), '4242424242424242')
      expect(page.statusCode).toBe(200)
    } finally {
      ctx.deps.loopback.bind(ctx.app)
      await down.close()
    }
    // The provider took the money but Payrail has not heard yet.
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')

    const { rows } = await ctx.pool.query<{
      payload: { path: string; body: string }
      max_attempts: number
    }>(
      `select j.payload, j.max_attempts
         from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id
        where t.identifier = 'deliver_sandbox_webhook'`,
    )
    const jobs = rows.filter(
      (row) => (JSON.parse(row.payload.body) as SandboxEvent).data.payment_id === payment.id,
    )
    expect(jobs).toHaveLength(1)
    const job = jobs[0]
    if (!job) throw new Error('no job')
    expect(job.payload.path).toBe(`/v1/webhooks/sandbox/${ctx.main.tenant.id}/${ctx.main.test.id}`)
    expect(job.max_attempts).toBe(25)
    const event = JSON.parse(job.payload.body) as SandboxEvent
    expect(event).toMatchObject({
      type: 'checkout.completed',
      data: { payment_id: payment.id, session_id: payment.gateway_tracking_id, amount: 10000 },
    })

    // What the retry does: re-sign the stored body and deliver it.
    const retried = await deliver(job.payload.body)
    expect(retried.status).toBe(200)
    expect(retried.body.events[0]?.outcome).toBe('applied')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
    expect((await deliver(job.payload.body)).body.events[0]?.outcome).toBe('duplicate')
  })
})

describe('two Payrail processes', () => {
  test('the same event sent to two apps at once is applied once', async () => {
    const second = await ctx.buildSecondApp()
    try {
      const { invoice, payment } = await pendingSandboxPayment()
      const event = sandboxEvent('checkout.completed', payment)
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => deliver(event, { app: i % 2 ? second : ctx.app })),
      )
      expect(results.every((r) => r.status === 200)).toBe(true)
      expect(results.filter((r) => r.body.events[0]?.outcome === 'applied')).toHaveLength(1)
      expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
      expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
    } finally {
      ctx.deps.loopback.bind(ctx.app)
    }
  })
})
