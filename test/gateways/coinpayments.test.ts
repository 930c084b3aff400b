import { createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connectCoinpayments, listenForNotifications } from '../crypto-helpers.ts'
import type { CoinpaymentsEmulator } from '../emulators/coinpayments/emulator.ts'
import { startCoinpaymentsEmulator } from '../emulators/coinpayments/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, getInvoice, getPayment, invoiceToPay } from '../payments-helpers.ts'

let ctx: TestContext
let cp: CoinpaymentsEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  await listenForNotifications(ctx)
  cp = await startCoinpaymentsEmulator({ clock: ctx.clock })
  await connectCoinpayments(ctx, cp)
})
afterAll(async () => {
  await cp?.close()
  await ctx.close()
})

async function cryptoPayment(invoiceId: string) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'coinpayments',
    amount: '100.00',
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body).toMatchObject({
    payment_status: 'PENDING',
    gateway_tracking_id: expect.stringMatching(/^CP/),
  })
  return res.body
}

describe('CoinPayments, against the emulator', () => {
  test('coins received → PROCESSING, complete → SUCCEEDED and the invoice reconciled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    cp.receive(String(payment.gateway_tracking_id))
    await cp.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    cp.confirm(String(payment.gateway_tracking_id))
    await cp.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('an IPN that CoinPayments cannot be asked about is 502, for CoinPayments to send again; then it applies', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    const txnId = String(payment.gateway_tracking_id)
    cp.receive(txnId)
    await cp.waitForNotifications()
    // Asked back about the completion, get_tx_info answers 503: 502, nothing applied; the
    // IPN is sent again and applies.
    const before = cp.deliveries.length
    cp.faults.failNext({ status: 503 })
    cp.confirm(txnId)
    await cp.waitForNotifications()
    expect(cp.deliveries.slice(before).map((d) => d.status)).toEqual([502, 200])
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  /** A new 100.00 invoice paid with `fraction` of the coins due, confirmed: the payment and invoice. */
  async function paidWithFraction(fraction: number) {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    cp.receive(String(payment.gateway_tracking_id), { fraction })
    cp.confirm(String(payment.gateway_tracking_id))
    await cp.waitForNotifications()
    return {
      payment: await getPayment(ctx, payment.id),
      invoice: await getInvoice(ctx, invoice.id),
    }
  }

  test.each([
    [0.5, 'SUCCEEDED', '50.00', '50.00'],
    [1.2, 'OVERPAID', '120.00', '0.00'],
    // A few coins more than due, worth less than a cent: paid exactly, not OVERPAID.
    [1.000005, 'SUCCEEDED', '100.00', '0.00'],
  ])(
    '%s of the coins due: the payment %s with %s paid, %s left on the invoice',
    async (fraction, status, paid, remaining) => {
      const { payment, invoice } = await paidWithFraction(fraction)
      expect(payment).toMatchObject({ payment_status: status, amount_paid: paid })
      expect(invoice).toMatchObject({ amount_remaining: remaining })
    },
  )

  test('a cancelled transaction is FAILED', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const cancelled = await cryptoPayment(invoice.id)
    cp.cancel(String(cancelled.gateway_tracking_id))
    await cp.waitForNotifications()
    expect((await getPayment(ctx, cancelled.id)).payment_status).toBe('FAILED')
  })

  test('an IPN with a bad HMAC or another merchant id is refused and changes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    cp.setNotificationRetry({ maxAttempts: 1, backoffMs: 1, timeoutMs: 2000 })
    cp.badSignatureNext(1)
    cp.confirm(String(payment.gateway_tracking_id))
    await cp.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    const { invoice: other } = await invoiceToPay(ctx)
    const second = await cryptoPayment(other.id)
    cp.wrongMerchantNext(1)
    cp.confirm(String(second.gateway_tracking_id))
    await cp.waitForNotifications()
    expect((await getPayment(ctx, second.id)).payment_status).toBe('PENDING')
    expect(cp.deliveries.slice(-2).every((d) => d.status === 400)).toBe(true)
  })

  test('duplicate and out-of-order IPNs leave the same final state', async () => {
    cp.setNotificationRetry({ maxAttempts: 5, backoffMs: 5, timeoutMs: 2000 })
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    cp.duplicateNext(2)
    cp.deliverOutOfOrder(2)
    cp.receive(String(payment.gateway_tracking_id))
    cp.confirm(String(payment.gateway_tracking_id))
    await cp.waitForNotifications()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('a signed IPN whose coin amounts are not decimals is 400, never a 500', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    for (const received of ['abc', '1e5', '-1']) {
      const body = new URLSearchParams({
        ipn_version: '1.0',
        ipn_type: 'api',
        ipn_mode: 'hmac',
        ipn_id: `ipn_bad_${received}`,
        merchant: cp.merchantId,
        txn_id: String(payment.gateway_tracking_id),
        status: '100',
        currency1: 'USD',
        currency2: 'BTC',
        amount1: '100.00',
        amount2: '1',
        received_amount: received,
      }).toString()
      const res = await postSignedIpn(body)
      expect(res.statusCode, received).toBe(400)
    }
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })

  test("an IPN whose currency or amount is not the payment's is ignored", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment(invoice.id)
    const body = new URLSearchParams({
      ipn_version: '1.0',
      ipn_type: 'api',
      ipn_mode: 'hmac',
      ipn_id: 'ipn_mismatch_1',
      merchant: cp.merchantId,
      txn_id: String(payment.gateway_tracking_id),
      status: '1',
      status_text: 'We have confirmed coin reception from the buyer',
      currency1: 'USD',
      currency2: 'BTC',
      amount1: '1.00',
      amount2: '0.00002000',
      received_amount: '0.00002000',
    }).toString()
    const res = await postSignedIpn(body)
    expect(res.statusCode).toBe(200)
    expect(res.json().events[0].outcome).toBe('ignored')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
  })
})

/** Posts `body` as CoinPayments does, signed with the connection's IPN secret. */
function postSignedIpn(body: string) {
  return ctx.app.inject({
    method: 'POST',
    url: `/v1/webhooks/coinpayments/${ctx.main.tenant.id}/${ctx.main.test.id}`,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      hmac: createHmac('sha512', cp.ipnSecret).update(body).digest('hex'),
    },
    payload: body,
  })
}
