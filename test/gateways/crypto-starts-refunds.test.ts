/**
 * Coin payments whose start failed (cancel, and the lost invoice's expiry), and coin refunds
 * recorded before the provider's last success report.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import type { CoinpaymentsEmulator } from '../emulators/coinpayments/emulator.ts'
import { startCoinpaymentsEmulator } from '../emulators/coinpayments/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  getPayment,
  invoiceToPay,
  type RefundBody,
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
  cp = await startCoinpaymentsEmulator({ clock: ctx.clock })
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

async function crypto(gateway: 'bitpay' | 'coinpayments', invoiceId: string) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: gateway,
    amount: '100.00',
  })
  expect(res.status, res.text).toBe(201)
  return res.body
}

async function outcomesOf(gateway: string) {
  return ctx.db
    .selectFrom('webhook_events')
    .select(['event_id', 'outcome'])
    .where('gateway', '=', gateway)
    .execute()
}

describe('cancel of an INITIATED coin payment whose start failed', () => {
  test('a payment BitPay refused to open (400, nothing opened) can be cancelled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    bitpay.failNext({ status: 400 })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'bitpay',
    })
    const p = await getPayment(ctx, paymentId)
    expect(p.status_code).toBe('http_400')
    const cancelled = await ctx.post(`/v1/payments/${paymentId}/cancel`)
    // BitPay refused the request: no invoice exists, nothing could ever be paid. Cancel must work.
    expect(cancelled.status, cancelled.text).toBe(200)
  })

  test('the invoice BitPay made for a payment whose answer was lost expires: the payment, tracking nothing, fails', async () => {
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
    expect((await ctx.post(`/v1/payments/${paymentId}/cancel`)).status).toBe(409)
    bitpay.expire(lostId)
    await bitpay.waitForNotifications()
    const events = await outcomesOf('bitpay')
    const expiry = events.find((e) => e.event_id.startsWith(`${lostId}:expired`))
    // The 409 says the payment "is settled or failed when bitpay reports it" — BitPay has
    // reported it expired, yet the payment is neither failed nor cancellable.
    const p = await getPayment(ctx, paymentId)
    const again = await ctx.post(`/v1/payments/${paymentId}/cancel`)
    expect({ outcome: expiry?.outcome, status: p.payment_status, cancel: again.status }).toEqual({
      outcome: expect.anything(),
      status: expect.not.stringMatching(/^INITIATED$/),
      cancel: expect.anything(),
    })
  })
})

describe('recorded coin refunds and the later reports of the provider', () => {
  test('BitPay confirmed, refunded (recorded), then complete: a repeat, not money the payment refuses', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('bitpay', invoice.id)
    const id = String(payment.gateway_tracking_id)
    bitpay.pay(id)
    bitpay.confirm(id)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(refund.status, refund.text).toBe(201)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('REFUNDED')
    const spy = vi.spyOn(ctx.deps.logger, 'error')
    bitpay.complete(id)
    await bitpay.waitForNotifications()
    const messages = spy.mock.calls.map((c) => String(c[1] ?? c[0]))
    spy.mockRestore()
    expect(messages.filter((m) => m.includes('refund or record it by hand'))).toEqual([])
  })

  test('CoinPayments queued for payout, refunded (recorded), then complete: a repeat, not money refused', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('coinpayments', invoice.id)
    const id = String(payment.gateway_tracking_id)
    cp.receive(id)
    cp.confirm(id, { payout: 'nightly' })
    await cp.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '40.00',
    })
    expect(refund.status, refund.text).toBe(201)
    const spy = vi.spyOn(ctx.deps.logger, 'error')
    cp.confirm(id)
    await cp.waitForNotifications()
    const messages = spy.mock.calls.map((c) => String(c[1] ?? c[0]))
    spy.mockRestore()
    expect(messages.filter((m) => m.includes('refund or record it by hand'))).toEqual([])
  })

  test('BitPay declining an invoice it had confirmed is an error for an operator (the payment cannot fail; the money may not arrive)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await crypto('bitpay', invoice.id)
    const id = String(payment.gateway_tracking_id)
    bitpay.pay(id)
    bitpay.confirm(id)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
    const spy = vi.spyOn(ctx.deps.logger, 'error')
    bitpay.decline(id)
    await bitpay.waitForNotifications()
    const messages = spy.mock.calls.map((c) => String(c[1] ?? c[0]))
    spy.mockRestore()
    // Before, only the state machine's warning said so.
    expect(
      messages.filter((m) => m.includes('reports failed a payment recorded as paid')),
    ).toHaveLength(1)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })
})
