import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { gatewayContext } from '../../src/gateways/registry.ts'
import { stripeGateway } from '../../src/gateways/stripe/stripe.gateway.ts'
import { withdrawOvertakenPages } from '../../src/jobs/tasks/withdraw-overtaken-pages.ts'
import { ASK_REFUND_AGAIN, askRefundAgain } from '../../src/modules/payments/refunds.ts'
import { gatewayRequestFor, withLockedPayment } from '../../src/modules/payments/service.ts'
import { movePayment } from '../../src/modules/payments/state.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { signatureHeader } from '../emulators/stripe/signing.ts'
import type { TestCardAlias } from '../emulators/stripe/test-cards.ts'
import { createCustomer } from '../fixtures.ts'
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
  unansweredPayment,
} from '../payments-helpers.ts'
import {
  connectStripeEmulator,
  openStripeLink,
  runDefaultMethodJob,
  saveStripeCard,
  stripeWebhookPath,
  unansweredStripeLink,
} from '../stripe-helpers.ts'

let ctx: TestContext
let emulator: StripeEmulator
let webhookPath: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  webhookPath = stripeWebhookPath(ctx)
  emulator = await connectStripeEmulator(ctx)
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

/**
 * The next calls' answers under `pathPrefix` are lost (stripe-node's own retries too):
 * after Stripe acted on the request (`afterProcessing`), or before it reached Stripe.
 */
function loseAnswers(pathPrefix: string, options: { afterProcessing: boolean }) {
  emulator.timeoutNext({ count: 3, mode: 'destroy', pathPrefix, ...options })
}

function link(invoiceId: string, extra: Record<string, unknown> = {}) {
  return openStripeLink(ctx, invoiceId, {
    success_url: 'https://merchant.example/thanks',
    cancel_url: 'https://merchant.example/cancel',
    ...extra,
  })
}

describe('Stripe payment links, through the official SDK and the emulator', () => {
  test('link → session completed webhook → SUCCEEDED, invoice paid, card saved as default → CARD off-session', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id, { save_card_and_make_default: true })
    expect(payment).toMatchObject({ payment_status: 'PENDING', payment_gateway: 'stripe' })
    expect(payment.gateway_tracking_id).toMatch(/^cs_/)
    expect(payment.payment_url).toContain(emulator.url.replace('http://', ''))
    const session = emulator.state.checkoutSessions.get(String(payment.gateway_tracking_id))
    expect(session).toMatchObject({
      mode: 'payment',
      metadata: { payrail_payment_id: payment.id },
      successUrl: 'https://merchant.example/thanks',
    })

    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    await emulator.waitForDeliveries()
    const paid = await getPayment(ctx, payment.id)
    expect(paid).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(paid.gateway_payment_id).toMatch(/^pi_/)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    const shown = await ctx.get<{
      default_payment_method_id: string
      gateway_customer_ids: Record<string, string>
    }>(`/v1/customers/${customer.id}`)
    expect(shown.body.gateway_customer_ids.stripe).toMatch(/^cus_/)
    expect(shown.body.default_payment_method_id).toMatch(/^pm_/)
    // …and the card is the default at Stripe too, once the job the save queued runs.
    expect(await runDefaultMethodJob(ctx, customer.id)).toBe('synced')
    const stripeCustomer = emulator.state.customers.get(
      shown.body.gateway_customer_ids.stripe ?? '',
    )
    expect(stripeCustomer?.defaultPaymentMethod).toMatch(/^pm_/)

    const second = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Next month', quantity: 1, unit_amount: '30.00' }],
    })
    await ctx.post(`/v1/invoices/${second.body.id}/finalize`)
    const card = await createPayment(ctx, {
      destination_id: second.body.id,
      payment_method_type: 'CARD',
      payment_gateway: 'stripe',
      amount: '30.00',
    })
    expect(card.status, card.text).toBe(201)
    expect(card.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_method_id: shown.body.default_payment_method_id,
    })
  })

  test('a link Stripe cannot open: 502, the payment INITIATED with the failure kept as an attempt; process opens it', async () => {
    const { invoice } = await invoiceToPay(ctx)
    emulator.failNext({ status: 500, count: 5, pathPrefix: '/v1/checkout/sessions' })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'stripe',
    })
    emulator.clearFaults()
    const failed = await getPayment(ctx, paymentId)
    expect(failed.status_code).toBe('StripeAPIError')
    expect(failed.error_message).toBeTruthy()
    expect(failed.attempts.map((a) => [a.status, a.error_code])).toEqual([
      ['failed', 'StripeAPIError'],
    ])
    const opened = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(opened.status, opened.text).toBe(200)
    expect(opened.body).toMatchObject({ payment_status: 'PENDING', status_code: null })
    expect(opened.body.payment_url).toBeTruthy()
  })

  test('an expired session makes the payment FAILED (expired)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.expireCheckoutSession(String(payment.gateway_tracking_id))
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
  })

  test('a card declined on the Checkout page is an attempt; the next card on the same page pays the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    const session = String(payment.gateway_tracking_id)
    const declined = emulator.completeCheckoutSession(session, {
      paymentMethod: 'pm_card_visa_chargeDeclined',
    })
    expect(declined.error).not.toBeNull()
    await emulator.waitForDeliveries()
    const open = await getPayment(ctx, payment.id)
    expect(open.payment_status).toBe('PENDING')
    expect(open.attempts.map((a) => [a.status, a.error_code])).toContainEqual([
      'failed',
      'card_declined',
    ])
    const paid = emulator.completeCheckoutSession(session, { paymentMethod: 'pm_card_visa' })
    expect(paid.error).toBeNull()
    await emulator.waitForDeliveries()
    await expectPaidInFull(ctx, payment.id, invoice.id, '100.00')
  })

  test.each([
    ['isk', '5000', 500_000],
    ['mga', '5000', 5000],
  ] as const)(
    'a %s %s link asks Stripe for %s (its units), and its payment pays the invoice exactly',
    async (currency, amount, atStripe) => {
      const customer = await createCustomer(ctx)
      const created = await ctx.post<{ id: string; total: string }>('/v1/invoices', {
        customer_id: customer.id,
        currency,
        lines: [{ description: 'Plan', quantity: 1, unit_amount: amount }],
      })
      expect((await ctx.post(`/v1/invoices/${created.body.id}/finalize`)).status).toBe(200)
      const payment = await createPayment(ctx, {
        destination_id: created.body.id,
        currency,
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'stripe',
        amount,
      })
      expect(payment.status, payment.text).toBe(201)
      const session = String(payment.body.gateway_tracking_id)
      expect(
        (emulator.state.checkoutSessions.get(session) as { amountTotal?: number } | undefined)
          ?.amountTotal,
      ).toBe(atStripe)
      emulator.completeCheckoutSession(session, { paymentMethod: 'pm_card_visa' })
      await emulator.waitForDeliveries()
      expect(await getPayment(ctx, payment.body.id)).toMatchObject({
        payment_status: 'SUCCEEDED',
      })
      expect(await getInvoice(ctx, created.body.id)).toMatchObject({
        payment_status: 'SUCCEEDED',
        amount_paid: created.body.total,
      })
    },
  )

  test('a KWD amount Stripe cannot take (last decimal not 0) is 400 before Stripe is asked', async () => {
    const customer = await createCustomer(ctx)
    const created = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'kwd',
      lines: [{ description: 'Plan', quantity: 1, unit_amount: '1.234' }],
    })
    await ctx.post(`/v1/invoices/${created.body.id}/finalize`)
    const sessions = emulator.state.checkoutSessions.size
    const payment = await createPayment(ctx, {
      destination_id: created.body.id,
      currency: 'kwd',
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'stripe',
      amount: '1.234',
    })
    expect(payment.status).toBe(400)
    expect(emulator.state.checkoutSessions.size).toBe(sessions)
  })

  test('refunds go through Stripe, partial then full', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    await emulator.waitForDeliveries()
    const partial = await ctx.post<{ status: string; gateway_refund_id: string }>(
      `/v1/payments/${payment.id}/refunds`,
      { amount: '40.00' },
    )
    expect(partial.status, partial.text).toBe(201)
    expect(partial.body).toMatchObject({
      status: 'succeeded',
      gateway_refund_id: expect.stringMatching(/^re_/),
    })
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PARTIALLY_REFUNDED')
    await ctx.post(`/v1/payments/${payment.id}/refunds`, {})
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  /** A paid 100.00 Stripe link: its payment. */
  async function paidLink() {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    await emulator.waitForDeliveries()
    return { invoice, payment }
  }

  /** What Stripe refunded of `intentId`, in minor units. */
  const refundedAtStripe = (intentId: string) =>
    [...emulator.state.refunds.values()]
      .filter((r) => r.paymentIntent === intentId)
      .reduce((sum, r) => sum + r.amount, 0)

  /** The queued `ask_refund_again` job of `refundId`: its payload. */
  async function askAgainJob(refundId: string) {
    const { rows } = await ctx.pool.query<{ payload: unknown; run_at: Date }>(
      `select j.payload, j.run_at
         from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id
        where t.identifier = $1 and j.payload->>'refundId' = $2`,
      [ASK_REFUND_AGAIN, refundId],
    )
    return rows
  }

  test('a refund whose answer is lost after Stripe made it stays pending; its webhook settles it, never twice', async () => {
    const { invoice, payment } = await paidLink()
    emulator.setWebhookDelivery('manual')
    loseAnswers('/v1/refunds', { afterProcessing: true })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '30.00',
    })
    expect(lost.status, lost.text).toBe(201)
    expect(lost.body.status).toBe('pending')
    expect(lost.body.failure_message).toMatch(/^No answer from stripe/)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING_REFUND')
    expect(await askAgainJob(lost.body.id)).toHaveLength(1)
    emulator.clearFaults()
    // Pending, it counts against what is left: 70.00, not 100.00.
    const tooMuch = await ctx.post(`/v1/payments/${payment.id}/refunds`, { amount: '80.00' })
    expect(tooMuch.status).toBe(409)
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    await emulator.waitForDeliveries()
    const settled = await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)
    expect(settled.body).toMatchObject({ status: 'succeeded', failure_message: null })
    const after = await getPayment(ctx, payment.id)
    expect(after).toMatchObject({ payment_status: 'PARTIALLY_REFUNDED', amount_refunded: '30.00' })
    expect(refundedAtStripe(String(after.gateway_payment_id))).toBe(3000)
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('30.00')
    // The job, when it runs, finds it settled and asks nothing.
    const [job] = await askAgainJob(lost.body.id)
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    expect(refundedAtStripe(String(after.gateway_payment_id))).toBe(3000)
  })

  test("a refund made in Stripe's dashboard is recorded, once, and never taken for Payrail's pending one of the same amount", async () => {
    const { invoice, payment } = await paidLink()
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    emulator.setWebhookDelivery('manual')
    loseAnswers('/v1/refunds', { afterProcessing: true })
    const mine = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '40.00',
    })
    expect(mine.body).toMatchObject({ status: 'pending', gateway_refund_id: null })
    emulator.clearFaults()
    // Someone refunds 40.00 in Stripe's dashboard: no payrail_refund_id in its metadata.
    const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
    const dashboard = await stripe.refunds.create({ payment_intent: intentId, amount: 4000 })
    // Its webhooks first, then those of Payrail's refund, each delivered twice.
    await emulator.deliverOutbox({ order: 'reverse', duplicate: 1 })
    await emulator.waitForDeliveries()
    const settled = await ctx.get<RefundBody>(`/v1/refunds/${mine.body.id}`)
    expect(settled.body.status).toBe('succeeded')
    expect(settled.body.gateway_refund_id).not.toBe(dashboard.id)
    expect(refundedAtStripe(intentId)).toBe(8000)
    // The dashboard's refund is a refund of its own, recorded once though Stripe reported
    // it in several events (charge.refunded, refund.created, refund.updated).
    const refunds = await ctx.get<{ items: RefundBody[] }>(`/v1/refunds?payment_id=${payment.id}`)
    const outside = refunds.body.items.filter((r) => r.gateway_refund_id === dashboard.id)
    expect(outside).toHaveLength(1)
    expect(outside[0]).toMatchObject({
      status: 'succeeded',
      amount: '40.00',
      metadata: { recorded_from: 'stripe' },
    })
    expect(refunds.body.items).toHaveLength(2)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '80.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('80.00')
    emulator.setWebhookDelivery('auto')
  })

  test('a dashboard refund of the rest refunds the payment and its invoice; one of more than is left is not recorded', async () => {
    const { invoice, payment } = await paidLink()
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
    const mine = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '25.00',
    })
    expect(mine.body.status).toBe('succeeded')
    await stripe.refunds.create({ payment_intent: intentId, amount: 7500, reason: 'duplicate' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    const invoiceAfter = await getInvoice(ctx, invoice.id)
    expect(invoiceAfter).toMatchObject({ payment_status: 'REFUNDED', amount_refunded: '100.00' })
    const refunds = await ctx.get<{ items: RefundBody[] }>(`/v1/refunds?payment_id=${payment.id}`)
    expect(refunds.body.items.map((r) => [r.amount, r.reason]).sort()).toEqual([
      ['25.00', null],
      ['75.00', 'duplicate'],
    ])
  })

  test('a refund that never reached Stripe is asked again by its job, with the same key: refunded once', async () => {
    const { payment } = await paidLink()
    loseAnswers('/v1/refunds', { afterProcessing: false })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(lost.status, lost.text).toBe(201)
    expect(lost.body.status).toBe('pending')
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    expect(refundedAtStripe(intentId)).toBe(0)
    const [job] = await askAgainJob(lost.body.id)
    // Still unreachable: the job throws, and graphile-worker tries again later.
    loseAnswers('/v1/refunds', { afterProcessing: false })
    await expect(askRefundAgain(ctx.deps, job?.payload)).rejects.toThrow(/still no answer/)
    expect((await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)).body.status).toBe('pending')
    emulator.clearFaults()
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect(refundedAtStripe(intentId)).toBe(10000)
  })

  test('a refund made whose answer was lost is found by its job after Stripe forgot the key (24 h), not made again', async () => {
    const { invoice, payment } = await paidLink()
    // No webhook settles it: the endpoint does not receive refund events, say.
    emulator.setWebhookDelivery('manual')
    loseAnswers('/v1/refunds', { afterProcessing: true })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '30.00',
    })
    expect(lost.body.status).toBe('pending')
    emulator.clearFaults()
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    expect(refundedAtStripe(intentId)).toBe(3000)
    // The job's tries outlast Stripe's keys (graphile-worker's backoff spans days).
    emulator.forgetIdempotencyKeys()
    const [job] = await askAgainJob(lost.body.id)
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    // Before, the key was new to Stripe again, and it refunded another 30.00.
    expect(refundedAtStripe(intentId)).toBe(3000)
    const made = [...emulator.state.refunds.values()].filter((r) => r.paymentIntent === intentId)
    expect((await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)).body).toMatchObject({
      status: 'succeeded',
      gateway_refund_id: made[0]?.id,
    })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '30.00',
    })
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    await emulator.waitForDeliveries()
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('30.00')
  })

  test('a refund whose process stopped before any answer is looked for too when its job asks a day later', async () => {
    const { payment } = await paidLink()
    emulator.setWebhookDelivery('manual')
    loseAnswers('/v1/refunds', { afterProcessing: true })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '20.00',
    })
    emulator.clearFaults()
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    expect(refundedAtStripe(intentId)).toBe(2000)
    // As if the process had stopped before it wrote the lost answer's note.
    await ctx.db
      .updateTable('refunds')
      .set({ failure_message: null })
      .where('id', '=', lost.body.id)
      .execute()
    ctx.clock.advance(25 * 60 * 60 * 1000)
    emulator.forgetIdempotencyKeys()
    const [job] = await askAgainJob(lost.body.id)
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    expect(refundedAtStripe(intentId)).toBe(2000)
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    await emulator.waitForDeliveries()
  })

  test('a KWD refund Stripe cannot take (last decimal not 0) is 400 and writes nothing', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'kwd',
      lines: [{ description: 'Plan', quantity: 1, unit_amount: '10.000' }],
    })
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`)
    const payment = await link(invoice.body.id, { currency: 'kwd', amount: '10.000' })
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    await emulator.waitForDeliveries()
    const calls = emulator.requests.length
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '1.235',
    })
    expect(refused.status, refused.text).toBe(400)
    expect(refused.body.error).toMatchObject({ code: 'validation_error' })
    expect(emulator.requests.slice(calls)).toEqual([])
    const refunds = await ctx.get<{ items: RefundBody[] }>(`/v1/refunds?payment_id=${payment.id}`)
    expect(refunds.body.items).toEqual([])
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_refunded: '0.000',
    })
    // An amount Stripe takes is refunded as usual.
    const taken = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '1.230',
    })
    expect(taken.status, taken.text).toBe(201)
    expect(taken.body.status).toBe('succeeded')
  })

  test('a pending refund Stripe cancels is failed: the amount is refundable again', async () => {
    const { payment } = await paidLink()
    loseAnswers('/v1/refunds', { afterProcessing: false })
    const lost = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '30.00',
    })
    expect(lost.body.status).toBe('pending')
    emulator.clearFaults()
    const intentId = String((await getPayment(ctx, payment.id)).gateway_payment_id)
    emulator.sendEvent('refund.updated', {
      id: 're_canceled_1',
      object: 'refund',
      amount: 3000,
      currency: 'usd',
      status: 'canceled',
      payment_intent: intentId,
      metadata: { payrail_refund_id: lost.body.id },
      created: Math.floor(ctx.clock.now().getTime() / 1000),
    })
    await emulator.waitForDeliveries()
    expect((await ctx.get<RefundBody>(`/v1/refunds/${lost.body.id}`)).body).toMatchObject({
      status: 'failed',
      failure_message: 'Stripe canceled the refund',
    })
    const payment2 = await getPayment(ctx, payment.id)
    expect(payment2.payment_status).not.toBe('PENDING_REFUND')
    expect(payment2.amount_refunded).toBe('0.00')
    const full = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(full.status, full.text).toBe(201)
    expect(full.body).toMatchObject({ status: 'succeeded', amount: '100.00' })
  })

  test('a refund Stripe answers 429 (rate limited) stays pending and is asked again, not failed', async () => {
    const { payment } = await paidLink()
    emulator.failNext({ status: 429, count: 3, pathPrefix: '/v1/refunds' })
    const limited = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(limited.status, limited.text).toBe(201)
    expect(limited.body.status).toBe('pending')
    emulator.clearFaults()
    const [job] = await askAgainJob(limited.body.id)
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  test('every gateway refund has its ask-again job from the start: a process that dies before the answer leaves nothing pending for good', async () => {
    const { payment } = await paidLink()
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '10.00',
    })
    expect(refund.status, refund.text).toBe(201)
    expect(refund.body.status).toBe('succeeded')
    // Queued in the refund's own transaction, for after any call could still be running.
    const [job] = await askAgainJob(refund.body.id)
    expect(job?.run_at.getTime()).toBe(ctx.clock.now().getTime() + 5 * 60 * 1000)
    // Answered already: the job asks nothing.
    const calls = emulator.requests.length
    expect(await askRefundAgain(ctx.deps, job?.payload)).toBe('succeeded')
    expect(emulator.requests.length).toBe(calls)
  })

  test('a Stripe timeout while creating the session leaves the payment INITIATED; a retry makes one session', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const paymentId = await unansweredStripeLink(ctx, emulator, invoice.id, {
      pathPrefix: '/v1/checkout/sessions',
    })
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body.payment_status).toBe('PENDING')
    const sessions = [...emulator.state.checkoutSessions.values()].filter(
      (s) => s.metadata.payrail_payment_id === paymentId,
    )
    expect(sessions).toHaveLength(1)
  })
})

/** A customer with a finalized invoice and a saved Stripe card of the test `alias`. */
async function invoiceWithSavedCard(alias: TestCardAlias) {
  const { customer, invoice } = await invoiceToPay(ctx)
  const { paymentMethodId } = await saveStripeCard(ctx, emulator, customer.id, alias)
  return { invoice, saved: { id: paymentMethodId } }
}

/** A 100.00 Stripe card payment of `invoice` with the saved card, left INITIATED for `/process`: its id. */
async function cardPaymentToProcess(invoice: { id: string }, saved: { id: string }) {
  const created = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'CARD',
    payment_gateway: 'stripe',
    payment_method_id: saved.id,
    amount: '100.00',
    process_payment: false,
  })
  expect(created.status, created.text).toBe(201)
  return created.body.id
}

describe('Stripe saved-card charges', () => {
  test.each<[TestCardAlias, string]>([
    ['pm_card_visa_chargeDeclined', 'card_declined'],
    ['pm_card_chargeDeclinedInsufficientFunds', 'insufficient_funds'],
    ['pm_card_chargeDeclinedExpiredCard', 'expired_card'],
    ['pm_card_chargeDeclinedLostCard', 'card_declined'],
    ['pm_card_authenticationRequired', 'authentication_required'],
  ])('%s is 402 %s and leaves the payment FAILED', async (alias, code) => {
    const { invoice, saved } = await invoiceWithSavedCard(alias)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'stripe',
      payment_method_id: saved.id,
      amount: '100.00',
    })
    expect(res.status, res.text).toBe(402)
    const error = (res.body as unknown as ErrorBody).error
    expect(error.code).toBe(code)
    const payment = await getPayment(ctx, String(error.details.payment_id))
    expect(payment).toMatchObject({ payment_status: 'FAILED', status_code: code })
    if (code === 'authentication_required')
      expect(error.details.next_action).toMatchObject({ payment_method_type: 'PAYMENT_LINK' })
  })
})

describe('Stripe cancellation', () => {
  test('cancelling a link the customer has already paid is 409; the late webhook then pays the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.setWebhookDelivery('manual')
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    expect(refused.status, refused.text).toBe(409)
    expect(refused.body.error.code).toBe('conflict')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('Stripe unreachable while cancelling: 502, the payment unchanged and its session still open', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.failNext({ status: 500, count: 5, pathPrefix: '/v1/checkout/sessions' })
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    emulator.clearFaults()
    expect(refused.status, refused.text).toBe(502)
    expect(refused.body.error.code).toBe('gateway_error')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    expect(emulator.state.checkoutSessions.get(String(payment.gateway_tracking_id))?.status).toBe(
      'open',
    )
  })

  test('an invoice paid offline while its link is open: withdraw_overtaken_pages expires the Checkout Session', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    await payOffline(ctx, invoice.id, '100.00')
    expect((await withdrawOvertakenPages(ctx.deps)).withdrawn).toBeGreaterThanOrEqual(1)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('CANCELLED')
    expect(emulator.state.checkoutSessions.get(String(payment.gateway_tracking_id))?.status).toBe(
      'expired',
    )
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('cancelling an open link expires its Checkout Session', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${payment.id}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    expect(cancelled.body.payment_status).toBe('CANCELLED')
    expect(emulator.state.checkoutSessions.get(String(payment.gateway_tracking_id))?.status).toBe(
      'expired',
    )
  })
})

describe('Stripe saved-card retries', () => {
  test('a charge that times out after Stripe took it is replayed on retry, never taken twice', async () => {
    const { invoice, saved } = await invoiceWithSavedCard('pm_card_visa')
    const intentsBefore = emulator.state.paymentIntents.size
    // No webhooks for now: only the retry can learn what Stripe did.
    emulator.setWebhookDelivery('manual')
    // Stripe confirms the PaymentIntent, but every answer is lost (stripe-node's own retries too).
    loseAnswers('/v1/payment_intents', { afterProcessing: true })
    const paymentId = await cardPaymentToProcess(invoice, saved)
    ctx.clock.advance(5_000)
    const failed = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(failed.status, failed.text).toBe(502)
    // Whether Stripe charged is unknown: PROCESSING, never FAILED, so its report could still settle it.
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'PROCESSING',
      amount_paid: '0.00',
    })
    emulator.clearFaults()
    ctx.clock.advance(60_000)
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    const intents = [...emulator.state.paymentIntents.values()].slice(intentsBefore)
    expect(intents.filter((pi) => pi.status === 'succeeded')).toHaveLength(1)
    // The webhooks of that one charge arrive late: they change nothing more.
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    const after = await ctx.get<{ amount_paid: string }>(`/v1/invoices/${invoice.id}`)
    expect(after.body.amount_paid).toBe('100.00')
    expect((await getPayment(ctx, paymentId)).amount_paid).toBe('100.00')
  })

  test('a declined charge whose answer was lost is failed by its payment_intent.payment_failed webhook', async () => {
    const { invoice, saved } = await invoiceWithSavedCard('pm_card_visa_chargeDeclined')
    emulator.setWebhookDelivery('manual')
    loseAnswers('/v1/payment_intents', { afterProcessing: true })
    const paymentId = await cardPaymentToProcess(invoice, saved)
    ctx.clock.advance(5_000)
    expect((await ctx.post(`/v1/payments/${paymentId}/process`)).status).toBe(502)
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PROCESSING')
    emulator.clearFaults()
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    // An off-session charge has no page to try again on: its decline ends it.
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'card_declined',
    })
  })

  test('a charge cut off by a dead process is asked again once stale, never beside a call still running', async () => {
    const { invoice, saved } = await invoiceWithSavedCard('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    const paymentId = await cardPaymentToProcess(invoice, saved)
    // What the process did before it died: PROCESSING, then the charge at Stripe, then nothing.
    const { payment } = await withLockedPayment(
      ctx.deps,
      ctx.scope,
      paymentId,
      async (trx, locked) => {
        const moved = await movePayment(
          trx,
          ctx.scope,
          locked,
          'PROCESSING',
          {},
          { cause: 'api', causeId: null },
          ctx.deps,
        )
        return moved.payment
      },
    )
    const method = await ctx.db
      .selectFrom('payment_methods')
      .selectAll()
      .where('id', '=', saved.id)
      .executeTakeFirstOrThrow()
    // The request /process would have sent: same customer, same idempotency key.
    const taken = await stripeGateway.chargeSavedMethod?.(
      await gatewayContext(ctx.deps, ctx.scope, 'stripe'),
      await gatewayRequestFor(ctx.deps, ctx.scope, payment),
      method,
    )
    expect(taken?.outcome).toBe('succeeded')
    // While the call could still be running, /process does not make another beside it.
    const early = await ctx.post<ErrorBody>(`/v1/payments/${paymentId}/process`)
    expect(early.status, early.text).toBe(422)
    ctx.clock.advance(5 * 60_000 + 1)
    const resumed = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(resumed.status, resumed.text).toBe(200)
    expect(resumed.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    const intents = [...emulator.state.paymentIntents.values()].filter(
      (pi) => pi.metadata.payrail_payment_id === paymentId,
    )
    expect(intents.map((pi) => pi.status)).toEqual(['succeeded'])
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })
})

describe('Stripe webhooks', () => {
  async function deliver(body: string, signature: string, path = webhookPath) {
    return ctx.app.inject({
      method: 'POST',
      url: path,
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      payload: body,
    })
  }

  test('bad signature, stale timestamp and unknown tenant change nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    const body = JSON.stringify({
      id: 'evt_forged',
      object: 'event',
      type: 'checkout.session.completed',
      data: { object: { id: payment.gateway_tracking_id } },
    })
    const now = Math.floor(ctx.clock.now().getTime() / 1000)
    expect((await deliver(body, `t=${now},v1=${'0'.repeat(64)}`)).statusCode).toBe(400)
    const stale = emulatorSignature(body, now - 301)
    expect((await deliver(body, stale)).statusCode).toBe(400)
    expect(
      (
        await deliver(
          body,
          emulatorSignature(body, now),
          `/v1/webhooks/stripe/ten_nobody/${ctx.main.test.id}`,
        )
      ).statusCode,
    ).toBe(404)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })

  test('a signed event without data.object, or with a non-integer amount, is 400, never a 500', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    const now = Math.floor(ctx.clock.now().getTime() / 1000)
    const bodies = [
      { id: 'evt_bad_1', object: 'event', type: 'checkout.session.completed' },
      { id: 'evt_bad_2', object: 'event', type: 'checkout.session.completed', data: null },
      {
        id: 'evt_bad_3',
        object: 'event',
        type: 'checkout.session.completed',
        data: { object: null },
      },
      {
        id: 'evt_bad_4',
        object: 'event',
        type: 'checkout.session.completed',
        data: { object: { id: payment.gateway_tracking_id, amount_total: 'abc' } },
      },
    ]
    // Fields of the wrong type deeper in: a fraction of a cent, a currency that is no string,
    // refunds that are not objects, an invoice's lines that are no list.
    const intent = (fields: Record<string, unknown>) => ({
      id: 'pi_bad',
      object: 'payment_intent',
      status: 'succeeded',
      amount: 10000,
      amount_received: 10000,
      currency: 'usd',
      metadata: { payrail_payment_id: payment.id },
      ...fields,
    })
    const typed = [
      ['payment_intent.succeeded', intent({ amount_received: 1.5 })],
      ['payment_intent.succeeded', intent({ currency: 5 })],
      [
        'charge.refunded',
        { id: 'ch_bad', object: 'charge', payment_intent: intent({}), refunds: { data: [null] } },
      ],
      [
        'refund.updated',
        {
          id: 're_bad',
          object: 'refund',
          status: 'succeeded',
          amount: 2.5,
          currency: 'usd',
          payment_intent: intent({}),
          metadata: {},
        },
      ],
    ] as const
    for (const [index, [type, object]] of typed.entries()) {
      bodies.push({
        id: `evt_bad_typed_${index}`,
        object: 'event',
        type,
        data: { object },
      } as never)
    }
    for (const event of bodies) {
      const body = JSON.stringify(event)
      const res = await deliver(body, emulatorSignature(body, now))
      expect(res.statusCode, body).toBe(400)
      expect(res.json().error.code).toBe('validation_error')
    }
    // A Stripe invoice it cannot read (a fraction of a cent, lines that are no list) is kept
    // as Stripe's replica and acknowledged, but not mirrored as a Payrail invoice.
    for (const [index, fields] of [{ total: 10.5 }, { lines: { data: 'x' } }].entries()) {
      const unreadable = JSON.stringify({
        id: `evt_unreadable_${index}`,
        object: 'event',
        type: 'invoice.finalized',
        data: {
          object: {
            id: `in_unreadable_${index}`,
            object: 'invoice',
            customer: 'cus_unreadable',
            currency: 'usd',
            status: 'open',
            total: 1000,
            ...fields,
          },
        },
      })
      expect((await deliver(unreadable, emulatorSignature(unreadable, now))).statusCode).toBe(200)
      const mirrored = await ctx.db
        .selectFrom('invoices')
        .select('id')
        .where('stripe_invoice_id', '=', `in_unreadable_${index}`)
        .execute()
      expect(mirrored).toEqual([])
    }
    // A negative amount is no money received: acknowledged, and nothing recorded.
    const negative = JSON.stringify({
      id: 'evt_negative',
      object: 'event',
      type: 'payment_intent.succeeded',
      data: { object: intent({ amount_received: -10000 }) },
    })
    expect((await deliver(negative, emulatorSignature(negative, now))).statusCode).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })

  test('the same event delivered 20 times at once applies once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await link(invoice.id)
    emulator.setWebhookDelivery('manual')
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    emulator.setWebhookDelivery('auto')
    const completed = emulator.listEvents('checkout.session.completed').at(-1)
    expect(completed).toBeDefined()
    const body = JSON.stringify(completed)
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        deliver(body, emulatorSignature(body, Math.floor(ctx.clock.now().getTime() / 1000))),
      ),
    )
    expect(results.every((r) => r.statusCode === 200)).toBe(true)
    const outcomes = results.map(
      (r) => (r.json() as { events: { outcome: string }[] }).events[0]?.outcome,
    )
    expect(outcomes.filter((o) => o === 'applied')).toHaveLength(1)
    const events = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${payment.id}&type=payment.succeeded`,
    )
    expect(events.body.items).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })
})

function emulatorSignature(body: string, timestamp: number): string {
  return signatureHeader(body, emulator.webhookSecret, timestamp)
}
