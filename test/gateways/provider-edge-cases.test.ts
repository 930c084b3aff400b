/**
 * What BitPay, CoinPayments and Checkout.com document beyond the common path: money
 * confirmed after a payment failed, Checkout.com's own units per currency, and an
 * off-session decline reported by webhook only.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { defaultCheckoutCard } from '../checkout-helpers.ts'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import type { CheckoutEmulator } from '../emulators/checkout/emulator.ts'
import { startCheckoutEmulator } from '../emulators/checkout/server.ts'
import type { CoinpaymentsEmulator } from '../emulators/coinpayments/emulator.ts'
import { startCoinpaymentsEmulator } from '../emulators/coinpayments/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, getInvoice, getPayment, invoiceToPay } from '../payments-helpers.ts'

let ctx: TestContext
let address: string
let bitpay: BitpayEmulator
let cp: CoinpaymentsEmulator
let cko: CheckoutEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  ctx.deps.config.publicUrl = address
  bitpay = await startBitpayEmulator({ clock: ctx.clock })
  cp = await startCoinpaymentsEmulator({ clock: ctx.clock })
  cko = await startCheckoutEmulator({
    clock: ctx.clock,
    webhookUrl: `${address}/v1/webhooks/checkout/${ctx.main.tenant.id}/${ctx.main.test.id}`,
  })
  for (const body of [
    {
      gateway: 'bitpay',
      credentials: { token: bitpay.token },
      settings: { base_url: bitpay.url },
    },
    {
      gateway: 'coinpayments',
      credentials: {
        public_key: cp.publicKey,
        private_key: cp.privateKey,
        ipn_secret: cp.ipnSecret,
        merchant_id: cp.merchantId,
      },
      settings: { base_url: cp.url },
    },
    {
      gateway: 'checkout',
      credentials: { secret_key: cko.secretKey, signature_key: cko.signatureKey },
      settings: { base_url: cko.url },
    },
  ]) {
    const res = await ctx.post('/v1/gateway_connections', body)
    expect(res.status, res.text).toBe(201)
  }
})

afterAll(async () => {
  await bitpay?.close()
  await cp?.close()
  await cko?.close()
  await ctx?.close()
})

async function cryptoPayment(gateway: 'bitpay' | 'coinpayments', invoiceId: string) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: gateway,
    amount: '100.00',
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body.payment_status).toBe('PENDING')
  return res.body
}

describe('BitPay', () => {
  // BitPay (invoice states, SDK InvoiceStatus::Invalid): "An invoice is considered invalid when
  // it was paid, but the corresponding cryptocurrency transaction was not confirmed within 1
  // hour ... If the transaction confirms after 1 hour, BitPay will update the invoice state
  // from "invalid" to "complete"". `invalid` fails the payment; the later `complete` (BitPay
  // credited the merchant) reopens it and records the money (it was refused, and lost).
  test('an invoice that goes invalid and later completes (late confirmations) pays the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment('bitpay', invoice.id)
    const id = String(payment.gateway_tracking_id)
    bitpay.pay(id)
    await bitpay.waitForNotifications()
    bitpay.invalidate(id)
    await bitpay.waitForNotifications()
    // The transaction confirms after BitPay's hour: BitPay moves the invoice to complete.
    const record = bitpay.findInvoice(id)
    if (!record) throw new Error('no invoice')
    record.status = 'complete'
    bitpay.resendNotification(id)
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('CoinPayments', () => {
  // CoinPayments' reference IPN handler: status < 0 is "payment error, this is usually final
  // but payments will sometimes be reopened if there was no exchange rate conversion or with
  // seller consent". A reopened transaction that completes (status 100, confirmed by
  // get_tx_info) reopens the failed payment and records the coins (they were kept, nothing recorded).
  test('a timed-out transaction that CoinPayments reopens and completes pays the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment('coinpayments', invoice.id)
    const txn = String(payment.gateway_tracking_id)
    cp.cancel(txn)
    await cp.waitForNotifications()
    // Reopened (with the seller's consent), then paid and complete.
    const record = cp.findTransaction(txn)
    if (!record) throw new Error('no transaction')
    record.status = 0 as typeof record.status
    cp.confirm(txn)
    await cp.waitForNotifications()
    expect(cp.deliveries.at(-1)?.status).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })
})

describe('Checkout.com', () => {
  // https://www.checkout.com/docs/payments/accept-payments/format-the-amount-value: only BIF,
  // DJF, GNF, ISK, JPY, KMF, KRW, PYG, RWF, UGX, VUV, VND, XAF, XOF, XPF take the full amount;
  // BHD, IQD, JOD, KWD, LYD, OMR, TND are divided by 1000; every other currency by 100.
  // Payrail keeps CLP in whole pesos (ISO 4217 exponent 0): sent as is, Checkout.com charged a
  // hundredth of the price, and its webhook echoed the same number back as paid in full.
  test('a CLP hosted payment asks Checkout.com for the amount in its units (pesos × 100)', async () => {
    const { invoice } = await invoiceToPay(
      ctx,
      {},
      { currency: 'clp', lines: [{ description: 'Plan', quantity: 1, unit_amount: '5000' }] },
    )
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'checkout',
      amount: '5000',
      currency: 'clp',
    })
    expect(res.status, res.text).toBe(201)
    const sent = cko.requests.filter((r) => r.method === 'POST' && r.path === '/hosted-payments')
    expect(sent.at(-1)?.body).toMatchObject({ currency: 'CLP', amount: 500000 })
  })

  // Same edge, the other rule of that page: for BHD, IQD, JOD, KWD, LYD, OMR and TND "the last
  // digit must always be a 0": such an amount is the caller's 400 before Checkout.com is asked
  // (`checkAmount`), as at Stripe, not Checkout.com's refusal answered 502.
  test('a 1.234 BHD hosted payment, which Checkout.com cannot take, is a 400 before Checkout.com is asked', async () => {
    const { invoice } = await invoiceToPay(
      ctx,
      {},
      { currency: 'bhd', lines: [{ description: 'Plan', quantity: 1, unit_amount: '1.234' }] },
    )
    const before = cko.requests.length
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'checkout',
      amount: '1.234',
      currency: 'bhd',
    })
    expect(res.status, res.text).toBe(400)
    expect(cko.requests.slice(before).filter((r) => r.path === '/hosted-payments')).toEqual([])
  })
})

describe('Checkout.com CARD charges reported by webhook', () => {
  // docs/payments.md: "A `Pending` answer leaves it `PROCESSING` until the webhooks say more",
  // and a charge whose answer was lost stays PROCESSING so the provider's webhook "can still
  // settle it". An off-session charge's `payment_declined` fails it when the answer did not
  // (lost, or Pending); it was dropped, leaving the payment PROCESSING and its amount in
  // flight on the invoice, so nothing else could pay the invoice.
  test('a CARD charge whose answer was lost is FAILED by its payment_declined webhook', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await defaultCheckoutCard(ctx, cko, customer.id, '4000000000000002')
    cko.timeoutNext({
      count: 1,
      mode: 'destroy',
      method: 'POST',
      pathPrefix: '/payments',
      afterProcessing: true,
    })
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'checkout',
      amount: '100.00',
    })
    expect(res.status, res.text).toBe(502)
    cko.clearFaults()
    const paymentId = String(
      (res.body as unknown as { error: { details: { payment_id: string } } }).error.details
        .payment_id,
    )
    await cko.waitForDeliveries()
    const declined = cko.deliveries.filter(
      (d) => d.type === 'payment_declined' && d.body.includes(paymentId),
    )
    expect(declined.map((d) => d.status)).toEqual([200])
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'card_declined',
    })
  })
})
