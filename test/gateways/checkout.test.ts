import { Checkout } from 'checkout-sdk-node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { adminAccess } from '../../src/core/principal.ts'
import { chargeDueInvoices, RETRY_AFTER_MS } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { withdrawOvertakenPages } from '../../src/jobs/tasks/withdraw-overtaken-pages.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { countAutomaticAttempts } from '../../src/modules/payments/automatic.ts'
import { askRefundAgain } from '../../src/modules/payments/refunds.ts'
import { UNKNOWN_OUTCOME_RETRY_WINDOW_MS } from '../../src/modules/payments/service.ts'
import { defaultCheckoutCard } from '../checkout-helpers.ts'
import type { CheckoutEmulator } from '../emulators/checkout/emulator.ts'
import { insertPendingPayment, storeCard } from '../emulators/checkout/payments.ts'
import {
  type CheckoutTestCard,
  ckoSignature,
  startCheckoutEmulator,
} from '../emulators/checkout/server.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  expectPaidInFull,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  payOffline,
  type RefundBody,
} from '../payments-helpers.ts'
import { statementsOf } from '../statements.ts'

let ctx: TestContext
let emulator: CheckoutEmulator
let webhookPath: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  webhookPath = `/v1/webhooks/checkout/${ctx.main.tenant.id}/${ctx.main.test.id}`
  emulator = await startCheckoutEmulator({
    clock: ctx.clock,
    webhookUrl: `${address}${webhookPath}`,
  })
  const connection = await ctx.post('/v1/gateway_connections', {
    gateway: 'checkout',
    credentials: { secret_key: emulator.secretKey, signature_key: emulator.signatureKey },
    settings: { base_url: emulator.url },
  })
  expect(connection.status, connection.text).toBe(201)
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

/** A hosted payment of a new invoice, paid by card on Checkout.com's page and reported. */
async function paidHostedPayment() {
  const { invoice } = await invoiceToPay(ctx)
  const payment = await hostedPayment(invoice.id)
  const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
    card: '4242424242424242',
  })
  await followReturn(completion.redirectUrl)
  await emulator.waitForDeliveries()
  return { invoice, payment }
}

/** A Checkout.com hosted payment of the invoice, PENDING on its page (in `on`'s environment). */
async function hostedPayment(invoiceId: string, on: TestContext = ctx) {
  const res = await createPayment(on, {
    destination_id: invoiceId,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'checkout',
    amount: '100.00',
    success_url: 'https://merchant.example/thanks',
    cancel_url: 'https://merchant.example/cancel',
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body).toMatchObject({
    payment_status: 'PENDING',
    gateway_tracking_id: expect.stringMatching(/^hpp_/),
  })
  return res.body
}

interface PaymentMethodBody {
  id: string
  gateway: string
  gateway_payment_method_id: string
  card: { brand: string | null; last4: string | null } | null
  is_default: boolean
}

async function savedMethods(customerId: string) {
  const res = await ctx.get<{ items: PaymentMethodBody[] }>(
    `/v1/customers/${customerId}/payment_methods`,
  )
  expect(res.status, res.text).toBe(200)
  return res.body.items
}

async function eventCount(paymentId: string, type: string) {
  const res = await ctx.get<{ items: unknown[] }>(`/v1/events?object_id=${paymentId}&type=${type}`)
  return res.body.items.length
}

/** Posts a webhook body signed as Checkout.com signs it. */
async function deliverSigned(body: string) {
  return ctx.app.inject({
    method: 'POST',
    url: webhookPath,
    headers: {
      'content-type': 'application/json',
      'cko-signature': ckoSignature(body, emulator.signatureKey),
    },
    payload: body,
  })
}

/** Follows Checkout.com's redirect back to Payrail, as the customer's browser would. */
async function followReturn(redirectUrl: string | URL, on: TestContext = ctx) {
  const url = new URL(redirectUrl)
  return on.app.inject({ method: 'GET', url: `${url.pathname}${url.search}` })
}

describe('Checkout.com hosted payments, through checkout-sdk-node and the emulator', () => {
  test('paid on the hosted page → return verified with the API → SUCCEEDED, redirected to success_url', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    const back = await followReturn(completion.redirectUrl)
    expect(back.statusCode).toBe(303)
    expect(back.headers.location).toBe('https://merchant.example/thanks')
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      gateway_payment_id: completion.paymentId,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    // Nobody asked to save the card: none is kept.
    expect(await savedMethods(customer.id)).toEqual([])
  })

  test('a return to a payment already recorded OVERPAID goes to success_url: the money was taken', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    emulator.holdWebhooks()
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    // An earlier report recorded more than the amount (the state is the point here).
    await ctx.db
      .updateTable('payments')
      .set({ payment_status: 'OVERPAID', amount_paid: 12000n })
      .where('id', '=', payment.id)
      .execute()
    const back = await followReturn(completion.redirectUrl)
    expect(back.statusCode).toBe(303)
    expect(back.headers.location).toBe('https://merchant.example/thanks')
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
  })

  test('a declined card is an attempt: the page stays open, and a second card pays it', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const declined = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4544249167673670',
    })
    const back = await followReturn(declined.redirectUrl)
    expect(back.headers.location).toBe('https://merchant.example/cancel')
    await emulator.waitForDeliveries()
    const open = await getPayment(ctx, payment.id)
    expect(open.payment_status).toBe('PENDING')
    expect(open.attempts.filter((a) => a.status === 'failed')).toEqual([
      expect.objectContaining({ error_code: 'insufficient_funds' }),
    ])
    // Checkout.com keeps the page open: the customer's next card is money received.
    const paid = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: paid.paymentId,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('a forged cko-payment-id (another payment of the same amount) marks nothing paid', async () => {
    const { invoice: paidInvoice } = await invoiceToPay(ctx)
    const paid = await hostedPayment(paidInvoice.id)
    const real = emulator.completeHostedPayment(String(paid.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await emulator.waitForDeliveries()
    const { invoice } = await invoiceToPay(ctx)
    const victim = await hostedPayment(invoice.id)
    const forged = await ctx.app.inject({
      method: 'GET',
      url: `/v1/checkout/success?payment_id=${victim.id}&cko-payment-id=${real.paymentId}`,
    })
    expect(forged.statusCode).toBe(303)
    expect(forged.headers.location).toBe('https://merchant.example/cancel')
    expect(await getPayment(ctx, victim.id)).toMatchObject({ payment_status: 'PENDING' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
  })

  test('refunds go through Checkout.com and complete with the payment_refunded webhook', async () => {
    const { payment } = await paidHostedPayment()
    const refund = await ctx.post<{ id: string; status: string }>(
      `/v1/payments/${payment.id}/refunds`,
      { amount: '25.00' },
    )
    expect(refund.status, refund.text).toBe(201)
    await emulator.waitForDeliveries()
    const shown = await ctx.get<{ status: string }>(`/v1/refunds/${refund.body.id}`)
    expect(shown.body.status).toBe('succeeded')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '25.00',
    })
  })

  test("a refund made in Checkout.com's hub is recorded on the payment and its invoice", async () => {
    const { invoice, payment } = await paidHostedPayment()
    const paymentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    const cko = new Checkout(emulator.secretKey, emulator.sdkOptions())
    await cko.payments.refund(paymentId, { amount: 3000, reference: 'hub-refund' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '30.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('30.00')
    const refunds = await ctx.get<{ items: { amount: string; metadata: object }[] }>(
      `/v1/refunds?payment_id=${payment.id}`,
    )
    expect(refunds.body.items).toEqual([
      expect.objectContaining({ amount: '30.00', metadata: { recorded_from: 'checkout' } }),
    ])
    // Only what is left can be refunded through Payrail.
    const tooMuch = await ctx.post(`/v1/payments/${payment.id}/refunds`, { amount: '80.00' })
    expect(tooMuch.status).toBe(409)
  })

  test('two refunds of one amount whose answers were lost: their webhooks wait for the ids, and each refund keeps its own', async () => {
    const { payment } = await paidHostedPayment()
    emulator.holdWebhooks()
    emulator.setWebhookRetry({ maxAttempts: 1 })
    emulator.timeoutNext({ count: 2, ms: 0, afterProcessing: true, pathPrefix: '/payments/' })
    const refunds: RefundBody[] = []
    for (let i = 0; i < 2; i++) {
      const res = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
        amount: '30.00',
      })
      expect(res.body).toMatchObject({ status: 'pending', gateway_refund_id: null })
      refunds.push(res.body)
    }
    try {
      // Checkout.com refunded both; its webhooks name neither of Payrail's refunds, and both
      // wait for an id: which is which cannot be told, so each is refused, to come again.
      const tries = await emulator.releaseWebhooks({ order: 'reverse' })
      expect(tries.map((t) => t.status)).toEqual([409, 409])
      // ask_refund_again gets each refund's action id (same idempotency key, same action).
      for (const refund of refunds) {
        await askRefundAgain(ctx.deps, {
          tenantId: ctx.main.tenant.id,
          environmentId: ctx.main.test.id,
          refundId: refund.id,
        })
      }
      for (const attempt of tries) expect((await deliverSigned(attempt.body)).statusCode).toBe(200)
    } finally {
      emulator.setWebhookRetry({ maxAttempts: 5 })
    }
    const settled = await Promise.all(
      refunds.map(async (r) => (await ctx.get<RefundBody>(`/v1/refunds/${r.id}`)).body),
    )
    const checkoutId = (await getPayment(ctx, payment.id)).gateway_payment_id
    const actions = emulator
      .listEvents('payment_refunded')
      .map((e) => e.data as { id?: string; action_id?: string } | undefined)
      .filter((data) => data?.id === checkoutId)
      .map((data) => data?.action_id)
    expect(actions).toHaveLength(2)
    expect(settled.map((r) => r.status)).toEqual(['succeeded', 'succeeded'])
    expect(new Set(settled.map((r) => r.gateway_refund_id))).toEqual(new Set(actions))
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '60.00',
    })
    const all = await ctx.get<{ items: RefundBody[] }>(`/v1/refunds?payment_id=${payment.id}`)
    expect(all.body.items).toHaveLength(2)
  })

  test('a refund whose answer was lost is found by its job after Checkout.com forgot the key (24 h), not asked for again', async () => {
    const { payment } = await paidHostedPayment()
    emulator.holdWebhooks()
    emulator.timeoutNext({ count: 1, ms: 0, afterProcessing: true, pathPrefix: '/payments/' })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '30.00',
    })
    expect(lost.body).toMatchObject({ status: 'pending', gateway_refund_id: null })
    const checkoutId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    const refundActions = () =>
      emulator
        .listEvents('payment_refunded')
        .filter((e) => (e.data as { id?: string } | undefined)?.id === checkoutId)
    expect(refundActions()).toHaveLength(1)
    // The job's tries outlast the key (graphile-worker's backoff spans days).
    emulator.idempotency.clear()
    expect(
      await askRefundAgain(ctx.deps, {
        tenantId: ctx.main.tenant.id,
        environmentId: ctx.main.test.id,
        refundId: lost.body.id,
      }),
    ).toBe('pending')
    // Before, the key was new again, and Checkout.com refunded another 30.00.
    expect(refundActions()).toHaveLength(1)
    const action = (refundActions()[0]?.data as { action_id?: string } | undefined)?.action_id
    expect(action).toMatch(/^act_/)
    expect((await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)).body.gateway_refund_id).toBe(
      action,
    )
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    expect((await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)).body.status).toBe('succeeded')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '30.00',
    })
  })

  test('a refund Checkout.com declines after accepting it fails, and the payment can be refunded again', async () => {
    const { invoice, payment } = await paidHostedPayment()
    emulator.declineRefundNext()
    const refund = await ctx.post<{ id: string; status: string }>(
      `/v1/payments/${payment.id}/refunds`,
      { amount: '25.00' },
    )
    expect(refund.status, refund.text).toBe(201)
    expect(refund.body.status).toBe('pending')
    await emulator.waitForDeliveries()
    expect(emulator.listEvents('payment_refund_declined')).toHaveLength(1)
    const shown = await ctx.get<RefundBody>(`/v1/refunds/${refund.body.id}`)
    // The acquirer's response code and its summary.
    expect(shown.body).toMatchObject({
      status: 'failed',
      failure_code: '20005',
      failure_message: 'Declined - Do Not Honour',
    })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUND_FAILED',
      amount_refunded: '0.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_refunded: '0.00' })

    // Nothing of it is held back: all of the payment can be refunded again.
    const again = await ctx.post<{ id: string; amount: string }>(
      `/v1/payments/${payment.id}/refunds`,
      {},
    )
    expect(again.status, again.text).toBe(201)
    expect(again.body.amount).toBe('100.00')
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  test('two refunds pending, the first declined: PENDING_REFUND until the second settles, then PARTIALLY_REFUNDED', async () => {
    const { invoice, payment } = await paidHostedPayment()
    emulator.holdWebhooks()
    emulator.declineRefundNext()
    const declined = await ctx.post<{ id: string }>(`/v1/payments/${payment.id}/refunds`, {
      amount: '30.00',
    })
    const refunded = await ctx.post<{ id: string }>(`/v1/payments/${payment.id}/refunds`, {
      amount: '70.00',
    })
    expect([declined.status, refunded.status]).toEqual([201, 201])
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    expect((await ctx.get<{ status: string }>(`/v1/refunds/${declined.body.id}`)).body.status).toBe(
      'failed',
    )
    expect((await ctx.get<{ status: string }>(`/v1/refunds/${refunded.body.id}`)).body.status).toBe(
      'succeeded',
    )
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '70.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_refunded: '70.00' })
    expect(await eventCount(payment.id, 'payment.partially_refunded')).toBe(1)
    // What the declined one left can be refunded again.
    const rest = await ctx.post<{ amount: string }>(`/v1/payments/${payment.id}/refunds`, {})
    expect(rest.body.amount).toBe('30.00')
  })

  test('a refund declined after an earlier one succeeded leaves the payment PARTIALLY_REFUNDED, not REFUND_FAILED', async () => {
    const { payment } = await paidHostedPayment()
    await ctx.post(`/v1/payments/${payment.id}/refunds`, { amount: '20.00' })
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PARTIALLY_REFUNDED')
    emulator.declineRefundNext()
    await ctx.post(`/v1/payments/${payment.id}/refunds`, { amount: '30.00' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '20.00',
    })
  })

  test('an expired hosted payment makes the payment FAILED; a tampered webhook is refused', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    emulator.expireHostedPayment(String(payment.gateway_tracking_id))
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
    const tampered = await ctx.app.inject({
      method: 'POST',
      url: webhookPath,
      headers: { 'content-type': 'application/json', 'cko-signature': '00'.repeat(32) },
      payload: JSON.stringify({
        id: 'evt_forged',
        type: 'payment_captured',
        data: { id: 'pay_x', status: 'Captured', amount: 1, currency: 'USD' },
      }),
    })
    expect(tampered.statusCode).toBe(400)
  })

  test('duplicated and reordered webhooks leave the same final state', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    emulator.holdWebhooks()
    emulator.duplicateNext(2)
    emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await emulator.releaseWebhooks({ order: 'reverse' })
    await emulator.waitForDeliveries()
    await expectPaidInFull(ctx, payment.id, invoice.id, '100.00')
    const events = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${payment.id}&type=payment.succeeded`,
    )
    expect(events.body.items).toHaveLength(1)
  })
})

describe('Checkout.com webhooks are read by their type', () => {
  test("a capture reported in another currency than the payment's is ignored", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const body = JSON.stringify({
      id: 'evt_captured_other_currency',
      type: 'payment_captured',
      data: {
        id: 'pay_othercurrency',
        amount: 10000,
        currency: 'EUR',
        metadata: { payrail_payment_id: payment.id },
      },
    })
    const res = await deliverSigned(body)
    expect(res.statusCode).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })

  test('an event type Payrail does not act on is acknowledged and changes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const body = JSON.stringify({
      id: 'evt_dispute_1',
      type: 'dispute_evidence_required',
      data: { id: 'dsp_1', amount: 10000, currency: 'USD', payment_id: 'pay_1' },
    })
    const res = await deliverSigned(body)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ received: true, events: [] })
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })
})

async function cardPayment(invoiceId: string, extra: Record<string, unknown> = {}) {
  return createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CARD',
    payment_gateway: 'checkout',
    amount: '100.00',
    ...extra,
  })
}

/**
 * A CARD payment of a new invoice whose charge Checkout.com made but whose answer was lost
 * (the payment left PROCESSING, 502), its webhooks held.
 */
async function chargeAnswerLost() {
  const { customer, invoice } = await invoiceToPay(ctx)
  await defaultCheckoutCard(ctx, emulator, customer.id, '4242424242424242')
  emulator.holdWebhooks()
  emulator.timeoutNext({
    count: 1,
    mode: 'destroy',
    method: 'POST',
    pathPrefix: '/payments',
    afterProcessing: true,
  })
  const res = await cardPayment(invoice.id)
  expect(res.status, res.text).toBe(502)
  emulator.clearFaults()
  return { invoice, paymentId: String((res.body as unknown as ErrorBody).error.details.payment_id) }
}

/** The `POST /payments` requests the emulator received for this Payrail payment. */
function chargeRequests(paymentId: string) {
  return emulator.requests.filter(
    (entry) =>
      entry.method === 'POST' && entry.path === '/payments' && entry.body?.reference === paymentId,
  )
}

describe('Checkout.com CARD payments: merchant-initiated, on a stored source', () => {
  test('the default card is charged off-session: SUCCEEDED, the invoice paid once', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { methodId, sourceId } = await defaultCheckoutCard(
      ctx,
      emulator,
      customer.id,
      '4242424242424242',
    )
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(201)
    expect(res.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_method_type: 'CARD',
      payment_gateway: 'checkout',
      payment_method_id: methodId,
      amount_paid: '100.00',
      gateway_payment_id: expect.stringMatching(/^pay_/),
    })
    const [charge, ...more] = chargeRequests(res.body.id)
    expect(more).toHaveLength(0)
    expect(charge?.idempotencyKey).toMatch(new RegExp(`^payrail-charge-${res.body.id}-`))
    expect(charge?.body).toMatchObject({
      source: { type: 'id', id: sourceId },
      amount: 10000,
      currency: 'USD',
      merchant_initiated: true,
      payment_type: 'Unscheduled',
      capture: true,
    })
    // payment_approved and payment_captured follow; the payment has its money already.
    await emulator.waitForDeliveries()
    expect(
      emulator.deliveries.filter((d) => d.body.includes(String(res.body.gateway_payment_id))),
    ).toEqual([
      expect.objectContaining({ type: 'payment_approved', status: 200 }),
      expect.objectContaining({ type: 'payment_captured', status: 200 }),
    ])
    expect(await getPayment(ctx, res.body.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect(await eventCount(res.body.id, 'payment.succeeded')).toBe(1)
  })

  test.each<[CheckoutTestCard, string, string]>([
    ['4544249167673670', 'insufficient_funds', '20051'],
    ['4724117215951699', 'expired_card', '20054'],
    ['4000000000000002', 'card_declined', '20005'],
  ])(
    'card %s is declined: 402 %s, the payment FAILED, the invoice unpaid',
    async (card, code, responseCode) => {
      const { customer, invoice } = await invoiceToPay(ctx)
      await defaultCheckoutCard(ctx, emulator, customer.id, card)
      const res = await cardPayment(invoice.id)
      expect(res.status, res.text).toBe(402)
      const error = (res.body as unknown as ErrorBody).error
      expect(error).toMatchObject({
        code,
        details: { payment_status: 'FAILED', decline_code: responseCode },
      })
      await emulator.waitForDeliveries()
      const payment = await getPayment(ctx, String(error.details.payment_id))
      expect(payment).toMatchObject({
        payment_status: 'FAILED',
        status_code: code,
        gateway_payment_id: expect.stringMatching(/^pay_/),
      })
      // The payment_declined webhook repeats what the answer said: one attempt, not two.
      expect(payment.attempts).toEqual([
        expect.objectContaining({ status: 'failed', error_code: code }),
      ])
      expect(await getInvoice(ctx, invoice.id)).toMatchObject({
        payment_status: 'FAILED',
        amount_paid: '0.00',
      })
    },
  )

  test('a card saved from a hosted payment (save_card_and_make_default) is the default a CARD payment charges', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const link = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'checkout',
      amount: '100.00',
      save_card_and_make_default: true,
    })
    expect(link.status, link.text).toBe(201)
    const completion = emulator.completeHostedPayment(String(link.body.gateway_tracking_id), {
      card: '5436031030606378',
    })
    // The customer closes the tab before the redirect: the webhooks alone save the card.
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, link.body.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    const sourceId = emulator.payment(completion.paymentId)?.card.sourceId
    expect(sourceId).toMatch(/^src_/)
    const [saved, ...others] = await savedMethods(customer.id)
    expect(others).toHaveLength(0)
    expect(saved).toMatchObject({
      gateway: 'checkout',
      gateway_payment_method_id: sourceId,
      card: { brand: 'mastercard', last4: '6378' },
      is_default: true,
    })
    // The return that comes late changes nothing and saves nothing twice.
    await followReturn(completion.redirectUrl)
    expect(await savedMethods(customer.id)).toHaveLength(1)

    const second = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Next month', quantity: 1, unit_amount: '30.00' }],
    })
    await ctx.post(`/v1/invoices/${second.body.id}/finalize`)
    const card = await cardPayment(second.body.id, { amount: '30.00' })
    expect(card.status, card.text).toBe(201)
    expect(card.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_method_id: saved?.id,
      amount_paid: '30.00',
    })
    expect(chargeRequests(card.body.id)[0]?.body).toMatchObject({
      source: { type: 'id', id: sourceId },
      amount: 3000,
      merchant_initiated: true,
    })
    expect(await getInvoice(ctx, second.body.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('an answer lost, then too late to send the charge again: Checkout.com is asked by reference, and the one charge settles the payment', async () => {
    const { invoice, paymentId } = await chargeAnswerLost()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PROCESSING')

    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const calls = emulator.requests.length
    const again = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(200)
    expect(emulator.requests.slice(calls).map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /payments',
    ])
    expect(chargeRequests(paymentId)).toHaveLength(1)
    expect(again.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: expect.stringMatching(/^pay_/),
    })
    // Its webhooks, held until now, repeat what the lookup found.
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    await expectPaidInFull(ctx, paymentId, invoice.id, '100.00')
    expect(await eventCount(paymentId, 'payment.succeeded')).toBe(1)
  })

  test('a lost charge found partly captured since (in the Hub) is recorded with what was captured, not a 502 on every lookup', async () => {
    emulator.deferCaptureNext()
    const { invoice, paymentId } = await chargeAnswerLost()
    const charge = [...emulator.state.payments.values()].find((p) => p.reference === paymentId)
    emulator.capturePayment(String(charge?.id), { amount: 6000 })
    expect(emulator.payment(String(charge?.id))?.status).toBe('Partially Captured')
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const again = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '60.00' })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('40.00')
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
  })

  test('a lost charge Checkout.com never received: FAILED charge_not_found, and nothing was taken', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await defaultCheckoutCard(ctx, emulator, customer.id, '4242424242424242')
    emulator.timeoutNext({ count: 1, mode: 'destroy', method: 'POST', pathPrefix: '/payments' })
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(502)
    emulator.clearFaults()
    const paymentId = String((res.body as unknown as ErrorBody).error.details.payment_id)
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const again = await ctx.post(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(502)
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'charge_not_found',
    })
    expect(chargeRequests(paymentId)).toHaveLength(1)
    expect([...emulator.state.payments.values()].filter((p) => p.reference === paymentId)).toEqual(
      [],
    )
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_remaining: '100.00',
    })
  })

  test('without a saved card a CARD payment is 402 no_default_payment_method', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(402)
    expect((res.body as unknown as ErrorBody).error.code).toBe('no_default_payment_method')
  })
})

describe('Checkout.com automatic charges', () => {
  test('an authorization that expires before its capture: the invoice is charged again three days later, on a new payment, and paid once', async () => {
    const { customer, invoice } = await invoiceToPay(
      ctx,
      { auto_pay: true },
      { collection_method: 'charge_automatically' },
    )
    await defaultCheckoutCard(ctx, emulator, customer.id, '4242424242424242')
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    emulator.deferCaptureNext()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    const [authorized] = await automaticPaymentsOf(invoice.id)
    expect(authorized).toMatchObject({ payment_status: 'RESERVED' })
    await emulator.waitForDeliveries()
    // Checkout.com never captures it; the authorization expires and is reported.
    const trips = await statementsOf(async () => {
      emulator.expirePayment(String(authorized?.gateway_payment_id))
      await emulator.waitForDeliveries()
    }, 100_000)
    // The next attempt is queued in the commit that records the failure, not after it: a
    // process that stopped between the two would have lost it (the resend is a duplicate).
    const queued = trips.filter((t) => /"next_payment_attempt" = /.test(t))
    expect(queued, trips.join('\n')).toHaveLength(1)
    expect(queued[0]).toMatch(/^with .*insert into "payment_transitions" .*; commit$/)
    expect(await getPayment(ctx, String(authorized?.id))).toMatchObject({
      payment_status: 'FAILED',
    })
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      new Date(ctx.clock.now().getTime() + RETRY_AFTER_MS).toISOString(),
    )
    // One of the invoice's four attempts, though Checkout.com's report carried no attempt.
    expect(await countAutomaticAttempts(ctx.db, adminAccess(ctx.scope), invoice.id)).toBe(1)
    ctx.clock.advance(RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    await emulator.waitForDeliveries()
    const [first, second, ...more] = await automaticPaymentsOf(invoice.id)
    expect(more).toEqual([])
    expect(first).toMatchObject({ id: authorized?.id, payment_status: 'FAILED' })
    expect(second).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(second?.gateway_payment_id).not.toBe(first?.gateway_payment_id)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      next_payment_attempt: null,
    })
  })
})

/** The invoice's automatic charges, oldest first. */
async function automaticPaymentsOf(invoiceId: string) {
  const res = await ctx.get<{ items: PaymentBody[] }>(
    `/v1/payments?destination_id=${invoiceId}&sort=created_at`,
  )
  return res.body.items.filter(
    (p) => (p.metadata as Record<string, string> | null)?.automatic_charge === 'true',
  )
}

describe('Checkout.com Authorized → RESERVED, Captured → SUCCEEDED', () => {
  /** A CARD payment Checkout.com answers `Authorized`, its capture still to come. */
  async function authorizedCharge() {
    const { customer, invoice } = await invoiceToPay(ctx)
    await defaultCheckoutCard(ctx, emulator, customer.id, '4242424242424242')
    emulator.deferCaptureNext()
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(201)
    const checkoutId = String(res.body.gateway_payment_id)
    expect(emulator.payment(checkoutId)?.status).toBe('Authorized')
    return { invoice, payment: res.body, checkoutId }
  }

  test('an authorization that expired, processed again, makes a new charge (its key replayed the dead authorization)', async () => {
    const { invoice, payment, checkoutId } = await authorizedCharge()
    await emulator.waitForDeliveries()
    emulator.expirePayment(checkoutId)
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
    const again = await ctx.post<PaymentBody>(`/v1/payments/${payment.id}/process`)
    expect(again.status, again.text).toBe(200)
    // Before, the same key answered the expired Authorized again: RESERVED for good.
    expect(again.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(again.body.gateway_payment_id).not.toBe(checkoutId)
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('a cancel whose void meets a capture made since its read is 409, and the capture settles the payment', async () => {
    emulator.holdWebhooks()
    const { invoice, payment, checkoutId } = await authorizedCharge()
    // Checkout.com captures it the moment the void arrives: after the cancel read it Authorized.
    const log = emulator.requestLog
    const push = log.push.bind(log)
    log.push = (...entries) => {
      if (entries.some((e) => e.method === 'POST' && e.path === `/payments/${checkoutId}/voids`))
        emulator.capturePayment(checkoutId)
      return push(...entries)
    }
    let cancelled: { status: number; body: ErrorBody }
    try {
      cancelled = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    } finally {
      log.push = push
    }
    // It was a 502 gateway_error.
    expect(cancelled.status).toBe(409)
    expect(cancelled.body.error.code).toBe('conflict')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('payment_approved holds the funds (RESERVED, invoice unpaid); payment_captured pays the invoice once', async () => {
    emulator.holdWebhooks()
    const { invoice, payment, checkoutId } = await authorizedCharge()
    // The answer itself says Authorized: RESERVED at once, before any webhook.
    expect(payment).toMatchObject({
      payment_status: 'RESERVED',
      amount_reserved: '100.00',
      amount_paid: '0.00',
    })
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    const reserved = await getPayment(ctx, payment.id)
    expect(reserved).toMatchObject({
      payment_status: 'RESERVED',
      current_state: 'reserved',
      amount_reserved: '100.00',
      amount_paid: '0.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
      amount_remaining: '100.00',
    })

    emulator.capturePayment(checkoutId)
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })

    // Checkout.com delivers again (same event ids), and a late payment_approved arrives again.
    const events = emulator.listEvents().filter((e) => JSON.stringify(e).includes(checkoutId))
    expect(events.map((e) => e.type)).toEqual(['payment_approved', 'payment_captured'])
    for (const event of events) {
      const again = await deliverSigned(JSON.stringify(event))
      expect(again.statusCode).toBe(200)
      expect(again.json()).toMatchObject({ events: [{ outcome: 'duplicate' }] })
    }
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
    expect(await eventCount(payment.id, 'payment.reserved')).toBe(1)
    expect(await eventCount(payment.id, 'payment.succeeded')).toBe(1)
  })

  test('duplicated and reversed payment_approved / payment_captured leave the same final state', async () => {
    emulator.holdWebhooks()
    emulator.duplicateNext(2)
    const { invoice, payment, checkoutId } = await authorizedCharge()
    emulator.capturePayment(checkoutId)
    expect(emulator.heldWebhooks.map((d) => d.type)).toEqual([
      'payment_approved',
      'payment_approved',
      'payment_captured',
      'payment_captured',
    ])
    await emulator.releaseWebhooks({ order: 'reverse' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect(await eventCount(payment.id, 'payment.succeeded')).toBe(1)
    // RESERVED once, from the charge's answer; the approvals that arrive after the capture
    // would move the payment backwards: refused.
    expect(await eventCount(payment.id, 'payment.reserved')).toBe(1)
  })

  test('cancelling a hosted payment page is 409: Checkout.com cannot withdraw it, and its payment is still applied', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    expect(refused.status, refused.text).toBe(409)
    expect(refused.body.error).toMatchObject({
      code: 'conflict',
      message: expect.stringContaining(String(payment.gateway_tracking_id)),
    })
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await followReturn(completion.redirectUrl)
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('a hosted payment page on an invoice paid another way is left open by withdraw_overtaken_pages; paid too, the invoice is OVERPAID', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    await payOffline(ctx, invoice.id, '100.00')
    // Checkout.com cannot withdraw a hosted payment page: the job does not try.
    await withdrawOvertakenPages(ctx.deps)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await followReturn(completion.redirectUrl)
    await emulator.waitForDeliveries()
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '200.00',
    })
  })

  test('cancelling the RESERVED payment in Payrail voids the authorization: nothing is captured', async () => {
    const { invoice, payment, checkoutId } = await authorizedCharge()
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${payment.id}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    expect(cancelled.body.payment_status).toBe('CANCELLED')
    expect(emulator.payment(checkoutId)?.status).toBe('Voided')
    expect(emulator.deferredCaptures).not.toContain(checkoutId)
    expect(
      emulator.requests.find(
        (r) => r.method === 'POST' && r.path === `/payments/${checkoutId}/voids`,
      )?.idempotencyKey,
    ).toBe(`payrail-void-${payment.id}`)
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('CANCELLED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '0.00',
      amount_remaining: '100.00',
    })
  })

  test('cancelling after Checkout.com already captured is 409 and changes nothing; the capture then pays the invoice', async () => {
    const { invoice, payment, checkoutId } = await authorizedCharge()
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    // Captured at Checkout.com; its payment_captured webhook has not arrived yet.
    emulator.holdWebhooks()
    emulator.capturePayment(checkoutId)
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    expect(refused.status, refused.text).toBe(409)
    expect(refused.body.error.code).toBe('conflict')
    expect(emulator.payment(checkoutId)?.status).toBe('Captured')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    await emulator.releaseWebhooks()
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
    })
  })

  test('an authorization voided at Checkout.com (payment_voided) CANCELS the RESERVED payment', async () => {
    const { invoice, payment, checkoutId } = await authorizedCharge()
    await emulator.waitForDeliveries()
    await new Checkout(emulator.secretKey, emulator.sdkOptions()).payments.void(checkoutId)
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('CANCELLED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '0.00' })
  })
})

/**
 * An attempt on the hosted page that never completed (the customer abandoned a 3-D Secure
 * challenge): a `Pending` payment of the page at Checkout.com, with the page's metadata.
 */
function abandonedAttempt(hppId: string) {
  const session = emulator.session(hppId)
  if (!session) throw new Error('no session')
  return insertPendingPayment(emulator.state, {
    amount: session.amount,
    currency: session.currency,
    reference: session.reference,
    description: session.description,
    card: storeCard(emulator.state, {
      number: '4242424242424242',
      expiryMonth: 12,
      expiryYear: 2099,
    }),
    customer: null,
    metadata: session.metadata,
    paymentType: session.paymentType,
    merchantInitiated: false,
    capture: session.capture,
    sessionId: session.sessionId,
  })
}

describe('Checkout.com hosted pages: attempts on a page', () => {
  test('an abandoned attempt expiring after the page was paid (capture still to come) does not fail the RESERVED payment', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const hpp = String(payment.gateway_tracking_id)
    const stale = abandonedAttempt(hpp)
    emulator.deferCaptureNext()
    const completion = emulator.completeHostedPayment(hpp, { card: '4242424242424242' })
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    // The attempt the customer abandoned expires: it ends nothing (it failed the payment,
    // RESERVED → FAILED, and the capture after it was refused).
    emulator.expirePayment(stale.id)
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('RESERVED')
    emulator.capturePayment(completion.paymentId)
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })
})

describe('Checkout.com: a charge that ended at the provider while its answer was lost', () => {
  // Checkout.com cancels the authorization of a charge whose answer Payrail lost, and reports
  // it before the approval: PROCESSING cannot be CANCELLED, so the payment FAILED `cancelled`.
  // Processed again under the same `Cko-Idempotency-Key`, it got the old authorization back,
  // and stayed RESERVED on a charge that would never settle, no card charged.
  test('processed again, it is a new charge under a new key, not the cancelled authorization replayed', async () => {
    emulator.deferCaptureNext()
    const { invoice, paymentId } = await chargeAnswerLost()
    const authorization = String(emulator.deferredCaptures.at(-1))
    emulator.cancelPayment(authorization)
    await emulator.releaseWebhooks({ order: 'reverse' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'cancelled',
    })
    const attempts = (await getPayment(ctx, paymentId)).attempts
    expect(attempts.at(-1)).toMatchObject({ status: 'failed', error_code: 'cancelled' })
    const again = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(200)
    await emulator.waitForDeliveries()
    const [first, second, ...more] = chargeRequests(paymentId)
    expect(more).toHaveLength(0)
    expect(second?.idempotencyKey).not.toBe(first?.idempotencyKey)
    const now = await getPayment(ctx, paymentId)
    expect(now.gateway_payment_id).not.toBe(authorization)
    expect(now).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })
})

describe('Checkout.com: amount_reserved is what the authorization still holds', () => {
  // As Stripe's `amount_capturable`: 0 once the authorization is voided or captured.
  test('a voided authorization holds nothing: 0.00 once CANCELLED', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await defaultCheckoutCard(ctx, emulator, customer.id, '4242424242424242')
    emulator.deferCaptureNext()
    const card = await cardPayment(invoice.id)
    expect(card.status, card.text).toBe(201)
    expect(card.body).toMatchObject({ payment_status: 'RESERVED', amount_reserved: '100.00' })
    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${card.body.id}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    expect(cancelled.body).toMatchObject({ payment_status: 'CANCELLED', amount_reserved: '0.00' })
  })

  test('a captured authorization holds nothing more: 0.00 once SUCCEEDED', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    emulator.deferCaptureNext()
    const done = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'RESERVED',
      amount_reserved: '100.00',
    })
    emulator.capturePayment(done.paymentId)
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_reserved: '0.00',
    })
  })
})

describe('Checkout.com return routes when the return cannot be verified', () => {
  // Its own environment: the connection is broken, then deleted, under it.
  let own: TestContext
  let cko: CheckoutEmulator
  let connectionId: string
  beforeAll(async () => {
    own = await createTestContext({ start: new Date() })
    const address = await own.app.listen({ port: 0, host: '127.0.0.1' })
    cko = await startCheckoutEmulator({
      clock: own.clock,
      webhookUrl: `${address}/v1/webhooks/checkout/${own.main.tenant.id}/${own.main.test.id}`,
    })
    const connection = await own.post<{ id: string }>('/v1/gateway_connections', {
      gateway: 'checkout',
      credentials: { secret_key: cko.secretKey, signature_key: cko.signatureKey },
      settings: { base_url: cko.url },
    })
    expect(connection.status, connection.text).toBe(201)
    connectionId = connection.body.id
  })
  afterAll(async () => {
    await cko?.close()
    await own?.close()
  })

  /** A hosted payment paid on Checkout.com's page, its webhooks held; the customer's return. */
  async function paidWithReturnHeld() {
    const { invoice } = await invoiceToPay(own)
    const payment = await hostedPayment(invoice.id, own)
    cko.holdWebhooks()
    const completion = cko.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    return { invoice, payment, returnUrl: new URL(completion.redirectUrl) }
  }

  /** Points the connection at `baseUrl` (`DEAD`: Checkout.com not answering). */
  async function pointConnectionAt(baseUrl: string) {
    const res = await own.patch(`/v1/gateway_connections/${connectionId}`, {
      settings: { base_url: baseUrl },
    })
    expect(res.status, res.text).toBe(200)
  }
  const DEAD = 'http://127.0.0.1:9'

  /** The customer's return, followed: a redirect (303) to `location`, never an error body. */
  async function expectReturnTo(returnUrl: URL, location: string) {
    const back = await followReturn(returnUrl, own)
    expect(back.statusCode).toBe(303)
    expect(back.headers.location).toBe(location)
  }

  test("Checkout.com not answering the check: redirected by the payment's record, the payment left as it is", async () => {
    const { invoice, payment, returnUrl } = await paidWithReturnHeld()
    await pointConnectionAt(DEAD)
    await expectReturnTo(returnUrl, 'https://merchant.example/cancel')
    expect(await getPayment(own, payment.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
    expect((await getInvoice(own, invoice.id)).amount_paid).toBe('0.00')
    await pointConnectionAt(cko.url)
    // The held report still settles it.
    await cko.releaseWebhooks()
    await cko.waitForDeliveries()
    expect((await getPayment(own, payment.id)).payment_status).toBe('SUCCEEDED')
    // Settled by the webhook, the return unverifiable again: the record says paid.
    await pointConnectionAt(DEAD)
    await expectReturnTo(returnUrl, 'https://merchant.example/thanks')
    await pointConnectionAt(cko.url)
  })

  // docs/payments.md: `DELETE …?force=true` disconnects with pages still open; their
  // customers still come back through /v1/checkout/success, a browser's route (303 only).
  test('a customer returning from a page whose connection was force-deleted is redirected to cancel_url, not shown a JSON 400', async () => {
    const { payment, returnUrl } = await paidWithReturnHeld()
    const deleted = await own.delete(`/v1/gateway_connections/${connectionId}?force=true`)
    expect(deleted.status, deleted.text).toBe(200)
    await expectReturnTo(returnUrl, 'https://merchant.example/cancel')
    expect(await getPayment(own, payment.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
  })
})
