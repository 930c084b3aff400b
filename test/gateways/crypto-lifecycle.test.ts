/**
 * The crypto rails over a payment's life: overpayments and their excess refunded (recorded),
 * partial payments, a payment whose BitPay invoice's answer was lost, and sandbox coins.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import { DEFAULT_USD_RATES } from '../emulators/coinpayments/amounts.ts'
import type { CoinpaymentsEmulator } from '../emulators/coinpayments/emulator.ts'
import { startCoinpaymentsEmulator } from '../emulators/coinpayments/server.ts'
import { createCustomer, eventsOf, oneTimePrice } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  pagePost,
  type RefundBody,
  sessionOf,
  unansweredPayment,
} from '../payments-helpers.ts'

let ctx: TestContext
let bitpay: BitpayEmulator
let cp: CoinpaymentsEmulator
let address: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  ctx.deps.config.publicUrl = address
  bitpay = await startBitpayEmulator({ clock: ctx.clock })
  cp = await startCoinpaymentsEmulator({
    clock: ctx.clock,
    usdRates: { ...DEFAULT_USD_RATES, JPY: 0.0067, KWD: 3.25 },
  })
  const b = await ctx.post('/v1/gateway_connections', {
    gateway: 'bitpay',
    credentials: { token: bitpay.token },
    settings: { base_url: bitpay.url },
  })
  expect(b.status, b.text).toBe(201)
  const c = await ctx.post('/v1/gateway_connections', {
    gateway: 'coinpayments',
    credentials: {
      public_key: cp.publicKey,
      private_key: cp.privateKey,
      ipn_secret: cp.ipnSecret,
      merchant_id: cp.merchantId,
    },
    settings: { base_url: cp.url },
  })
  expect(c.status, c.text).toBe(201)
})
afterAll(async () => {
  await bitpay?.close()
  await cp?.close()
  await ctx?.close()
})

async function crypto(
  gateway: 'bitpay' | 'coinpayments' | 'sandbox',
  invoiceId: string,
  amount = '100.00',
  currency = 'usd',
) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: gateway,
    amount,
    currency,
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body.payment_status).toBe('PENDING')
  return res.body
}

const tracking = (p: PaymentBody) => String(p.gateway_tracking_id)
const cryptoPage = (p: PaymentBody) => `/sandbox/crypto/${sessionOf(p)}`

async function invoiceIn(currency: string, unit: string) {
  return invoiceToPay(
    ctx,
    {},
    { currency, lines: [{ description: 'x', quantity: 1, unit_amount: unit }] },
  )
}

describe('CoinPayments', () => {
  test('cp: an OVERPAID payment: the excess can be refunded (recorded) so the invoice is settled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('coinpayments', invoice.id)
    cp.receive(tracking(payment), { fraction: 1.2 })
    cp.confirm(tracking(payment))
    await cp.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '120.00',
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('OVERPAID')
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '20.00',
    })
    expect(refund.status, refund.text).toBe(201)
  })

  test('cp: paid partially, then the rest, then complete', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('coinpayments', invoice.id)
    cp.receive(tracking(payment), { fraction: 0.5 })
    await cp.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    cp.receive(tracking(payment), { fraction: 0.5 })
    cp.confirm(tracking(payment))
    await cp.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('BitPay', () => {
  test('bp: a BitPay page left open pays an invoice paid offline meanwhile: OVERPAID, and the merchant can refund (record) the excess as documented', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('bitpay', invoice.id)
    const offline = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(offline.status, offline.text).toBe(201)
    bitpay.pay(tracking(payment))
    bitpay.confirm(tracking(payment))
    await bitpay.waitForNotifications()
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('OVERPAID')
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(refund.status, refund.text).toBe(201)
  })

  test('bp: a payment whose invoice creation answer was lost is either not cancelled or records the money BitPay then takes', async () => {
    const { invoice } = await invoiceToPay(ctx)
    bitpay.timeoutNext({ ms: 0 })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'bitpay',
    })
    const lost = await fetch(`${bitpay.url}/invoices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-accept-version': '2.0.0' },
      body: JSON.stringify({
        token: bitpay.token,
        price: 100,
        currency: 'USD',
        orderId: paymentId,
        notificationURL: `${address}/v1/webhooks/bitpay/${ctx.main.tenant.id}/${ctx.main.test.id}`,
        extendedNotifications: true,
      }),
    })
    const lostId = String(((await lost.json()) as { data: { id: string } }).data.id)
    const cancelled = await ctx.post(`/v1/payments/${paymentId}/cancel`)
    bitpay.pay(lostId)
    bitpay.confirm(lostId)
    await bitpay.waitForNotifications()
    const p = await getPayment(ctx, paymentId)
    // Either the cancel was refused (BitPay cannot withdraw what it may have made) or the money is recorded.
    expect(
      cancelled.status === 409 || p.payment_status === 'SUCCEEDED',
      `${cancelled.status} ${p.payment_status}`,
    ).toBe(true)
  })

  test.each([
    ['jpy', '1000'],
    ['kwd', '1.234'],
  ])('bp: %s invoice paid in full', async (currency, unit) => {
    const { invoice } = await invoiceIn(currency, unit)
    const payment = await crypto('bitpay', invoice.id, unit, currency)
    bitpay.pay(tracking(payment))
    bitpay.confirm(tracking(payment))
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: unit,
    })
  })

  test('bp: partial, then the rest, then confirmed', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('bitpay', invoice.id)
    bitpay.pay(tracking(payment), { fraction: 0.5 })
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    bitpay.pay(tracking(payment), { fraction: 0.5 })
    bitpay.confirm(tracking(payment))
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('sandbox crypto', () => {
  test('sb: overpaid, then the excess refunded: the invoice is paid exactly', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('sandbox', invoice.id)
    await pagePost(ctx, cryptoPage(payment), 'overpay')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('OVERPAID')
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '20.00',
    })
    expect(refund.status, refund.text).toBe(201)
    const p = await getPayment(ctx, payment.id)
    const inv = await getInvoice(ctx, invoice.id)
    expect({ p: p.amount_refunded, inv: inv.payment_status, rem: inv.amount_remaining }).toEqual({
      p: '20.00',
      inv: 'SUCCEEDED',
      rem: '0.00',
    })
  })

  test('sb: orders/pay underpaid in crypto: money on the first invoice first', async () => {
    const customer = await createCustomer(ctx)
    const mk = async (amount: string) =>
      (
        await ctx.post<{ id: string; invoice_id: string }>('/v1/orders', {
          customer_id: customer.id,
          type: 'ONE_TIME_PRODUCT',
          price_id: await oneTimePrice(ctx, amount),
        })
      ).body
    const a = await mk('30.00')
    const b = await mk('20.00')
    const res = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [a.id, b.id],
      payment_method_type: 'CRYPTO',
      payment_gateway: 'sandbox',
    })
    expect(res.status, res.text).toBe(201)
    await pagePost(ctx, cryptoPage(res.body), 'underpay')
    const ia = await getInvoice(ctx, a.invoice_id)
    const ib = await getInvoice(ctx, b.invoice_id)
    expect({
      a: ia.amount_paid,
      b: ib.amount_paid,
      pa: ia.payment_status,
      pb: ib.payment_status,
    }).toEqual({
      a: '25.00',
      b: '0.00',
      pa: 'PENDING',
      pb: 'PENDING',
    })
    void eventsOf
  })
})
