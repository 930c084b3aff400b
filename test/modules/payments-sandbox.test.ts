import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import type { SandboxSession } from '../../src/db/database.ts'
import { gatewayContext } from '../../src/gateways/registry.ts'
import { sandboxGateway } from '../../src/gateways/sandbox/sandbox.gateway.ts'
import {
  cryptoAction,
  findSession,
  submitCard as submitCardOnPage,
} from '../../src/gateways/sandbox/sandbox-provider.ts'
import { opener } from '../async-helpers.ts'
import { eventsOf, finalizedInvoice } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  chargeDefaultCard,
  createPayment,
  createSandboxLink,
  customerWithSavedCard,
  getInvoice,
  getPayment,
  invoiceToPay,
  openSandboxCrypto,
  type PaymentBody,
  pagePost,
  postSandboxWebhook,
  sandboxEventBody,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('sandbox payment links', () => {
  test('link → customer pays with 4242 → webhook → SUCCEEDED, invoice paid', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
      success_url: 'https://merchant.example/thanks',
      cancel_url: 'https://merchant.example/cancel',
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      payment_status: 'PENDING',
      current_state: 'pending',
      payment_gateway: 'sandbox',
    })
    const session = sessionOf(created.body)
    expect(created.body.gateway_tracking_id).toBe(session)
    const page = await ctx.app.inject({ method: 'GET', url: `/sandbox/checkout/${session}` })
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('100.00 USD')
    const paid = await submitCard(ctx, session, '4242 4242 4242 4242')
    expect(paid.statusCode).toBe(303)
    expect(paid.headers.location).toBe('https://merchant.example/thanks')
    const payment = await getPayment(ctx, created.body.id)
    expect(payment).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
    })
  })

  test.each([
    ['4000000000000002', 'card_declined'],
    ['4000000000009995', 'insufficient_funds'],
    ['4000000000009987', 'card_declined'],
    ['4000000000000069', 'expired_card'],
  ])(
    'card %s is declined on the page (%s); the link stays open and a good card then pays',
    async (number, code) => {
      const { invoice } = await invoiceToPay(ctx)
      const created = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'sandbox',
        amount: '100.00',
      })
      const session = sessionOf(created.body)
      const declined = await submitCard(ctx, session, number)
      expect(declined.statusCode).toBe(402)
      const pending = await getPayment(ctx, created.body.id)
      expect(pending.payment_status).toBe('PENDING')
      expect(pending.attempts.at(-1)).toMatchObject({ status: 'failed', error_code: code })
      expect((await submitCard(ctx, session, '4242424242424242')).statusCode).toBe(200)
      expect((await getPayment(ctx, created.body.id)).payment_status).toBe('SUCCEEDED')
    },
  )

  test('3-D Secure: challenge approved pays; failed keeps it open', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
    })
    const session = sessionOf(created.body)
    const challenge = await submitCard(ctx, session, '4000002760003184')
    expect(challenge.statusCode).toBe(303)
    expect(challenge.headers.location).toBe(`/sandbox/checkout/${session}/challenge`)
    expect((await pagePost(ctx, `/sandbox/checkout/${session}/challenge`, 'fail')).statusCode).toBe(
      402,
    )
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('PENDING')
    await submitCard(ctx, session, '4000002760003184')
    expect(
      (await pagePost(ctx, `/sandbox/checkout/${session}/challenge`, 'approve')).statusCode,
    ).toBe(200)
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('SUCCEEDED')
  })

  test('saved card becomes the default and a CARD payment succeeds off-session', async () => {
    const { customer, nextInvoiceId } = await customerWithSavedCard(ctx)
    const shown = await ctx.get<{ default_payment_method_id: string }>(
      `/v1/customers/${customer.id}`,
    )
    expect(shown.body.default_payment_method_id).toMatch(/^pm_/)
    const card = await chargeDefaultCard(ctx, nextInvoiceId)
    expect(card.status).toBe(201)
    expect(card.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_method_id: shown.body.default_payment_method_id,
    })
  })

  test('CARD without a default payment method is 402 no_default_payment_method', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'sandbox',
      amount: '100.00',
    })
    expect(res.status).toBe(402)
    expect((res.body as unknown as ErrorBody).error.code).toBe('no_default_payment_method')
  })
})

describe("a saved card's charge, reported by the sandbox before its answer", () => {
  // The sandbox's `charge.*` webhook is applied before the charge call returns, and carries no
  // attempt: the answer records it (one attempt, with its charge id), decline or success.
  test.each([
    ['4242424242424242', 'SUCCEEDED', 'succeeded'],
    ['4000000000000002', 'FAILED', 'failed'],
  ])('card %s: %s with one %s attempt', async (card, status, attemptStatus) => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const link = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '50.00',
      save_card_and_make_default: true,
    })
    // A good card is saved first; the saved card then behaves as the card under test.
    expect((await submitCard(ctx, sessionOf(link.body), '4242424242424242')).statusCode).toBe(200)
    const method = await ctx.db
      .selectFrom('payment_methods')
      .select('gateway_payment_method_id')
      .where('customer_id', '=', customer.id)
      .executeTakeFirstOrThrow()
    await ctx.db
      .updateTable('sandbox_cards')
      .set({ number: card })
      .where('id', '=', method.gateway_payment_method_id)
      .execute()
    const charged = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      amount: '50.00',
    })
    expect(charged.status, charged.text).toBeLessThan(500)
    const [row] = await ctx.db
      .selectFrom('payments')
      .select('id')
      .where('destination_id', '=', invoice.id)
      .where('payment_method_type', '=', 'CARD')
      .execute()
    const payment = await getPayment(ctx, String(row?.id))
    expect(payment.payment_status).toBe(status)
    expect(payment.attempts.map((a) => a.status)).toEqual([attemptStatus])
    const [attempt] = payment.attempts as { gateway_payment_id?: string | null }[]
    expect(attempt?.gateway_payment_id).toMatch(/^sbch_/)
  })
})

describe('a page the gateway failed to open, answered after the payment moved on', () => {
  /**
   * An INITIATED sandbox link, processed with `POST /v1/payments/:id/process`, whose gateway
   * call fails once `during` has run while the call was out.
   */
  async function failAfter(during: (paymentId: string) => Promise<void>) {
    const { invoice } = await invoiceToPay(ctx)
    const created = await createSandboxLink(ctx, invoice, invoice.amount_due, {
      process_payment: false,
    })
    expect(created.body.payment_status).toBe('INITIATED')
    const { promise: called, open: calling } = opener()
    const { promise: answered, open: answer } = opener()
    const spy = vi.spyOn(sandboxGateway, 'createCheckout').mockImplementationOnce(async () => {
      calling()
      await answered
      return {
        ok: false,
        failure: { code: 'network_error', message: 'timed out', retryable: true },
      }
    })
    try {
      const processing = ctx.post<ErrorBody>(`/v1/payments/${created.body.id}/process`)
      await called
      await during(created.body.id)
      answer()
      const failed = await processing
      expect(failed.status, failed.text).toBe(502)
      expect(failed.body.error.code).toBe('gateway_error')
    } finally {
      spy.mockRestore()
    }
    return getPayment(ctx, created.body.id)
  }

  test('cancelled meanwhile: the failure is not written on the cancelled payment', async () => {
    const after = await failAfter(async (id) => {
      const cancelled = await ctx.post(`/v1/payments/${id}/cancel`)
      expect(cancelled.status, cancelled.text).toBe(200)
    })
    expect(after).toMatchObject({ payment_status: 'CANCELLED', status_code: null })
    expect(after.attempts).toEqual([])
  })

  test('opened by a concurrent call meanwhile: its page stands, with no error on it', async () => {
    const after = await failAfter(async (id) => {
      const opened = await ctx.post<PaymentBody>(`/v1/payments/${id}/process`)
      expect(opened.status, opened.text).toBe(200)
      expect(opened.body.payment_status).toBe('PENDING')
    })
    expect(after).toMatchObject({
      payment_status: 'PENDING',
      status_code: null,
      error_message: null,
    })
    expect(after.payment_url).toMatch(/\/sandbox\/checkout\//)
    expect(after.attempts.map((a) => a.status)).toEqual(['pending'])
  })
})

describe('a sandbox page closed while the customer pays it', () => {
  test('a card submitted on a page read before it was closed takes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = await findSession(ctx.db, sessionOf(link.body))
    expect(session?.status).toBe('open')
    const cancelled = await ctx.post(`/v1/payments/${link.body.id}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    // The page's request read the session as open, just before the merchant closed it.
    const sandbox = await gatewayContext(ctx.deps, ctx.scope, 'sandbox')
    const submitted = await submitCardOnPage(sandbox, session as SandboxSession, {
      number: '4242424242424242',
      expMonth: 12,
      expYear: 2030,
    })
    expect(submitted.kind).toBe('closed')
    expect((await findSession(ctx.db, sessionOf(link.body)))?.status).toBe('expired')
    expect(await getPayment(ctx, link.body.id)).toMatchObject({ payment_status: 'CANCELLED' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '0.00' })
  })

  test('a second click of Pay, on the page as it was read before the first: shown paid, charged once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const read = (await findSession(ctx.db, sessionOf(link.body))) as SandboxSession
    expect((await submitCard(ctx, read.id, '4242424242424242')).statusCode).toBe(200)
    const sandbox = await gatewayContext(ctx.deps, ctx.scope, 'sandbox')
    const again = await submitCardOnPage(sandbox, read, {
      number: '4242424242424242',
      expMonth: 12,
      expYear: 2030,
    })
    expect(again).toMatchObject({ kind: 'completed', session: { status: 'complete' } })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('crypto: a page read before its coins were sent neither sends them again nor completes with another amount', async () => {
    const { crypto } = await openSandboxCrypto(ctx)
    const read = (await findSession(ctx.db, sessionOf(crypto.body))) as SandboxSession
    const sandbox = await gatewayContext(ctx.deps, ctx.scope, 'sandbox')
    expect((await cryptoAction(sandbox, read, 'pay')).status).toBe('confirming')
    // A second tab, loaded while the page was open.
    for (const action of ['pay_and_confirm', 'overpay', 'expire'] as const)
      expect(await cryptoAction(sandbox, read, action)).toMatchObject({
        status: 'confirming',
        amount_received: 10000n,
      })
    // Nor does the card page's cancel expire it: a crypto session is not the card page's.
    const cancelled = await pagePost(ctx, `/sandbox/checkout/${read.id}/cancel`, 'cancel')
    expect(cancelled.statusCode).toBe(404)
    expect((await findSession(ctx.db, read.id))?.status).toBe('confirming')
    expect((await getPayment(ctx, crypto.body.id)).payment_status).toBe('PROCESSING')
    expect(await eventsOf(ctx, crypto.body.id, 'payment.failed')).toEqual([])
  })
})

describe('sandbox webhooks signed but not shaped like a sandbox event', () => {
  test('are 400, never a 500, and change nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const base = {
      payment_id: link.body.id,
      session_id: null,
      charge_id: null,
      amount: 10000,
      amount_received: 10000,
      currency: 'usd',
      card: null,
      error: null,
      refund_id: null,
      gateway_refund_id: null,
    }
    const datas = [
      { ...base, amount_received: undefined },
      { ...base, amount_received: 'abc' },
      { ...base, amount_received: 1.5 },
      { ...base, amount_received: {} },
      { ...base, amount: null },
      { ...base, card: { saved: true } },
      { ...base, error: 'declined' },
      { ...base, currency: null },
      { ...base, currency: 5 },
    ]
    for (const [i, data] of datas.entries()) {
      const body = JSON.stringify({
        id: `sbevt_bad_${i}`,
        type: 'checkout.completed',
        created: 0,
        data,
      })
      const res = await postSandboxWebhook(ctx, body)
      expect(res.statusCode, JSON.stringify(data)).toBe(400)
    }
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('PENDING')
    // Well formed, signed, but its amounts in another currency than the payment's: ignored.
    const body = JSON.stringify({
      id: 'sbevt_other_currency',
      type: 'checkout.completed',
      created: 0,
      data: { ...base, currency: 'jpy' },
    })
    const res = await postSandboxWebhook(ctx, body)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ events: [{ outcome: 'ignored' }] })
    expect(await getPayment(ctx, link.body.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })
})

describe('a refund made at the provider, reported by webhook', () => {
  const refundBody = (paymentId: string, id: string) =>
    sandboxEventBody(id, 'refund.succeeded', {
      payment_id: paymentId,
      amount: 3000,
      gateway_refund_id: 'sbre_outside',
    })

  test('before the payment settled is refused, to be sent again; then it is recorded once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const early = await postSandboxWebhook(ctx, refundBody(link.body.id, 'sbevt_outside_1'))
    expect(early.statusCode).toBe(409)
    await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('SUCCEEDED')
    // Sent again, and once more as a duplicate: recorded once.
    for (const id of ['sbevt_outside_1', 'sbevt_outside_1', 'sbevt_outside_2']) {
      expect((await postSandboxWebhook(ctx, refundBody(link.body.id, id))).statusCode).toBe(200)
    }
    expect(await getPayment(ctx, link.body.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '30.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '100.00',
      amount_refunded: '30.00',
    })
  })

  test("without the provider's refund id is not recorded", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    const body = JSON.parse(refundBody(link.body.id, 'sbevt_outside_noid'))
    body.data.gateway_refund_id = null
    const res = await postSandboxWebhook(ctx, JSON.stringify(body))
    expect(res.statusCode).toBe(200)
    expect((await getPayment(ctx, link.body.id)).amount_refunded).toBe('0.00')
  })
})

describe('a saved card past its expiry', () => {
  // The hosted page refuses a card whose expiry has passed; a card saved while valid and
  // charged off-session after its expiry month is declined `expired_card`, as Stripe's is.
  test('charged off-session, it is declined expired_card (402), the payment FAILED and the invoice unpaid', async () => {
    const now = ctx.clock.now()
    const { customer, nextInvoiceId } = await customerWithSavedCard(ctx, {
      month: String(now.getUTCMonth() + 1).padStart(2, '0'),
      year: String(now.getUTCFullYear()),
    })
    // Still good until its month ends: charged.
    const good = await chargeDefaultCard(ctx, nextInvoiceId)
    expect(good.status, good.text).toBe(201)
    ctx.clock.advance(92 * 24 * 60 * 60 * 1000)
    const next = await finalizedInvoice(ctx, customer.id)
    const res = await chargeDefaultCard(ctx, next.id)
    expect(res.status, res.text).toBe(402)
    const { error } = res.body as unknown as ErrorBody
    expect(error.code).toBe('expired_card')
    expect((await getPayment(ctx, String(error.details.payment_id))).payment_status).toBe('FAILED')
    expect(await getInvoice(ctx, next.id)).toMatchObject({ amount_paid: '0.00' })
  })
})

// Last in the file: it moves the clock on.
describe("a page opened near the end of its invoice's payment window", () => {
  // docs/billing.md: after `payment_window_ends_at` the invoice can no longer be paid; a page
  // opened inside the window expires with it, not 24 h after it opened.
  test('expires when the window ends, whether opened as the link is made or processed later, and takes no card after', async () => {
    const { invoice } = await invoiceToPay(ctx, {}, { payment_window_days: 1 })
    expect(invoice.payment_window_ends_at).not.toBeNull()
    const windowEnds = String(invoice.payment_window_ends_at)
    ctx.clock.advance(12 * 60 * 60 * 1000)
    const opened = await createSandboxLink(ctx, invoice, '50.00')
    expect(opened.status, opened.text).toBe(201)
    const unprocessed = await createSandboxLink(ctx, invoice, '50.00', { process_payment: false })
    expect(unprocessed.status, unprocessed.text).toBe(201)
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${unprocessed.body.id}/process`)
    expect(processed.status, processed.text).toBe(200)
    for (const link of [opened.body, processed.body]) {
      expect(link.payment_status).toBe('PENDING')
      const session = await findSession(ctx.db, sessionOf(link))
      // Before, every page lived 24 h: this one 18 h past the window.
      expect(session?.expires_at.toISOString()).toBe(new Date(windowEnds).toISOString())
    }
    // 18 h later: within the pages' old 24 h, past the window.
    ctx.clock.advance(18 * 60 * 60 * 1000)
    for (const link of [opened.body, processed.body]) {
      const paid = await submitCard(ctx, sessionOf(link), '4242424242424242')
      expect(paid.statusCode).toBeGreaterThanOrEqual(400)
      expect(paid.statusCode).toBeLessThan(500)
      expect(await getPayment(ctx, link.id)).toMatchObject({
        payment_status: 'FAILED',
        amount_paid: '0.00',
      })
    }
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '0.00',
      payment_status: 'FAILED',
    })
  })
})
