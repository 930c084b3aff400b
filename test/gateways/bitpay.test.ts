import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  type BitpayInvoice,
  readBitpayInvoice,
  updateFromInvoice,
} from '../../src/gateways/bitpay/bitpay.transformers.ts'
import {
  markStripeInvoicePaid,
  STRIPE_PAID_OUT_OF_BAND,
} from '../../src/jobs/tasks/stripe-paid-out-of-band.ts'
import {
  bitpayPaymentWithLostInvoice,
  connectBitpay,
  listenForNotifications,
} from '../crypto-helpers.ts'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import { startStripeEmulator } from '../emulators/stripe/server.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
} from '../payments-helpers.ts'

let ctx: TestContext
let bitpay: BitpayEmulator
let address: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  address = await listenForNotifications(ctx)
  bitpay = await startBitpayEmulator({ clock: ctx.clock })
  await connectBitpay(ctx, bitpay)
})
afterAll(async () => {
  await bitpay?.close()
  await ctx.close()
})

async function cryptoPayment(invoiceId: string) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'bitpay',
    amount: '100.00',
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body.payment_status).toBe('PENDING')
  expect(res.body.payment_url).toContain(bitpay.url)
  return res.body
}

/** The customer pays the BitPay invoice in full and it confirms: the payment is SUCCEEDED. */
async function payAndConfirm(payment: { id: string; gateway_tracking_id: string | null }) {
  bitpay.pay(String(payment.gateway_tracking_id))
  bitpay.confirm(String(payment.gateway_tracking_id))
  await bitpay.waitForNotifications()
  expect(await getPayment(ctx, payment.id)).toMatchObject({
    payment_status: 'SUCCEEDED',
    amount_paid: '100.00',
  })
}

describe('BitPay, against the emulator', () => {
  test('paid → PROCESSING, confirmed → SUCCEEDED and the invoice reconciled, re-fetching on every IPN', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    bitpay.pay(String(payment.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    bitpay.confirm(String(payment.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('cancel is 409: BitPay cannot withdraw the invoice, so the payment stays open and its payment is still applied', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/cancel`)
    expect(refused.status, refused.text).toBe(409)
    expect(refused.body.error.code).toBe('conflict')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    await payAndConfirm(payment)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('paidOver is SUCCEEDED for the price (BitPay refunds the excess); expiry is FAILED', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const over = await cryptoPayment(invoice.id)
    bitpay.pay(String(over.gateway_tracking_id), { fraction: 1.2 })
    bitpay.confirm(String(over.gateway_tracking_id))
    await bitpay.waitForNotifications()
    // BitPay settles the price and sends the excess back to the buyer itself.
    expect(await getPayment(ctx, over.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    const { invoice: other } = await invoiceToPay(ctx)
    const late = await cryptoPayment(other.id)
    bitpay.expire(String(late.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, late.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
  })

  test('an underpaid invoice that expires is FAILED (underpaid): BitPay refunds the buyer, the invoice still owes it all', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const partial = await cryptoPayment(invoice.id)
    bitpay.pay(String(partial.gateway_tracking_id), { fraction: 0.5 })
    await bitpay.waitForNotifications()
    // A partial payment on an open invoice is not a payment yet.
    expect((await getPayment(ctx, partial.id)).payment_status).toBe('PENDING')
    bitpay.expire(String(partial.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, partial.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'underpaid',
      amount_paid: '0.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_remaining: '100.00',
    })
  })

  test('a forged IPN claiming confirmed for an unpaid invoice changes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    const forged = await bitpay.sendForgedIpn(
      `${address}/v1/webhooks/bitpay/${ctx.main.tenant.id}/${ctx.main.test.id}`,
      {
        id: payment.gateway_tracking_id,
        status: 'confirmed',
        orderId: payment.id,
        price: 100,
        currency: 'USD',
      },
    )
    expect(forged.status).toBe(200)
    expect(forged.body).toBe('')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
  })

  test('an IPN that BitPay cannot be asked about is 502, for BitPay to send again; then it applies', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    const ipn = () =>
      ctx.app.inject({
        method: 'POST',
        url: `/v1/webhooks/bitpay/${ctx.main.tenant.id}/${ctx.main.test.id}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ id: payment.gateway_tracking_id }),
      })
    // Asked back about an IPN, BitPay does not answer (a reset connection): 502, nothing applied.
    bitpay.timeoutNext({ ms: 0 })
    const refused = await ipn()
    expect(refused.statusCode).toBe(502)
    expect((refused.json() as ErrorBody).error.code).toBe('gateway_error')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    // BitPay's own IPN finds it answering 503: refused with a 502, BitPay sends it again, applied.
    const before = bitpay.deliveries.length
    bitpay.failNext({ status: 503 })
    bitpay.pay(String(payment.gateway_tracking_id))
    await bitpay.waitForNotifications()
    const tries = bitpay.deliveries.slice(before).map((d) => d.status)
    expect(tries).toEqual([502, 200])
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
  })

  // BitPay answers `GET /invoices/:id?token=` 401 for a token it no longer accepts (the
  // merchant paired again). A genuine IPN is then Payrail's to ask again, not unknown: before,
  // it was 400 "BitPay does not know invoice", and a confirmation was lost (PROCESSING).
  test('an IPN while BitPay refuses the token is 502, for BitPay to send again; only its 404 is unknown (400)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    bitpay.pay(String(payment.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    const ipn = (id: string) =>
      ctx.app.inject({
        method: 'POST',
        url: `/v1/webhooks/bitpay/${ctx.main.tenant.id}/${ctx.main.test.id}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({
          event: { code: 1005, name: 'invoice_confirmed' },
          data: { id, status: 'confirmed', orderId: payment.id, price: 100 },
        }),
      })
    const connections = await ctx.get<{ items: { id: string; gateway: string }[] }>(
      '/v1/gateway_connections',
    )
    const connection = connections.body.items.find((c) => c.gateway === 'bitpay')
    const withToken = (token: string) =>
      ctx.patch(`/v1/gateway_connections/${connection?.id}`, { credentials: { token } })
    expect((await withToken('a-token-bitpay-refuses')).status).toBe(200)
    try {
      const refused = await ipn(String(payment.gateway_tracking_id))
      expect(refused.statusCode, refused.body).toBe(502)
      expect((refused.json() as ErrorBody).error.code).toBe('gateway_error')
      expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    } finally {
      expect((await withToken(bitpay.token)).status).toBe(200)
    }
    const unknown = await ipn('no-such-invoice')
    expect(unknown.statusCode, unknown.body).toBe(400)
    // Sent again once BitPay answers, it applies.
    bitpay.confirm(String(payment.gateway_tracking_id))
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })

  test('an invoice whose answer was lost expires without failing the payment a retry gave another invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    // BitPay does not answer the invoice's creation (502, the payment INITIATED), though it
    // made the invoice, as a lost answer allows.
    const { paymentId, lostId } = await bitpayPaymentWithLostInvoice(
      ctx,
      bitpay,
      address,
      invoice.id,
    )
    // The retry makes the invoice the customer sees.
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`, {})
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body.payment_status).toBe('PENDING')
    expect(retried.body.gateway_tracking_id).not.toBe(lostId)
    // The lost invoice expires: its IPN names the payment, and changes nothing.
    bitpay.expire(lostId)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PENDING')
    // The customer pays the invoice they were shown: the money is recorded.
    await payAndConfirm(retried.body)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('duplicate and out-of-order IPNs leave the same final state', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    bitpay.duplicateNext(2)
    bitpay.deliverOutOfOrder(2)
    await payAndConfirm(payment)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('a Stripe-sourced invoice paid through BitPay is marked paid out of band in Stripe', async () => {
    const stripe = await startStripeEmulator({
      clock: ctx.clock,
      webhookUrl: `${address}/v1/webhooks/stripe/${ctx.main.tenant.id}/${ctx.main.test.id}`,
    })
    try {
      await ctx.post('/v1/gateway_connections', {
        gateway: 'stripe',
        credentials: { secret_key: stripe.secretKey, webhook_secret: stripe.webhookSecret },
        settings: { base_url: stripe.url },
      })
      const customer = stripe.seedCustomer({ email: 'crypto@stripe-co.example' })
      const stripeInvoice = stripe.seedInvoice({
        customer: String(customer.id),
        amountDue: 10000,
        status: 'open',
      })
      stripe.sendEvent('invoice.finalized', String(stripeInvoice.id))
      await stripe.waitForDeliveries()
      const mirrored = await ctx.db
        .selectFrom('invoices')
        .select('id')
        .where('stripe_invoice_id', '=', String(stripeInvoice.id))
        .executeTakeFirstOrThrow()
      const payment = await cryptoPayment(mirrored.id)
      bitpay.pay(String(payment.gateway_tracking_id))
      bitpay.confirm(String(payment.gateway_tracking_id))
      await bitpay.waitForNotifications()
      expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
      const jobs = await ctx.pool.query<{ payload: unknown }>(
        `select payload from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = $1`,
        [STRIPE_PAID_OUT_OF_BAND],
      )
      const job = jobs.rows.find((row) =>
        JSON.stringify(row.payload).includes(String(stripeInvoice.id)),
      )
      expect(await markStripeInvoicePaid(ctx.deps, job?.payload)).toBe('marked')
      expect(stripe.state.invoices.get(String(stripeInvoice.id))?.status).toBe('paid')
    } finally {
      await stripe.close()
    }
  })
})

describe('reading what BitPay says', () => {
  const invoice = (fields: Partial<BitpayInvoice>): BitpayInvoice => ({
    id: 'inv_1',
    url: 'https://bitpay.example/i/inv_1',
    status: 'confirmed',
    exceptionStatus: false,
    orderId: null,
    price: 100,
    currency: 'usd',
    ...fields,
  })

  test("confirmed is SUCCEEDED for the price, only if the price and currency are the payment's", () => {
    expect(updateFromInvoice(invoice({ exceptionStatus: 'paidOver' }))).toMatchObject({
      status: 'SUCCEEDED',
      mustMatch: { currency: 'usd', amount: '100' },
    })
    expect(
      updateFromInvoice(invoice({ exceptionStatus: 'paidOver' }))?.receivedShare,
    ).toBeUndefined()
  })

  test('a partial payment on an open invoice changes nothing', () => {
    expect(updateFromInvoice(invoice({ status: 'new', exceptionStatus: 'paidPartial' }))).toBe(
      undefined,
    )
  })

  test('an invoice BitPay answers without the fields it always has is not read', () => {
    expect(readBitpayInvoice({ data: { id: 'inv_1', status: 'confirmed' } })).toBeUndefined()
  })
})
