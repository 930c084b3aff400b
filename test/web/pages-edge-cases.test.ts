/**
 * The sandbox's pages take only the sessions of their kind and no money past a session's
 * expiry; the dashboard's action forms take text fields only.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  offlinePayment,
  openSandboxCrypto,
  pagePost,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('sandbox hosted pages', () => {
  test('a card checkout session (PAYMENT_LINK) cannot be paid through the crypto page', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    expect(link.body.payment_url).toContain('/sandbox/checkout/')
    const res = await pagePost(ctx, `/sandbox/crypto/${sessionOf(link.body)}`, 'overpay')
    expect(res.statusCode).toBeGreaterThanOrEqual(400)
    expect(res.statusCode).toBeLessThan(500)
    const payment = await getPayment(ctx, link.body.id)
    expect(payment).toMatchObject({ payment_status: 'PENDING', amount_paid: '0.00' })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })

  test('a crypto invoice session cannot be paid with a card on the checkout page', async () => {
    const { crypto } = await openSandboxCrypto(ctx)
    expect(crypto.body.payment_url).toContain('/sandbox/crypto/')
    const res = await submitCard(ctx, sessionOf(crypto.body), '4242424242424242')
    expect(res.statusCode).toBeGreaterThanOrEqual(400)
    expect(res.statusCode).toBeLessThan(500)
    expect(await getPayment(ctx, crypto.body.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
  })
})

describe('dashboard actions', () => {
  test('a JSON body with a number amount on the refund action is a 4xx, not a 500', async () => {
    const { payment } = await offlinePayment(ctx, '10.00')
    const login = await ctx.app.inject({
      method: 'POST',
      url: '/dashboard/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ key: ctx.main.key }).toString(),
    })
    expect(login.statusCode).toBe(303)
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/dashboard/payments/${payment.id}/refund`,
      headers: { cookie, 'content-type': 'application/json' },
      payload: JSON.stringify({ idempotency_key: `dash_${'a'.repeat(32)}`, amount: 5 }),
    })
    expect(res.statusCode).toBeGreaterThanOrEqual(400)
    expect(res.statusCode).toBeLessThan(500)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('0.00')
  })
})

// Last: it moves the clock on.
describe('sandbox session expiry', () => {
  test('a 3-D Secure approval on a session past its 24 h expiry takes no money, as a card would not', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = sessionOf(link.body)
    const challenged = await submitCard(ctx, session, '4000002760003184')
    expect(challenged.statusCode).toBe(303)
    expect(challenged.headers.location).toBe(`/sandbox/checkout/${session}/challenge`)

    ctx.clock.advance(25 * 60 * 60 * 1000)
    // The same page's card form refuses a card now: the session has expired (409).
    const other = await invoiceToPay(ctx)
    const expiredLink = await createSandboxLink(ctx, other.invoice)
    ctx.clock.advance(25 * 60 * 60 * 1000)
    const card = await submitCard(ctx, sessionOf(expiredLink.body), '4242424242424242')
    expect(card.statusCode).toBe(409)

    const approved = await pagePost(ctx, `/sandbox/checkout/${session}/challenge`, 'approve')
    expect(approved.statusCode).toBe(409)
    // No money; and the page, lapsed, has expired its payment as a provider's page would.
    expect(await getPayment(ctx, link.body.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
      amount_paid: '0.00',
    })
  })
})
