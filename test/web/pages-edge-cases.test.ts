/**
 * The sandbox's pages take only the sessions of their kind and no money past a session's
 * expiry; the dashboard's action forms take text fields only.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { eventsOf } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  offlinePayment,
  openSandboxCrypto,
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

describe('sandbox pages send the customer where the payment now says', () => {
  // docs/payments.md: success_url and cancel_url are editable while the payment is open.
  test.each([
    [
      'changed by PATCH while the checkout is open is where the paid page redirects',
      {
        success_url: 'https://merchant.example/old-thanks',
        cancel_url: 'https://merchant.example/old-cancel',
      },
      'https://merchant.example/new-thanks',
    ],
    [
      'added by PATCH to a checkout opened without one is used once it is paid',
      undefined,
      'https://merchant.example/thanks',
    ],
  ])('a success_url %s', async (_name, opened, patchedUrl) => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, undefined, opened)
    expect(link.status, link.text).toBe(201)
    const patched = await ctx.patch(`/v1/payments/${link.body.id}`, { success_url: patchedUrl })
    expect(patched.status, patched.text).toBe(200)
    const paid = await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    expect(paid.statusCode).toBe(303)
    expect(paid.headers.location).toBe(patchedUrl)
  })

  test('a cancel_url changed by PATCH is where Cancel sends the customer', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, undefined, {
      cancel_url: 'https://merchant.example/old-cancel',
    })
    const patched = await ctx.patch(`/v1/payments/${link.body.id}`, {
      cancel_url: 'https://merchant.example/new-cancel',
    })
    expect(patched.status, patched.text).toBe(200)
    const cancel = await ctx.app.inject({
      method: 'POST',
      url: `/sandbox/checkout/${sessionOf(link.body)}/cancel`,
    })
    expect(cancel.statusCode).toBe(303)
    expect(cancel.headers.location).toBe('https://merchant.example/new-cancel')
  })

  test('a crypto page confirmed after its success_url was changed redirects to the new one', async () => {
    const { crypto } = await openSandboxCrypto(ctx)
    const patched = await ctx.patch(`/v1/payments/${crypto.body.id}`, {
      success_url: 'https://merchant.example/crypto-thanks',
    })
    expect(patched.status, patched.text).toBe(200)
    const paid = await pagePost(ctx, `/sandbox/crypto/${sessionOf(crypto.body)}`, 'pay_and_confirm')
    expect(paid.statusCode).toBe(303)
    expect(paid.headers.location).toBe('https://merchant.example/crypto-thanks')
  })
})

describe('a crypto payment that received nothing has not succeeded', () => {
  async function cryptoOfOneCent() {
    const { invoice } = await invoiceToPay(
      ctx,
      {},
      { lines: [{ description: 'Tiny', quantity: 1, unit_amount: '0.01' }] },
    )
    const crypto = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'sandbox',
      amount: '0.01',
    })
    expect(crypto.status, crypto.text).toBe(201)
    return { invoice, crypto: crypto.body }
  }

  test('"Pay half" is not offered for 0.01, and posted anyway it pays nothing and changes nothing', async () => {
    const { invoice, crypto } = await cryptoOfOneCent()
    const url = `/sandbox/crypto/${sessionOf(crypto)}`
    const page = await open(url)
    expect(page.statusCode).toBe(200)
    expect(page.body).not.toContain('value="underpay"')
    expect(page.body).toContain('value="pay_and_confirm"')

    const posted = await pagePost(ctx, url, 'underpay')
    expect(posted.statusCode).toBe(200)
    expect(posted.body).toContain('Waiting for payment')
    expect(await getPayment(ctx, crypto.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
    expect(await eventsOf(ctx, crypto.id, 'payment.succeeded')).toHaveLength(0)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
    // The page still takes the whole cent.
    expect((await pagePost(ctx, url, 'pay_and_confirm')).statusCode).toBe(200)
    expect(await getPayment(ctx, crypto.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '0.01',
    })
  })

  test('"Pay 120%" of 0.01 pays one minor unit more: OVERPAID', async () => {
    const { invoice, crypto } = await cryptoOfOneCent()
    await pagePost(ctx, `/sandbox/crypto/${sessionOf(crypto)}`, 'overpay')
    expect(await getPayment(ctx, crypto.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '0.02',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.02')
  })

  test('a confirmation reporting nothing received fails the payment (underpaid), with no payment.succeeded', async () => {
    const { invoice, crypto } = await cryptoOfOneCent()
    const res = await postSandboxWebhook(
      ctx,
      sandboxEventBody(`sbevt_nothing_${crypto.id}`, 'crypto.confirmed', {
        payment_id: crypto.id,
        session_id: sessionOf(crypto),
        amount: 1,
        amount_received: 0,
        currency: 'usd',
      }),
    )
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().events[0]?.outcome).toBe('applied')
    expect(await getPayment(ctx, crypto.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_paid: '0.00',
      status_code: 'underpaid',
    })
    expect(await eventsOf(ctx, crypto.id, 'payment.succeeded')).toHaveLength(0)
    expect(await eventsOf(ctx, crypto.id, 'payment.failed')).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '0.00' })
  })
})
