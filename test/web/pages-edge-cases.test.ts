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

const open = (url: string) => ctx.app.inject({ method: 'GET', url })

describe('sandbox checkout as it now stands', () => {
  // docs/payments.md: a second click of Pay shows the page paid, as the first answer did, and
  // nothing is charged again (a double click, a form sent again with the back button).
  test('Pay sent again after the checkout was paid goes to success_url, as the first did, and charges nothing more', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, undefined, {
      success_url: 'https://merchant.example/thanks',
      cancel_url: 'https://merchant.example/cancelled',
    })
    const session = sessionOf(link.body)
    for (let i = 0; i < 2; i++) {
      const sent = await submitCard(ctx, session, '4242424242424242')
      expect(sent.statusCode).toBe(303)
      expect(sent.headers.location).toBe('https://merchant.example/thanks')
    }
    expect(await getPayment(ctx, link.body.id)).toMatchObject({ amount_paid: '100.00' })
    expect(
      (await getPayment(ctx, link.body.id)).attempts.filter((a) => a.status === 'succeeded'),
    ).toHaveLength(1)
  })

  test('Complete authentication sent twice goes to success_url both times', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, undefined, {
      success_url: 'https://merchant.example/thanks',
    })
    const session = sessionOf(link.body)
    expect((await submitCard(ctx, session, '4000002760003184')).statusCode).toBe(303)
    for (let i = 0; i < 2; i++) {
      const sent = await pagePost(ctx, `/sandbox/checkout/${session}/challenge`, 'approve')
      expect(sent.statusCode).toBe(303)
      expect(sent.headers.location).toBe('https://merchant.example/thanks')
    }
    expect(await getPayment(ctx, link.body.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('Cancel pressed on a checkout that is already paid (a second tab) does not send the customer to cancel_url', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, undefined, {
      success_url: 'https://merchant.example/thanks',
      cancel_url: 'https://merchant.example/cancelled',
    })
    const session = sessionOf(link.body)
    const paid = await submitCard(ctx, session, '4242424242424242')
    expect(paid.statusCode).toBe(303)
    expect(paid.headers.location).toBe('https://merchant.example/thanks')
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('SUCCEEDED')

    // A second tab, loaded before the payment, presses Cancel: the page as it now stands is paid.
    const cancel = await ctx.app.inject({
      method: 'POST',
      url: `/sandbox/checkout/${session}/cancel`,
    })
    expect(cancel.headers.location).not.toBe('https://merchant.example/cancelled')
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('SUCCEEDED')
  })

  test('Cancel on a paid checkout without cancel_url does not tell the customer "Checkout cancelled"', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = sessionOf(link.body)
    expect((await submitCard(ctx, session, '4242424242424242')).statusCode).toBe(200)
    const cancel = await ctx.app.inject({
      method: 'POST',
      url: `/sandbox/checkout/${session}/cancel`,
    })
    expect(cancel.body).not.toContain('Checkout cancelled')
    expect(cancel.body).toMatch(/paid|complete/i)
  })

  test('a card entered on the checkout form while a 3-D Secure challenge is pending is not answered "This checkout has expired"', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = sessionOf(link.body)
    const challenged = await submitCard(ctx, session, '4000002760003184')
    expect(challenged.statusCode).toBe(303)
    expect(challenged.headers.location).toBe(`/sandbox/checkout/${session}/challenge`)

    // The customer goes back to the checkout page: it offers the card form again...
    const form = await open(`/sandbox/checkout/${session}`)
    expect(form.statusCode).toBe(200)
    expect(form.body).toContain(`action="/sandbox/checkout/${session}"`)
    // ...and a card sent from it is taken (or sent to the pending challenge), not refused
    // as if the session, which is still valid for 24 h, had expired.
    const other = await submitCard(ctx, session, '4242424242424242')
    expect(other.body).not.toContain('This checkout has expired')
    expect(other.statusCode).toBe(200)
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('SUCCEEDED')
    // The abandoned challenge, answered late, takes nothing more: the page is shown paid.
    const late = await pagePost(ctx, `/sandbox/checkout/${session}/challenge`, 'approve')
    expect(late.statusCode).toBe(200)
    expect(late.body).toMatch(/paid/i)
    expect(await getPayment(ctx, link.body.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('the 3-D Secure challenge URL of a checkout that is still open does not say "This checkout has expired"', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = sessionOf(link.body)
    // The customer failed the challenge (the page stays open for another try), then pressed
    // Back to the challenge URL: the checkout is open, valid for 24 h, and takes cards.
    expect((await submitCard(ctx, session, '4000002760003184')).statusCode).toBe(303)
    expect(
      (
        await ctx.app.inject({
          method: 'POST',
          url: `/sandbox/checkout/${session}/challenge`,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          payload: 'action=fail',
        })
      ).statusCode,
    ).toBe(402)
    const back = await open(`/sandbox/checkout/${session}/challenge`)
    expect(back.body).not.toContain('This checkout has expired')
    // And indeed the checkout still takes a card.
    expect((await submitCard(ctx, session, '4242424242424242')).statusCode).toBe(200)
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('SUCCEEDED')
  })

  test('the hosted pages cannot be framed by another site and are not cached', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const { crypto } = await openSandboxCrypto(ctx)
    for (const url of [
      `/sandbox/checkout/${sessionOf(link.body)}`,
      `/sandbox/crypto/${sessionOf(crypto.body)}`,
      `/pay/${link.body.id}/complete`,
      `/pay/${link.body.id}/cancelled`,
    ]) {
      const page = await open(url)
      expect(page.statusCode, url).toBe(200)
      expect(page.headers['x-frame-options'], url).toBe('DENY')
      expect(page.headers['content-security-policy'], url).toContain("frame-ancestors 'none'")
      // Their forms are answered with a redirect to the merchant's URLs: no form-action.
      expect(page.headers['content-security-policy'], url).not.toContain('form-action')
      expect(page.headers['cache-control'], url).toBe('no-store')
    }
  })
})
