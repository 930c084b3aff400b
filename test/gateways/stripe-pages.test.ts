/**
 * A Stripe Checkout Session asks what its payment asks, and only while its invoice can be
 * paid: it expires at the end of the invoice's payment window when that comes before Stripe's
 * default 24 h, and a session opened while the payment's amount changed is withdrawn.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { stripeGateway } from '../../src/gateways/stripe/stripe.gateway.ts'
import { opener } from '../async-helpers.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
} from '../payments-helpers.ts'
import { connectStripeEmulator } from '../stripe-helpers.ts'

let ctx: TestContext
let emulator: StripeEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  emulator = await connectStripeEmulator(ctx)
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

const HOUR = 60 * 60 * 1000
const MINUTE = 60 * 1000

/** A finalized invoice of 100.00 whose payment window ends a day after now, and that end. */
async function invoiceWithWindow() {
  const { invoice } = await invoiceToPay(ctx, {}, { payment_window_days: 1 })
  return { invoice, windowEnds: new Date(String(invoice.payment_window_ends_at)) }
}

function stripeLink(invoiceId: string, extra: Record<string, unknown> = {}) {
  return createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'stripe',
    amount: '100.00',
    ...extra,
  })
}

function sessionExpiry(payment: PaymentBody): number | undefined {
  return emulator.state.checkoutSessions.get(String(payment.gateway_tracking_id))?.expiresAt
}

describe('a Stripe Checkout Session and its invoice payment window', () => {
  test('a window that outlasts 24 h: Stripe default, 24 h', async () => {
    const { invoice } = await invoiceToPay(ctx, {}, { payment_window_days: 3 })
    const link = await stripeLink(invoice.id)
    expect(link.status, link.text).toBe(201)
    const now = Math.floor(ctx.clock.now().getTime() / 1000)
    expect(sessionExpiry(link.body)).toBe(now + 24 * 60 * 60)
  })

  test('a window ending sooner: the session expires at its end (created, or processed later)', async () => {
    const { invoice, windowEnds } = await invoiceWithWindow()
    ctx.clock.advance(12 * HOUR)
    const opened = await stripeLink(invoice.id, { amount: '50.00' })
    expect(opened.status, opened.text).toBe(201)
    const later = await stripeLink(invoice.id, { amount: '50.00', process_payment: false })
    expect(later.status, later.text).toBe(201)
    ctx.clock.advance(HOUR)
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${later.body.id}/process`)
    expect(processed.status, processed.text).toBe(200)
    // Before, 24 h from its creation: payable 12 h after the window had closed.
    for (const link of [opened.body, processed.body]) {
      expect(link.payment_status).toBe('PENDING')
      expect(sessionExpiry(link)).toBe(Math.floor(windowEnds.getTime() / 1000))
    }
  })

  test('a window ending in less than 31 minutes: 422 before anything is written or asked of Stripe', async () => {
    const { invoice, windowEnds } = await invoiceWithWindow()
    const unprocessed = await stripeLink(invoice.id, { process_payment: false })
    expect(unprocessed.status, unprocessed.text).toBe(201)
    ctx.clock.advance(windowEnds.getTime() - ctx.clock.now().getTime() - 20 * MINUTE)
    const sessions = emulator.state.checkoutSessions.size
    const refused = await stripeLink(invoice.id, { amount: '1.00' })
    expect(refused.status, refused.text).toBe(422)
    expect((refused.body as unknown as ErrorBody).error).toMatchObject({
      code: 'invalid_state_transition',
      details: { payment_window_ends_at: windowEnds.toISOString(), payment_gateway: 'stripe' },
    })
    const payments = await ctx.get<{ items: PaymentBody[] }>(
      `/v1/payments?destination_id=${invoice.id}`,
    )
    expect(payments.body.items.map((p) => p.id)).toEqual([unprocessed.body.id])
    // One made earlier and processed now: refused the same way, left INITIATED.
    const processed = await ctx.post<ErrorBody>(`/v1/payments/${unprocessed.body.id}/process`)
    expect(processed.status, processed.text).toBe(422)
    expect(processed.body.error.code).toBe('invalid_state_transition')
    expect((await getPayment(ctx, unprocessed.body.id)).payment_status).toBe('INITIATED')
    expect(emulator.state.checkoutSessions.size).toBe(sessions)
  })
})

describe('a discount code applied to the payment while its Stripe session is being opened', () => {
  test('the session is withdrawn (409), the payment stays open, and processed again it opens one for the new amount', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const discount = await ctx.post<{ code: string }>('/v1/discounts', {
      code: `STRIPE-RACE-${invoice.id}`,
      percent_off: 10,
    })
    expect(discount.status, discount.text).toBe(201)
    const created = await stripeLink(invoice.id, { process_payment: false })
    expect(created.status, created.text).toBe(201)
    // Stripe answers only once the code is applied: the session asks the old 100.00.
    const open = stripeGateway.createCheckout?.bind(stripeGateway)
    const { promise: codeApplied, open: applied } = opener()
    const { promise: stripeAsked, open: asked } = opener()
    const spy = vi
      .spyOn(stripeGateway, 'createCheckout')
      .mockImplementationOnce(async (gctx, request) => {
        asked()
        await codeApplied
        if (!open) throw new Error('stripe opens no pages')
        return open(gctx, request)
      })
    try {
      const processing = ctx.post<ErrorBody>(`/v1/payments/${created.body.id}/process`)
      await stripeAsked
      const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
        discount_code: discount.body.code,
      })
      expect(patched.status, patched.text).toBe(200)
      expect(patched.body.amount).toBe('90.00')
      applied()
      const processed = await processing
      // Before, the session for 100.00 became the payment's: the customer paid 100.00 of 90.00.
      expect(processed.status, processed.text).toBe(409)
      expect(processed.body.error.details).toMatchObject({
        amount: '90.00',
        page_amount: '100.00',
      })
    } finally {
      spy.mockRestore()
    }
    const withdrawn = [...emulator.state.checkoutSessions.values()].filter(
      (session) => session.metadata.payrail_payment_id === created.body.id,
    )
    expect(withdrawn.map((session) => session.status)).toEqual(['expired'])
    // Stripe's report of the withdrawal names no page of the payment: it stays open.
    await vi.waitFor(async () => {
      const events = await ctx.pool.query<{ outcome: string }>(
        `select outcome from webhook_events where event_type = 'checkout.session.expired'
         and payload->'data'->'object'->>'id' = $1 and handled_at is not null`,
        [withdrawn[0]?.id],
      )
      expect(events.rows).toEqual([{ outcome: 'unknown_payment' }])
    })
    expect(await getPayment(ctx, created.body.id)).toMatchObject({
      payment_status: 'INITIATED',
      amount: '90.00',
    })
    const again = await ctx.post<PaymentBody>(`/v1/payments/${created.body.id}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body.payment_status).toBe('PENDING')
    const session = emulator.state.checkoutSessions.get(String(again.body.gateway_tracking_id))
    expect(session?.amountTotal).toBe(9000)
    emulator.completeCheckoutSession(String(again.body.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    await vi.waitFor(async () =>
      expect(await getInvoice(ctx, invoice.id)).toMatchObject({
        amount_due: '90.00',
        amount_paid: '90.00',
        payment_status: 'SUCCEEDED',
      }),
    )
  })
})
