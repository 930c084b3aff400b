/**
 * Checkout.com hosted pages over their life: an attempt the customer abandoned on a page
 * that was paid afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { CheckoutEmulator } from '../emulators/checkout/emulator.ts'
import { insertPendingPayment, storeCard } from '../emulators/checkout/payments.ts'
import { startCheckoutEmulator } from '../emulators/checkout/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, getInvoice, getPayment, invoiceToPay } from '../payments-helpers.ts'

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
  await ctx?.close()
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
  return res.body
}

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
