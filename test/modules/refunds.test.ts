import { createHmac } from 'node:crypto'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { SandboxEvent } from '../../src/gateways/sandbox/sandbox-provider.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { createCustomer, eventsOf, finalizedInvoice, type List } from '../fixtures.ts'
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
  offlinePayment,
  type PaymentBody,
  payrailLockWaits,
  type RefundBody,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'
import { connectStripeEmulator, paidStripeLink } from '../stripe-helpers.ts'

interface BalanceTransactionBody {
  type: string
  amount: string
  balance_after: string
  source_type: string | null
  source_id: string | null
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other tenant')
})
afterAll(() => ctx.close())

/** Until `n` of Payrail's statements wait on a row lock. */
async function waitForLockWaits(n: number) {
  for (let i = 0; i < 400 && (await payrailLockWaits(ctx)) < n; i++)
    await new Promise((resolve) => setTimeout(resolve, 5))
  expect(await payrailLockWaits(ctx)).toBeGreaterThanOrEqual(n)
}

function refund(paymentId: string, body: Record<string, unknown> = {}, key?: string | null) {
  return ctx.post<RefundBody>(
    `/v1/payments/${paymentId}/refunds`,
    body,
    key === undefined ? {} : { key },
  )
}

function errorOf(res: { body: unknown }): ErrorBody['error'] {
  return (res.body as ErrorBody).error
}

async function refundsOfPayment(paymentId: string) {
  const res = await ctx.get<List<RefundBody>>(`/v1/refunds?payment_id=${paymentId}&limit=1000`)
  expect(res.status).toBe(200)
  return res.body
}

/** A 100.00 invoice paid on the sandbox hosted checkout with the 4242 card. */
async function sandboxLinkPayment(body: Record<string, unknown> = {}) {
  const { customer, invoice } = await invoiceToPay(ctx)
  const created = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'sandbox',
    amount: '100.00',
    ...body,
  })
  expect(created.status).toBe(201)
  const page = await submitCard(ctx, sessionOf(created.body), '4242424242424242')
  expect(page.statusCode).toBe(200)
  const payment = await getPayment(ctx, created.body.id)
  expect(payment.payment_status).toBe('SUCCEEDED')
  return { customer, invoice, payment }
}

async function customerToken(customerId: string) {
  const res = await ctx.post<{ token: string }>(`/v1/customers/${customerId}/tokens`)
  expect(res.status).toBe(201)
  return res.body.token
}

/** Signs a body the way the sandbox provider does: `t=<unix>,v1=<hex hmac of "t.body">`. */
function sandboxSignature(body: string, timestamp: number) {
  const secret = ctx.deps.secretBox.derive(`sandbox-webhook:${ctx.main.test.id}`)
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')
  return `t=${timestamp},v1=${mac}`
}

async function deliverSandbox(event: SandboxEvent | Record<string, unknown>) {
  const body = JSON.stringify(event)
  const now = Math.floor(ctx.clock.now().getTime() / 1000)
  const res = await ctx.app.inject({
    method: 'POST',
    url: `/v1/webhooks/sandbox/${ctx.main.tenant.id}/${ctx.main.test.id}`,
    headers: {
      'content-type': 'application/json',
      'payrail-signature': sandboxSignature(body, now),
    },
    payload: body,
  })
  return {
    status: res.statusCode,
    body: res.json<{ events: { id: string; type: string; outcome: string }[] }>(),
  }
}

describe('POST /v1/payments/:id/refunds', () => {
  test('full refund without an amount: 201 refund object, payment and invoice REFUNDED', async () => {
    const { invoice, payment } = await offlinePayment(ctx)
    const res = await refund(payment.id)
    expect(res.status).toBe(201)
    expect(res.body).toEqual({
      id: expect.stringMatching(/^re_/),
      object: 'refund',
      payment_id: payment.id,
      amount: '100.00',
      currency: 'usd',
      status: 'succeeded',
      reason: null,
      metadata: {},
      gateway_refund_id: null,
      failure_code: null,
      failure_message: null,
      created_at: ctx.clock.now().toISOString(),
      updated_at: ctx.clock.now().toISOString(),
    })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      current_state: 'refunded',
      amount_paid: '100.00',
      amount_refunded: '100.00',
      refunded_at: ctx.clock.now().toISOString(),
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_paid: '100.00',
      amount_refunded: '100.00',
    })
  })

  test('reason and metadata are kept on the refund', async () => {
    const { payment } = await offlinePayment(ctx)
    const res = await refund(payment.id, {
      amount: '12.34',
      reason: 'requested_by_customer',
      metadata: { ticket: 'T-1' },
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      amount: '12.34',
      reason: 'requested_by_customer',
      metadata: { ticket: 'T-1' },
    })
    const shown = await ctx.get<RefundBody>(`/v1/refunds/${res.body.id}`)
    expect(shown.status).toBe(200)
    expect(shown.body).toEqual(res.body)
  })

  test('partial refunds: PARTIALLY_REFUNDED until the rest (no amount) makes it REFUNDED', async () => {
    const { invoice, payment } = await offlinePayment(ctx)
    const first = await refund(payment.id, { amount: '30.00' })
    expect(first.status).toBe(201)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      current_state: 'partial_refund',
      amount_refunded: '30.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '30.00',
    })

    const second = await refund(payment.id, { amount: 20 })
    expect(second.status).toBe(201)
    expect(second.body.amount).toBe('20.00')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '50.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('50.00')

    const rest = await refund(payment.id)
    expect(rest.status).toBe(201)
    expect(rest.body.amount).toBe('50.00')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect((await refundsOfPayment(payment.id)).items.map((r) => r.amount).sort()).toEqual([
      '20.00',
      '30.00',
      '50.00',
    ])
  })

  test('more than is still refundable is 409 and writes nothing', async () => {
    const { invoice, payment } = await offlinePayment(ctx)
    expect((await refund(payment.id, { amount: '60.00' })).status).toBe(201)
    const eventsBefore = await eventsOf(ctx, payment.id)
    const invoiceEventsBefore = await eventsOf(ctx, invoice.id)

    const res = await refund(payment.id, { amount: '40.01' })
    expect(res.status).toBe(409)
    expect(errorOf(res).code).toBe('conflict')

    expect((await refundsOfPayment(payment.id)).pagination.total).toBe(1)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '60.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('60.00')
    expect(await eventsOf(ctx, payment.id)).toHaveLength(eventsBefore.length)
    expect(await eventsOf(ctx, invoice.id)).toHaveLength(invoiceEventsBefore.length)
    // Exactly what is left still goes through.
    expect((await refund(payment.id, { amount: '40.00' })).status).toBe(201)
  })

  test('the 409 names what is still refundable as a decimal string, like every API amount', async () => {
    const { payment } = await offlinePayment(ctx)
    await refund(payment.id, { amount: '60.00' })
    const res = await refund(payment.id, { amount: '50.00' })
    expect(res.status).toBe(409)
    expect(errorOf(res).details.refundable).toBe('40.00')
  })

  test('a refund of a fully refunded payment is 409 conflict (nothing left to refund)', async () => {
    const { payment } = await offlinePayment(ctx)
    expect((await refund(payment.id)).status).toBe(201)
    const again = await refund(payment.id, { amount: '1.00' })
    expect(again.status).toBe(409)
    expect(errorOf(again).code).toBe('conflict')
    const full = await refund(payment.id)
    expect(full.status).toBe(409)
    expect((await refundsOfPayment(payment.id)).pagination.total).toBe(1)
  })

  test.each([
    ['zero', '0.00'],
    ['negative', '-5.00'],
    ['too many decimals', '1.001'],
    ['not a number', 'ten'],
  ])('amount %s is 400 validation_error', async (_name, amount) => {
    const { payment } = await offlinePayment(ctx)
    const res = await refund(payment.id, { amount })
    expect(res.status).toBe(400)
    expect(errorOf(res).code).toBe('validation_error')
    expect((await refundsOfPayment(payment.id)).pagination.total).toBe(0)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })

  test('an unknown payment is 404', async () => {
    const res = await refund('pay_00000000000000000000000000')
    expect(res.status).toBe(404)
    expect(errorOf(res).code).toBe('not_found')
  })

  test('a PENDING payment (link not paid yet) is 422 invalid_state_transition', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const pending = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
    })
    expect(pending.body.payment_status).toBe('PENDING')
    const res = await refund(pending.body.id)
    expect(res.status).toBe(422)
    expect(errorOf(res).code).toBe('invalid_state_transition')
    expect((await refundsOfPayment(pending.body.id)).pagination.total).toBe(0)
    expect((await getPayment(ctx, pending.body.id)).payment_status).toBe('PENDING')
  })

  test('an INITIATED payment (not processed) is 422, and so is a CANCELLED one', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const initiated = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
      process_payment: false,
    })
    expect(initiated.body.payment_status).toBe('INITIATED')
    const res = await refund(initiated.body.id, { amount: '10.00' })
    expect(res.status).toBe(422)
    expect(errorOf(res).code).toBe('invalid_state_transition')

    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${initiated.body.id}/cancel`)
    expect(cancelled.body.payment_status).toBe('CANCELLED')
    expect((await refund(initiated.body.id)).status).toBe(422)
    expect((await refundsOfPayment(initiated.body.id)).pagination.total).toBe(0)
  })

  test('an EXTERNAL payment is 422 not_supported (the third party refunds it)', async () => {
    const connection = await ctx.post('/v1/gateway_connections', {
      gateway: 'external',
      credentials: { webhook_secret: 'external-secret' },
    })
    expect([201, 409]).toContain(connection.status)
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '100.00',
    })
    expect(created.status).toBe(201)
    const res = await refund(created.body.id)
    expect(res.status).toBe(422)
    expect(errorOf(res).code).toBe('not_supported')
  })
})

describe('refunds by rail', () => {
  test('OFFLINE: the refund is recorded at once, no gateway involved', async () => {
    const { payment } = await offlinePayment(ctx)
    const res = await refund(payment.id, { amount: '25.00' })
    expect(res.body).toMatchObject({ status: 'succeeded', gateway_refund_id: null })
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('25.00')
  })

  test('CREDITS: the refund credits the balance back through the ledger (type refund)', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    const funded = await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '100.00',
      currency: 'usd',
    })
    expect(funded.status).toBe(201)
    const paid = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '100.00',
    })
    expect(paid.status).toBe(201)
    expect(paid.body).toMatchObject({ payment_status: 'SUCCEEDED', payment_gateway: 'platform' })
    const balance = async () =>
      (await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customer.id}`)).body
        .balances.usd
    expect(await balance()).toBe('0.00')

    const partial = await refund(paid.body.id, { amount: '40.00' })
    expect(partial.status).toBe(201)
    expect(partial.body.status).toBe('succeeded')
    expect(await balance()).toBe('40.00')
    const ledger = await ctx.get<List<BalanceTransactionBody>>(
      `/v1/customers/${customer.id}/balance_transactions?type=refund`,
    )
    expect(ledger.body.items).toEqual([
      expect.objectContaining({
        type: 'refund',
        amount: '40.00',
        balance_after: '40.00',
        source_type: 'refund',
        source_id: partial.body.id,
      }),
    ])

    const rest = await refund(paid.body.id)
    expect(rest.body.amount).toBe('60.00')
    expect(await balance()).toBe('100.00')
    expect(await getPayment(ctx, paid.body.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    const all = await ctx.get<List<BalanceTransactionBody>>(
      `/v1/customers/${customer.id}/balance_transactions?limit=1000`,
    )
    const sum = all.body.items.reduce((total, t) => total + Math.round(Number(t.amount) * 100), 0)
    expect(sum).toBe(10000)
    expect(all.body.items.filter((t) => t.type === 'refund')).toHaveLength(2)
  })

  test('sandbox link: the refund goes through the gateway, succeeds, and its webhook applies it once', async () => {
    const { invoice, payment } = await sandboxLinkPayment()
    const res = await refund(payment.id, { amount: '25.00' })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      status: 'succeeded',
      amount: '25.00',
      gateway_refund_id: expect.stringMatching(/^sbre_/),
    })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '25.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('25.00')
    expect(await eventsOf(ctx, res.body.id, 'refund.succeeded')).toHaveLength(1)

    // The provider's refund.succeeded notification reached Payrail's inbound route.
    const received = await ctx.db
      .selectFrom('webhook_events')
      .selectAll()
      .where('environment_id', '=', ctx.main.test.id)
      .where('gateway', '=', 'sandbox')
      .where('event_type', '=', 'refund.succeeded')
      .execute()
    const mine = received.filter(
      (row) => (row.payload as SandboxEvent).data.refund_id === res.body.id,
    )
    expect(mine).toHaveLength(1)
    expect(mine[0]?.handled_at).not.toBeNull()

    // The same notification again is a duplicate; another one for the same refund is a no-op.
    const stored = mine[0]?.payload as SandboxEvent
    const duplicate = await deliverSandbox(stored)
    expect(duplicate.status).toBe(200)
    expect(duplicate.body.events[0]?.outcome).toBe('duplicate')
    const late = await deliverSandbox({ ...stored, id: `${stored.id}_late` })
    expect(late.status).toBe(200)
    expect(late.body.events[0]?.outcome).toBe('repeat')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '25.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('25.00')
    expect(await eventsOf(ctx, res.body.id, 'refund.succeeded')).toHaveLength(1)

    const rest = await refund(payment.id)
    expect(rest.body).toMatchObject({ status: 'succeeded', amount: '75.00' })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  test('sandbox saved card (CARD, off-session): refunded through the gateway', async () => {
    const { customer } = await sandboxLinkPayment({ save_card_and_make_default: true })
    const invoice = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'Next month', quantity: 1, unit_amount: '30.00' }],
    })
    const card = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'sandbox',
      amount: '30.00',
    })
    expect(card.body.payment_status).toBe('SUCCEEDED')
    const res = await refund(card.body.id)
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      status: 'succeeded',
      amount: '30.00',
      gateway_refund_id: expect.stringMatching(/^sbre_/),
    })
    expect(await getPayment(ctx, card.body.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '30.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '30.00',
    })
  })
})

describe('GET /v1/refunds', () => {
  test('filters by payment_id and status, paginates, newest first', async () => {
    const { payment } = await offlinePayment(ctx)
    const ids: string[] = []
    for (const amount of ['1.00', '2.00', '3.00', '4.00', '5.00']) {
      ctx.clock.advance(1000)
      const res = await refund(payment.id, { amount })
      expect(res.status).toBe(201)
      ids.push(res.body.id)
    }
    const all = await refundsOfPayment(payment.id)
    expect(all.pagination.total).toBe(5)
    expect(all.items.map((r) => r.id)).toEqual([...ids].reverse())
    expect(all.items.every((r) => r.payment_id === payment.id)).toBe(true)

    const page = await ctx.get<List<RefundBody>>(
      `/v1/refunds?payment_id=${payment.id}&limit=2&offset=2`,
    )
    expect(page.body.pagination).toEqual({ total: 5, limit: 2, offset: 2 })
    expect(page.body.items.map((r) => r.id)).toEqual([ids[2], ids[1]])

    const pageByNumber = await ctx.get<List<RefundBody>>(
      `/v1/refunds?payment_id=${payment.id}&size=2&page=2`,
    )
    expect(pageByNumber.body.items.map((r) => r.id)).toEqual([ids[0]])

    const succeeded = await ctx.get<List<RefundBody>>(
      `/v1/refunds?payment_id=${payment.id}&status=succeeded`,
    )
    expect(succeeded.body.pagination.total).toBe(5)
    const pending = await ctx.get<List<RefundBody>>(
      `/v1/refunds?payment_id=${payment.id}&status=pending`,
    )
    expect(pending.body.pagination.total).toBe(0)

    const oldestFirst = await ctx.get<List<RefundBody>>(
      `/v1/refunds?payment_id=${payment.id}&sort=created_at`,
    )
    expect(oldestFirst.body.items.map((r) => r.id)).toEqual(ids)
  })

  test('without filters lists refunds of every payment of the environment', async () => {
    const a = await offlinePayment(ctx)
    const b = await offlinePayment(ctx)
    const ra = await refund(a.payment.id, { amount: '1.00' })
    const rb = await refund(b.payment.id, { amount: '1.00' })
    const list = await ctx.get<List<RefundBody>>('/v1/refunds?limit=1000')
    const listed = list.body.items.map((r) => r.id)
    expect(listed).toContain(ra.body.id)
    expect(listed).toContain(rb.body.id)
  })

  test('an unknown status filter is 400', async () => {
    const res = await ctx.get('/v1/refunds?status=bogus')
    expect(res.status).toBe(400)
    expect(errorOf(res).code).toBe('validation_error')
  })

  test('GET /v1/refunds/:id returns the refund; an unknown id is 404', async () => {
    const { payment } = await offlinePayment(ctx)
    const created = await refund(payment.id, { amount: '9.99' })
    const shown = await ctx.get<RefundBody>(`/v1/refunds/${created.body.id}`)
    expect(shown.status).toBe(200)
    expect(shown.body).toEqual(created.body)
    const missing = await ctx.get('/v1/refunds/re_00000000000000000000000000')
    expect(missing.status).toBe(404)
    expect(errorOf(missing).code).toBe('not_found')
  })
})

describe('refund events', () => {
  test('refund.created and refund.succeeded per refund; payment.partially_refunded then payment.refunded', async () => {
    const { invoice, payment } = await offlinePayment(ctx)
    const partial = await refund(payment.id, { amount: '10.00' })
    const created = await eventsOf(ctx, partial.body.id, 'refund.created')
    expect(created).toHaveLength(1)
    expect(created[0]).toMatchObject({
      object_type: 'refund',
      object_id: partial.body.id,
      data: { object: { id: partial.body.id, amount: '10.00', payment_id: payment.id } },
    })
    const succeeded = await eventsOf(ctx, partial.body.id, 'refund.succeeded')
    expect(succeeded).toHaveLength(1)
    expect(succeeded[0]?.data.object).toMatchObject({ status: 'succeeded' })

    const partially = await eventsOf(ctx, payment.id, 'payment.partially_refunded')
    expect(partially).toHaveLength(1)
    expect(partially[0]?.data.object).toMatchObject({
      id: payment.id,
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '10.00',
    })
    expect(await eventsOf(ctx, payment.id, 'payment.refunded')).toHaveLength(0)

    await refund(payment.id)
    const refunded = await eventsOf(ctx, payment.id, 'payment.refunded')
    expect(refunded).toHaveLength(1)
    expect(refunded[0]?.data.object).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(await eventsOf(ctx, invoice.id, 'invoice.refunded')).toHaveLength(2)
    expect(await eventsOf(ctx, payment.id, 'refund.created')).toHaveLength(0)
  })
})

describe('concurrent refunds', () => {
  test('20 concurrent partial refunds of 10.00 on 100.00: exactly 10 succeed, never more than paid', async () => {
    const { invoice, payment } = await offlinePayment(ctx)
    const results = await Promise.all(
      Array.from({ length: 20 }, () => refund(payment.id, { amount: '10.00' })),
    )
    const ok = results.filter((r) => r.status === 201)
    const refused = results.filter((r) => r.status !== 201)
    expect(ok).toHaveLength(10)
    expect(refused).toHaveLength(10)
    for (const r of refused) expect([409, 422]).toContain(r.status)

    const sum = ok.reduce((total, r) => total + Math.round(Number(r.body.amount) * 100), 0)
    expect(sum).toBe(10000)
    const listed = await refundsOfPayment(payment.id)
    expect(listed.pagination.total).toBe(10)
    expect(listed.items.every((r) => r.status === 'succeeded' && r.amount === '10.00')).toBe(true)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(await eventsOf(ctx, payment.id, 'payment.partially_refunded')).toHaveLength(9)
    expect(await eventsOf(ctx, payment.id, 'payment.refunded')).toHaveLength(1)
  })

  test('20 concurrent full refunds: exactly one succeeds', async () => {
    const { payment } = await offlinePayment(ctx)
    const results = await Promise.all(Array.from({ length: 20 }, () => refund(payment.id)))
    const ok = results.filter((r) => r.status === 201)
    expect(ok).toHaveLength(1)
    expect(ok[0]?.body.amount).toBe('100.00')
    for (const r of results.filter((x) => x.status !== 201)) expect([409, 422]).toContain(r.status)
    expect((await refundsOfPayment(payment.id)).pagination.total).toBe(1)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('100.00')
  })

  test('a CREDITS refund beside a CREDITS payment of the same invoice: both go through, in the same lock order', async () => {
    const customer = await createCustomer(ctx)
    const funded = await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '100.00',
      currency: 'usd',
    })
    expect(funded.status).toBe(201)
    const invoice = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'Plan', quantity: 1, unit_amount: '50.00' }],
    })
    const credits = (amount: string) =>
      createPayment(ctx, { destination_id: invoice.id, payment_method_type: 'CREDITS', amount })
    const first = await credits('20.00')
    expect(first.status, first.text).toBe(201)
    // The payment waits on the invoice, then the refund (which holds the first payment): in
    // the other lock order they would deadlock, and PostgreSQL would fail one of them.
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from invoices where id = $1 for update', [invoice.id])
      const second = credits('30.00')
      await waitForLockWaits(1)
      const refunded = refund(first.body.id)
      await waitForLockWaits(2)
      await holder.query('commit')
      const [paid, back] = await Promise.all([second, refunded])
      expect(paid.status, paid.text).toBe(201)
      expect(back.status, back.text).toBe(201)
    } finally {
      holder.release()
    }
    const shown = await ctx.get<{ balances: Record<string, string> }>(
      `/v1/customers/${customer.id}`,
    )
    expect(shown.body.balances.usd).toBe('70.00')
    // Paid in full by the second payment (first on the lock), then refunded: not reopened.
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '50.00',
      amount_refunded: '20.00',
      payment_status: 'PARTIALLY_REFUNDED',
    })
  })

  test('10 concurrent sandbox refunds of 20.00 on 100.00: exactly 5 succeed', async () => {
    const { invoice, payment } = await sandboxLinkPayment()
    const results = await Promise.all(
      Array.from({ length: 10 }, () => refund(payment.id, { amount: '20.00' })),
    )
    const ok = results.filter((r) => r.status === 201)
    expect(ok).toHaveLength(5)
    expect(ok.every((r) => r.body.status === 'succeeded')).toBe(true)
    const listed = await refundsOfPayment(payment.id)
    expect(listed.pagination.total).toBe(5)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('100.00')
  })
})

describe('refund security', () => {
  test("another tenant's payment and refund are 404, and its list does not show them", async () => {
    const { payment } = await offlinePayment(ctx)
    const created = await refund(payment.id, { amount: '5.00' })
    const attempt = await refund(payment.id, { amount: '5.00' }, other.key)
    expect(attempt.status).toBe(404)
    expect(errorOf(attempt).code).toBe('not_found')
    expect((await ctx.get(`/v1/refunds/${created.body.id}`, { key: other.key })).status).toBe(404)
    const list = await ctx.get<List<RefundBody>>('/v1/refunds?limit=1000', { key: other.key })
    expect(list.status).toBe(200)
    expect(list.body.items.map((r) => r.id)).not.toContain(created.body.id)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('5.00')
  })

  test("the live environment's key cannot see or refund a test payment (404)", async () => {
    const { payment } = await offlinePayment(ctx)
    const created = await refund(payment.id, { amount: '5.00' })
    expect((await refund(payment.id, {}, ctx.main.liveKey)).status).toBe(404)
    expect(
      (await ctx.get(`/v1/refunds/${created.body.id}`, { key: ctx.main.liveKey })).status,
    ).toBe(404)
  })

  test('a customer token is 403 on every refund route, even for its own payment', async () => {
    const { customer, payment } = await offlinePayment(ctx)
    const created = await refund(payment.id, { amount: '5.00' })
    const token = await customerToken(customer.id)
    const attempt = await refund(payment.id, { amount: '5.00' }, token)
    expect(attempt.status).toBe(403)
    expect(errorOf(attempt).code).toBe('forbidden')
    expect((await ctx.get('/v1/refunds', { key: token })).status).toBe(403)
    expect((await ctx.get(`/v1/refunds/${created.body.id}`, { key: token })).status).toBe(403)
    expect((await refundsOfPayment(payment.id)).pagination.total).toBe(1)
  })

  test('no key is 401 on every refund route', async () => {
    const { payment } = await offlinePayment(ctx)
    const attempt = await refund(payment.id, {}, null)
    expect(attempt.status).toBe(401)
    expect(errorOf(attempt).code).toBe('unauthorized')
    expect((await ctx.get('/v1/refunds', { key: null })).status).toBe(401)
    expect((await ctx.get('/v1/refunds/re_x', { key: null })).status).toBe(401)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })
})

describe('refunds through Stripe', () => {
  let sctx: TestContext
  let stripe: StripeEmulator
  beforeAll(async () => {
    sctx = await createTestContext({ start: new Date() })
    stripe = await connectStripeEmulator(sctx)
  })
  afterAll(async () => {
    await stripe?.close()
    await sctx?.close()
  })

  describe('why a refund failed', () => {
    // A failed refund keeps its provider's code in `failure_code` and a sentence in
    // `failure_message`. Before, `failure_code` was never written: Stripe's `failure_reason`, a
    // code, went to `failure_message`, and a refused refund call's error code was dropped.

    /** A 100.00 invoice paid with a Stripe link. */
    async function paidLink() {
      const customer = await createCustomer(sctx)
      const invoice = await finalizedInvoice(sctx, customer.id)
      return paidStripeLink(sctx, stripe, invoice.id)
    }

    test("a refund Stripe fails keeps Stripe's failure_reason as failure_code, a sentence as failure_message", async () => {
      const payment = await paidLink()
      // The refund call never reaches Stripe (pending); Stripe then reports it failed.
      stripe.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/refunds' })
      const pending = await sctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
        amount: '30.00',
      })
      expect(pending.body.status).toBe('pending')
      stripe.clearFaults()
      stripe.sendEvent('refund.failed', {
        id: 're_failed_expired_card',
        object: 'refund',
        amount: 3000,
        currency: 'usd',
        status: 'failed',
        failure_reason: 'expired_or_canceled_card',
        payment_intent: String(payment.gateway_payment_id),
        metadata: { payrail_refund_id: pending.body.id },
        created: Math.floor(sctx.clock.now().getTime() / 1000),
      })
      await stripe.waitForDeliveries()
      const shown = (await sctx.get<RefundBody>(`/v1/refunds/${pending.body.id}`)).body
      expect(shown).toMatchObject({
        status: 'failed',
        failure_code: 'expired_or_canceled_card',
        failure_message: "The customer's card has expired or was canceled",
      })
      const failed = await eventsOf(sctx, pending.body.id, 'refund.failed')
      expect(failed).toHaveLength(1)
      expect(failed[0]?.data.object).toMatchObject({
        status: 'failed',
        failure_code: 'expired_or_canceled_card',
      })
      expect(await getPayment(sctx, payment.id)).toMatchObject({
        payment_status: 'REFUND_FAILED',
        amount_refunded: '0.00',
      })
    })

    test("a refund call Stripe refuses keeps Stripe's error code (charge_already_refunded)", async () => {
      const payment = await paidLink()
      // All of it is refunded in Stripe's dashboard; Payrail has not heard of it yet.
      stripe.setWebhookDelivery('manual')
      const client = new Stripe(stripe.secretKey, stripe.stripeConfig())
      await client.refunds.create({ payment_intent: String(payment.gateway_payment_id) })
      const refused = await sctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
        amount: '30.00',
      })
      expect(refused.status, refused.text).toBe(201)
      expect(refused.body).toMatchObject({
        status: 'failed',
        failure_code: 'charge_already_refunded',
        failure_message: expect.stringContaining('has already been refunded'),
      })
      // The dashboard's refund, delivered now, is recorded.
      await stripe.deliverOutbox()
      stripe.setWebhookDelivery('auto')
      await stripe.waitForDeliveries()
      expect(await getPayment(sctx, payment.id)).toMatchObject({
        payment_status: 'REFUNDED',
        amount_refunded: '100.00',
      })
    })
  })

  describe('two refunds pending at once', () => {
    // docs/webhooks.md: `payment.updated` announces amounts that change without a move. The
    // first refund to succeed raises amount_refunded while the payment stays PENDING_REFUND.
    test('the first to succeed raises amount_refunded without a move, and payment.updated says so', async () => {
      const customer = await createCustomer(sctx)
      const invoice = await finalizedInvoice(sctx, customer.id)
      const payment = await paidStripeLink(sctx, stripe, invoice.id)
      /** A refund whose call never reaches Stripe: pending until Stripe reports it. */
      const pendingRefund = async (amount: string) => {
        stripe.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/refunds' })
        const res = await sctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, { amount })
        expect(res.body.status, res.text).toBe('pending')
        stripe.clearFaults()
        return res.body
      }
      const succeeded = async (refund: RefundBody, cents: number) => {
        stripe.sendEvent('refund.updated', {
          id: `re_${refund.id}`,
          object: 'refund',
          amount: cents,
          currency: 'usd',
          status: 'succeeded',
          payment_intent: String(payment.gateway_payment_id),
          metadata: { payrail_refund_id: refund.id },
          created: Math.floor(sctx.clock.now().getTime() / 1000),
        })
        await stripe.waitForDeliveries()
      }
      const first = await pendingRefund('30.00')
      const second = await pendingRefund('20.00')
      expect((await getPayment(sctx, payment.id)).payment_status).toBe('PENDING_REFUND')

      await succeeded(first, 3000)
      expect(await getPayment(sctx, payment.id)).toMatchObject({
        payment_status: 'PENDING_REFUND',
        amount_refunded: '30.00',
      })
      const updated = await eventsOf(sctx, payment.id, 'payment.updated')
      expect(updated).toHaveLength(1)
      expect(updated[0]?.data.object).toMatchObject({
        id: payment.id,
        payment_status: 'PENDING_REFUND',
        amount_refunded: '30.00',
      })

      // The last to settle moves the payment; its move's event says so, not another update.
      await succeeded(second, 2000)
      expect(await getPayment(sctx, payment.id)).toMatchObject({
        payment_status: 'PARTIALLY_REFUNDED',
        amount_refunded: '50.00',
      })
      expect(await eventsOf(sctx, payment.id, 'payment.updated')).toHaveLength(1)
      const moved = await eventsOf(sctx, payment.id, 'payment.partially_refunded')
      expect(moved).toHaveLength(1)
      expect(moved[0]?.data.object).toMatchObject({ amount_refunded: '50.00' })
    })
  })
})
