import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { CheckoutEmulator } from '../emulators/checkout/emulator.ts'
import { startCheckoutEmulator } from '../emulators/checkout/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, getInvoice, getPayment, invoiceToPay } from '../payments-helpers.ts'

let ctx: TestContext
let emulator: CheckoutEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  emulator = await startCheckoutEmulator({
    clock: ctx.clock,
    webhookUrl: `${address}/v1/webhooks/checkout/${ctx.main.tenant.id}/${ctx.main.test.id}`,
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

async function hostedPayment(invoiceId: string) {
  const res = await createPayment(ctx, {
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

/** Follows Checkout.com's redirect back to Payrail, as the customer's browser would. */
async function followReturn(redirectUrl: string) {
  const url = new URL(redirectUrl)
  return ctx.app.inject({ method: 'GET', url: `${url.pathname}${url.search}` })
}

describe('Checkout.com hosted payments, through checkout-sdk-node and the emulator', () => {
  test('paid on the hosted page → return verified with the API → SUCCEEDED, redirected to success_url', async () => {
    const { invoice } = await invoiceToPay(ctx)
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
  })

  test('a declined card comes back through failure_url: FAILED with the decline code', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4544249167673670',
    })
    const back = await followReturn(completion.redirectUrl)
    expect(back.headers.location).toBe('https://merchant.example/cancel')
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'insufficient_funds',
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
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    const completion = emulator.completeHostedPayment(String(payment.gateway_tracking_id), {
      card: '4242424242424242',
    })
    await followReturn(completion.redirectUrl)
    await emulator.waitForDeliveries()
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

  test('an expired hosted payment makes the payment FAILED; a tampered webhook is refused', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await hostedPayment(invoice.id)
    emulator.expireHostedPayment(String(payment.gateway_tracking_id))
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
    const tampered = await ctx.app.inject({
      method: 'POST',
      url: `/v1/webhooks/checkout/${ctx.main.tenant.id}/${ctx.main.test.id}`,
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
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    const events = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${payment.id}&type=payment.succeeded`,
    )
    expect(events.body.items).toHaveLength(1)
  })
})
