/**
 * The crypto rails over a payment's life: overpayments and their excess refunded (recorded),
 * partial payments, payments whose start failed (cancel, and the lost invoice's expiry),
 * recorded refunds before the provider's last reports, and sandbox coins.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import {
  bitpayPaymentWithLostInvoice,
  connectBitpay,
  connectCoinpayments,
  listenForNotifications,
} from '../crypto-helpers.ts'
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
  address = await listenForNotifications(ctx)
  bitpay = await startBitpayEmulator({ clock: ctx.clock })
  cp = await startCoinpaymentsEmulator({
    clock: ctx.clock,
    usdRates: { ...DEFAULT_USD_RATES, JPY: 0.0067, KWD: 3.25 },
  })
  await connectBitpay(ctx, bitpay)
  await connectCoinpayments(ctx, cp)
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

describe('CoinPayments: a transaction whose creation answer was lost', () => {
  /** The buyer pays the transaction in full, and it completes. */
  async function paid(txnId: string) {
    cp.receive(txnId)
    cp.confirm(txnId)
    await cp.waitForNotifications()
  }

  /** A CoinPayments payment on `invoiceId` whose transaction was made but whose answer was lost. */
  async function lostTransaction(invoiceId: string) {
    cp.timeoutNext({ ms: 0, afterProcessing: true })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoiceId,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'coinpayments',
    })
    const made = cp.transactionsWithCustom(paymentId)
    expect(made).toHaveLength(1)
    return { paymentId, lostTxn: String(made[0]?.txnId) }
  }

  test('paid: the money is recorded on the payment its IPN names (custom), not refused as unknown', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn } = await lostTransaction(invoice.id)
    await paid(lostTxn)
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: lostTxn,
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('timed out, with no retry: the payment, tracking nothing, fails', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn } = await lostTransaction(invoice.id)
    cp.cancel(lostTxn)
    await cp.waitForNotifications()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'cancelled',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
  })

  test("an IPN whose custom names another rail's payment moves nothing there", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const mine = await crypto('coinpayments', invoice.id)
    const other = await crypto('sandbox', (await invoiceToPay(ctx)).invoice.id)
    const record = cp.findTransaction(tracking(mine))
    if (!record) throw new Error('no transaction')
    const stray = cp.createTransaction({ ...record, custom: other.id })
    if (typeof stray === 'string') throw new Error(stray)
    await paid(stray.txnId)
    expect(await getPayment(ctx, other.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
    })
    expect((await getPayment(ctx, mine.id)).payment_status).toBe('PENDING')
  })

  /** `lostTransaction`, then the payment processed again: a new transaction, tracked. */
  async function retriedAfterLoss(invoiceId: string) {
    const lost = await lostTransaction(invoiceId)
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${lost.paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body.payment_status).toBe('PENDING')
    expect(tracking(retried.body)).not.toBe(lost.lostTxn)
    return { ...lost, trackedTxn: tracking(retried.body) }
  }

  test('after a retry made another: the lost one timing out ends nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn, trackedTxn } = await retriedAfterLoss(invoice.id)
    cp.cancel(lostTxn)
    await cp.waitForNotifications()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PENDING')
    await paid(trackedTxn)
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('SUCCEEDED')
  })

  test('after a retry made another: money paid on the lost one still counts', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn } = await retriedAfterLoss(invoice.id)
    await paid(lostTxn)
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('cancel is 409: the transaction may exist, and the money then paid on it is recorded', async () => {
    // CoinPayments emails the buyer the address of the transaction it made. Before, every
    // failed start was recorded as `coinpayments_error`, which cancel does not take for a lost
    // answer: the payment was CANCELLED, and the money then paid refused (CANCELLED cannot
    // become SUCCEEDED), recorded nowhere.
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn } = await lostTransaction(invoice.id)
    expect((await getPayment(ctx, paymentId)).status_code).toBe('network_error')
    const cancelled = await ctx.post(`/v1/payments/${paymentId}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(409)
    await paid(lostTxn)
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test.each([503, 500])(
    'a %i answer to create_transaction is a lost answer too: retryable, and cancel is 409',
    async (status) => {
      const { invoice } = await invoiceToPay(ctx)
      cp.failNext({ status })
      const res = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'CRYPTO',
        payment_gateway: 'coinpayments',
        amount: '100.00',
      })
      expect(res.status, res.text).toBe(502)
      const details = (res.body as unknown as { error: { details: Record<string, unknown> } }).error
        .details
      expect(details).toMatchObject({ retryable: true })
      const paymentId = String(details.payment_id)
      expect(await getPayment(ctx, paymentId)).toMatchObject({
        payment_status: 'INITIATED',
        status_code: `http_${status}`,
      })
      const cancelled = await ctx.post(`/v1/payments/${paymentId}/cancel`)
      expect(cancelled.status, cancelled.text).toBe(409)
    },
  )

  test('after a retry made another: both paid, the second is reported for an operator, not dropped as a repeat', async () => {
    // The buyer paid both transactions CoinPayments emailed them: 200.00 for one payment of
    // 100.00. SUCCEEDED cannot take the second, which was taken for a repeat of the first
    // (same status) and dropped, logged nowhere.
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn, trackedTxn } = await retriedAfterLoss(invoice.id)
    cp.receive(trackedTxn)
    cp.confirm(trackedTxn, { payout: 'nightly' })
    await cp.waitForNotifications()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: trackedTxn,
    })
    const errors = await errorsLoggedDuring(() => paid(lostTxn))
    expect(errors.filter((m) => m.includes('refund or record it by hand'))).toHaveLength(1)
    expect(await coinpaymentsOutcomes(lostTxn, 'status.100')).toEqual(['money_refused'])
    // The paying transaction's own later report (100 after 2) is still a repeat.
    const repeats = await errorsLoggedDuring(async () => {
      cp.confirm(trackedTxn)
      await cp.waitForNotifications()
    })
    expect(repeats).toEqual([])
    expect(await coinpaymentsOutcomes(trackedTxn, 'status.100')).toEqual(['repeat'])
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: trackedTxn,
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('after a retry made another: coins in flight on the lost one, the tracked one timing out ends nothing', async () => {
    // Before, the tracked transaction's time-out failed the payment whose coins were in flight
    // on the lost one: the invoice stopped counting them and took a second payment of it all,
    // and when the coins completed, the invoice was paid twice.
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn, trackedTxn } = await retriedAfterLoss(invoice.id)
    cp.receive(lostTxn)
    await cp.waitForNotifications()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PROCESSING')
    cp.cancel(trackedTxn)
    await cp.waitForNotifications()
    await expectStillInFlight(invoice.id, paymentId)
    cp.confirm(lostTxn)
    await cp.waitForNotifications()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('after a retry made another: coins on the lost one that time out fail the payment, tracking the other', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostTxn, trackedTxn } = await retriedAfterLoss(invoice.id)
    cp.receive(lostTxn)
    await cp.waitForNotifications()
    cp.cancel(trackedTxn)
    cp.cancel(lostTxn)
    await cp.waitForNotifications()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'cancelled',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
  })
})

/** What Payrail made of CoinPayments' IPNs of `type` about `txnId` (their outcomes). */
async function coinpaymentsOutcomes(txnId: string, type: string) {
  const rows = await ctx.db
    .selectFrom('webhook_events')
    .select('outcome')
    .where('gateway', '=', 'coinpayments')
    .where('event_type', '=', type)
    .where(sql<string>`payload->>'txnId'`, '=', txnId)
    .execute()
  return rows.map((row) => row.outcome)
}

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
    const { paymentId, lostId } = await bitpayPaymentWithLostInvoice(
      ctx,
      bitpay,
      address,
      invoice.id,
    )
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

describe('BitPay: an invoice whose creation answer was lost, and the one a retry made', () => {
  /** A payment whose first invoice's answer was lost, processed again: a second invoice, tracked. */
  async function retriedAfterLoss(invoiceId: string) {
    const lost = await bitpayPaymentWithLostInvoice(ctx, bitpay, address, invoiceId)
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${lost.paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(tracking(retried.body)).not.toBe(lost.lostId)
    return { ...lost, trackedId: tracking(retried.body) }
  }

  test('both paid: the second is reported for an operator, not dropped as a repeat', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostId, trackedId } = await retriedAfterLoss(invoice.id)
    bitpay.pay(trackedId)
    bitpay.confirm(trackedId)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('SUCCEEDED')
    const errors = await errorsLoggedDuring(async () => {
      bitpay.pay(lostId)
      bitpay.confirm(lostId)
      await bitpay.waitForNotifications()
    })
    expect(errors.filter((m) => m.includes('refund or record it by hand'))).toHaveLength(1)
    const recorded = await ctx.db
      .selectFrom('webhook_events')
      .select('outcome')
      .where('gateway', '=', 'bitpay')
      .where('event_id', '=', `${lostId}:confirmed:none`)
      .execute()
    expect(recorded.map((row) => row.outcome)).toEqual(['money_refused'])
    // BitPay's complete for the invoice that paid is still a repeat.
    const repeats = await errorsLoggedDuring(async () => {
      bitpay.complete(trackedId)
      await bitpay.waitForNotifications()
    })
    expect(repeats).toEqual([])
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: trackedId,
    })
  })

  test('coins in flight on the lost one: the tracked one expiring ends nothing, and the coins confirmed pay the invoice once', async () => {
    // Before, the tracked invoice's expiry failed the payment whose coins were in flight on
    // the lost one (`payment.failed`): the invoice took a second payment of it all beside them.
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostId, trackedId } = await retriedAfterLoss(invoice.id)
    bitpay.pay(lostId)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PROCESSING')
    bitpay.expire(trackedId)
    await bitpay.waitForNotifications()
    await expectStillInFlight(invoice.id, paymentId)
    bitpay.confirm(lostId)
    await bitpay.waitForNotifications()
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('coins on the lost one that never confirm (invalid) fail the payment, tracking the other', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostId, trackedId } = await retriedAfterLoss(invoice.id)
    bitpay.pay(lostId)
    await bitpay.waitForNotifications()
    bitpay.expire(trackedId)
    bitpay.invalidate(lostId)
    await bitpay.waitForNotifications()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'invalid',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
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

/** A BitPay payment of `invoiceId`, paid and confirmed: SUCCEEDED. */
async function confirmedBitpayPayment(invoiceId: string) {
  const payment = await crypto('bitpay', invoiceId)
  const id = tracking(payment)
  bitpay.pay(id)
  bitpay.confirm(id)
  await bitpay.waitForNotifications()
  expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  return { payment, id }
}

/** The messages logged as errors while `run` runs. */
async function errorsLoggedDuring(run: () => Promise<void>): Promise<string[]> {
  const spy = vi.spyOn(ctx.deps.logger, 'error')
  try {
    await run()
    return spy.mock.calls.map((c) => String(c[1] ?? c[0]))
  } finally {
    spy.mockRestore()
  }
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

  test('a transaction CoinPayments refused (an API error: a currency it cannot convert) opened nothing: not retryable, and the payment can be cancelled', async () => {
    const { invoice } = await invoiceIn('chf', '100.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'coinpayments',
      amount: '100.00',
      currency: 'chf',
    })
    expect(res.status, res.text).toBe(502)
    const details = (res.body as unknown as { error: { details: Record<string, unknown> } }).error
      .details
    // Before, 502 retryable: a retry would be refused the same way.
    expect(details).toMatchObject({ retryable: false })
    const paymentId = String(details.payment_id)
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'INITIATED',
      status_code: 'coinpayments_error',
    })
    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    expect(cancelled.body.payment_status).toBe('CANCELLED')
  })

  test('the invoice BitPay made for a payment whose answer was lost expires: the payment, tracking nothing, fails', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { paymentId, lostId } = await bitpayPaymentWithLostInvoice(
      ctx,
      bitpay,
      address,
      invoice.id,
    )
    expect((await ctx.post(`/v1/payments/${paymentId}/cancel`)).status).toBe(409)
    bitpay.expire(lostId)
    await bitpay.waitForNotifications()
    // Before, the expiry was ignored (another invoice than the one tracked, which was none)
    // and the cancel stayed 409: the payment could neither fail nor be cancelled.
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
  })
})

describe('recorded coin refunds and the later reports of the provider', () => {
  test('BitPay confirmed, refunded (recorded), then complete: a repeat, not money the payment refuses', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { payment, id } = await confirmedBitpayPayment(invoice.id)
    const refund = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(refund.status, refund.text).toBe(201)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('REFUNDED')
    const messages = await errorsLoggedDuring(async () => {
      bitpay.complete(id)
      await bitpay.waitForNotifications()
    })
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
    const messages = await errorsLoggedDuring(async () => {
      cp.confirm(id)
      await cp.waitForNotifications()
    })
    expect(messages.filter((m) => m.includes('refund or record it by hand'))).toEqual([])
  })

  test('BitPay declining an invoice it had confirmed is an error for an operator (the payment cannot fail; the money may not arrive)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { payment, id } = await confirmedBitpayPayment(invoice.id)
    const messages = await errorsLoggedDuring(async () => {
      bitpay.decline(id)
      await bitpay.waitForNotifications()
    })
    // Before, only the state machine's warning said so.
    expect(
      messages.filter((m) => m.includes('reports failed a payment recorded as paid')),
    ).toHaveLength(1)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('SUCCEEDED')
  })
})

/** Coins in flight: the payment stays PROCESSING, and so does its invoice, which takes no second payment. */
async function expectStillInFlight(invoiceId: string, paymentId: string) {
  const second = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'OFFLINE',
    amount: '100.00',
  })
  expect({
    payment: (await getPayment(ctx, paymentId)).payment_status,
    invoice: (await getInvoice(ctx, invoiceId)).payment_status,
    second_payment: second.status,
  }).toEqual({ payment: 'PROCESSING', invoice: 'PROCESSING', second_payment: 409 })
}
