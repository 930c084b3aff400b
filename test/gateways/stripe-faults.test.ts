/**
 * Stripe failing while Payrail reads its report, and its connection removed while a
 * payment through it is open.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { signatureHeader } from '../emulators/stripe/signing.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { createPayment, getInvoice, getPayment, invoiceToPay } from '../payments-helpers.ts'
import { connectStripeEmulator, stripeWebhookPath } from '../stripe-helpers.ts'

let ctx: TestContext
let emulator: StripeEmulator
beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  emulator = await connectStripeEmulator(ctx)
  emulator.setWebhookDelivery('manual')
})
afterAll(async () => {
  await emulator?.close()
  await ctx?.close()
})

function stripeDeliver(body: string) {
  const now = Math.floor(ctx.clock.now().getTime() / 1000)
  return ctx.app.inject({
    method: 'POST',
    url: stripeWebhookPath(ctx),
    headers: {
      'content-type': 'application/json',
      'stripe-signature': signatureHeader(body, emulator.webhookSecret, now),
    },
    payload: body,
  })
}

async function openStripeLink() {
  const { invoice } = await invoiceToPay(ctx)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'stripe',
    amount: '100.00',
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body.payment_status).toBe('PENDING')
  return { invoice, payment: res.body }
}

function completedEventOf(sessionId: string) {
  const event = emulator
    .listEvents('checkout.session.completed')
    .find((e) => (e.data as { object: { id: string } }).object.id === sessionId)
  expect(event).toBeDefined()
  return JSON.stringify(event)
}

describe('Stripe: faults while a webhook is verified', () => {
  test('a checkout.session.completed whose PaymentIntent Stripe cannot serve (5xx) is 502 gateway_error (a 500 internal_error before), which Stripe redelivers; redelivered, it pays', async () => {
    const { invoice, payment } = await openStripeLink()
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    const body = completedEventOf(String(payment.gateway_tracking_id))
    emulator.failNext({ status: 500, count: 3, pathPrefix: '/v1/payment_intents', method: 'GET' })
    const refused = await stripeDeliver(body)
    emulator.clearFaults()
    expect(refused.statusCode, refused.body).toBe(502)
    expect(refused.json().error.code).toBe('gateway_error')
    const again = await stripeDeliver(body)
    expect(again.statusCode, again.body).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })
})

describe('Stripe: the connection while a link is open', () => {
  test('cannot be deleted or deactivated (409, naming the payment); the link then settles, and the connection can go', async () => {
    const { invoice, payment } = await openStripeLink()
    const connections = await ctx.get<{ items: { id: string }[] }>('/v1/gateway_connections')
    const id = connections.body.items[0]?.id
    // Before, it was deactivated: the customer paid the page, Stripe's report of it was a
    // 404 (no such connection), and the payment stayed PENDING with the money recorded nowhere.
    for (const attempt of [
      () => ctx.delete<ErrorBody>(`/v1/gateway_connections/${id}`),
      () => ctx.patch<ErrorBody>(`/v1/gateway_connections/${id}`, { active: false }),
    ]) {
      const refused = await attempt()
      expect(refused.status, refused.text).toBe(409)
      expect(refused.body.error.details).toMatchObject({
        gateway: 'stripe',
        payment_ids: [payment.id],
      })
    }
    // Its credentials can still be replaced: it stays active.
    const rotated = await ctx.patch(`/v1/gateway_connections/${id}`, { settings: {} })
    expect(rotated.status, rotated.text).toBe(200)
    emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa',
    })
    const body = completedEventOf(String(payment.gateway_tracking_id))
    const res = await stripeDeliver(body)
    expect(res.statusCode, res.body).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
    expect((await ctx.delete(`/v1/gateway_connections/${id}`)).status).toBe(200)
  })

  test('DELETE with force=true disconnects it with a payment open (the merchant gives up its reports)', async () => {
    const created = await ctx.post<{ id: string }>('/v1/gateway_connections', {
      gateway: 'stripe',
      credentials: { secret_key: emulator.secretKey, webhook_secret: emulator.webhookSecret },
      settings: { base_url: emulator.url },
    })
    expect(created.status, created.text).toBe(201)
    const { payment } = await openStripeLink()
    const path = `/v1/gateway_connections/${created.body.id}`
    expect((await ctx.delete(path)).status).toBe(409)
    // Only a boolean forces it; another tenant's key does not reach the connection.
    expect((await ctx.delete(`${path}?force=yes`)).status).toBe(400)
    const stranger = await ctx.createTenantFixture('Connection stranger')
    expect((await ctx.delete(`${path}?force=true`, { key: stranger.key })).status).toBe(404)
    const forced = await ctx.delete<{ active: boolean }>(`${path}?force=true`)
    expect(forced.status, forced.text).toBe(200)
    expect(forced.body.active).toBe(false)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })
})
