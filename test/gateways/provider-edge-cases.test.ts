/**
 * What BitPay, CoinPayments and Checkout.com document beyond the common path: money
 * confirmed after a payment failed, Checkout.com's own units per currency, and an
 * off-session decline reported by webhook only.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { adminAccess } from '../../src/core/principal.ts'
import { checkoutGateway } from '../../src/gateways/checkout/checkout.gateway.ts'
import { chargeDueInvoices } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { countAutomaticAttempts } from '../../src/modules/payments/automatic.ts'
import { defaultCheckoutCard } from '../checkout-helpers.ts'
import { connectBitpay, connectCoinpayments, listenForNotifications } from '../crypto-helpers.ts'
import type { BitpayEmulator } from '../emulators/bitpay/emulator.ts'
import { startBitpayEmulator } from '../emulators/bitpay/server.ts'
import type { CheckoutEmulator } from '../emulators/checkout/emulator.ts'
import { startCheckoutEmulator } from '../emulators/checkout/server.ts'
import type { CoinpaymentsEmulator } from '../emulators/coinpayments/emulator.ts'
import { startCoinpaymentsEmulator } from '../emulators/coinpayments/server.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  expectPaidInFull,
  getInvoice,
  getPayment,
  invoiceToPay,
  postSandboxWebhook,
  sandboxEventBody,
  sessionOf,
} from '../payments-helpers.ts'

let ctx: TestContext
let address: string
let bitpay: BitpayEmulator
let cp: CoinpaymentsEmulator
let cko: CheckoutEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  address = await listenForNotifications(ctx)
  bitpay = await startBitpayEmulator({ clock: ctx.clock })
  cp = await startCoinpaymentsEmulator({ clock: ctx.clock })
  cko = await startCheckoutEmulator({
    clock: ctx.clock,
    webhookUrl: `${address}/v1/webhooks/checkout/${ctx.main.tenant.id}/${ctx.main.test.id}`,
  })
  await connectBitpay(ctx, bitpay)
  await connectCoinpayments(ctx, cp)
  const checkout = await ctx.post('/v1/gateway_connections', {
    gateway: 'checkout',
    credentials: { secret_key: cko.secretKey, signature_key: cko.signatureKey },
    settings: { base_url: cko.url },
  })
  expect(checkout.status, checkout.text).toBe(201)
})

afterAll(async () => {
  await bitpay?.close()
  await cp?.close()
  await cko?.close()
  await ctx?.close()
})

/** The ids of every payment written for `invoiceId`, deleted ones too. */
async function paymentsWritten(invoiceId: string) {
  const rows = await ctx.db
    .selectFrom('payments')
    .select('id')
    .where('destination_id', '=', invoiceId)
    .execute()
  return rows.map((row) => row.id)
}

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
  /** A BitPay payment of a new invoice whose transaction BitPay called `invalid`: FAILED. */
  async function invalidated() {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await cryptoPayment('bitpay', invoice.id)
    const id = String(payment.gateway_tracking_id)
    bitpay.pay(id)
    await bitpay.waitForNotifications()
    bitpay.invalidate(id)
    await bitpay.waitForNotifications()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
    // The transaction confirms after BitPay's hour: BitPay moves the invoice to complete.
    const confirmLate = async () => {
      const record = bitpay.findInvoice(id)
      if (!record) throw new Error('no invoice')
      record.status = 'complete'
      bitpay.resendNotification(id)
      await bitpay.waitForNotifications()
    }
    return { invoice, payment, confirmLate }
  }

  test('an invoice that goes invalid and later completes (late confirmations) pays the invoice', async () => {
    const { invoice, payment, confirmLate } = await invalidated()
    await confirmLate()
    await expectPaidInFull(ctx, payment.id, invoice.id, '100.00')
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['from_status', 'to_status', 'note'])
      .where('payment_id', '=', payment.id)
      .orderBy('id')
      .execute()
    expect(history.slice(-3).map((t) => `${t.from_status}>${t.to_status}`)).toEqual([
      'FAILED>ON_RETRY',
      'ON_RETRY>PROCESSING',
      'PROCESSING>SUCCEEDED',
    ])
    expect(history.at(-3)?.note).toBe('the provider reported money after the failure')
  })

  test('a payment deleted once it failed, then completed late, is shown again with its money', async () => {
    const { payment, confirmLate } = await invalidated()
    expect((await ctx.delete(`/v1/payments/${payment.id}`)).status).toBe(200)
    const listed = async () =>
      (await ctx.get<{ items: { id: string }[] }>('/v1/payments?limit=1000')).body.items.map(
        (p) => p.id,
      )
    expect(await listed()).not.toContain(payment.id)
    await confirmLate()
    expect(await getPayment(ctx, payment.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    expect(await listed()).toContain(payment.id)
  })
})

describe('money after a failure, from a gateway that does not pay after one', () => {
  // The state machine refuses FAILED → SUCCEEDED: only the providers that document money
  // after a failure (BitPay, CoinPayments: `paysAfterFailure`) reopen the payment.
  test('a sandbox page that expired, then reported completed, stays FAILED (refused, logged)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    expect(link.status, link.text).toBe(201)
    const data = { payment_id: link.body.id, session_id: sessionOf(link.body) }
    const expired = await postSandboxWebhook(
      ctx,
      sandboxEventBody(`sbevt_late_${link.body.id}_1`, 'checkout.expired', data),
    )
    expect(expired.statusCode, expired.body).toBe(200)
    const errors = vi.spyOn(ctx.deps.logger, 'error')
    const completed = await postSandboxWebhook(
      ctx,
      sandboxEventBody(`sbevt_late_${link.body.id}_2`, 'checkout.completed', {
        ...data,
        amount: 10_000,
        amount_received: 10_000,
      }),
    )
    expect(completed.statusCode, completed.body).toBe(200)
    expect(completed.json().events[0].outcome).toBe('ignored')
    // Money the provider says it took is an operator's error, never only a warning.
    expect(errors.mock.calls.map(([fields]) => fields)).toContainEqual(
      expect.objectContaining({ payment_id: link.body.id, payment_status: 'FAILED' }),
    )
    errors.mockRestore()
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('FAILED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
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
    await expectPaidInFull(ctx, payment.id, invoice.id, '100.00')
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
    expect(await paymentsWritten(invoice.id)).toEqual([])
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

  test('a decline whose webhook is handled before its answer is one attempt, counted once against the automatic attempts', async () => {
    const { customer, invoice } = await invoiceToPay(
      ctx,
      { auto_pay: true },
      { collection_method: 'charge_automatically' },
    )
    await defaultCheckoutCard(ctx, cko, customer.id, '4000000000000002')
    const original = checkoutGateway.chargeSavedMethod
    if (!original) throw new Error('no chargeSavedMethod')
    // The webhook lands while the charge's answer is on its way back.
    checkoutGateway.chargeSavedMethod = async function (this: unknown, ...args) {
      cko.holdWebhooks()
      const answer = await original.apply(this, args)
      await cko.releaseWebhooks()
      await cko.waitForDeliveries()
      return answer
    }
    try {
      await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
      await chargeDueInvoices(ctx.deps)
    } finally {
      checkoutGateway.chargeSavedMethod = original
    }
    const [row] = await ctx.db
      .selectFrom('payments')
      .select('id')
      .where('customer_id', '=', customer.id)
      .execute()
    const payment = await getPayment(ctx, String(row?.id))
    expect(payment.payment_status).toBe('FAILED')
    expect(payment.attempts.map((a) => `${a.status}:${a.error_code}`)).toEqual([
      'failed:card_declined',
    ])
    const access = adminAccess({ tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id })
    expect(await countAutomaticAttempts(ctx.db, access, invoice.id)).toBe(1)
  })

  test('a card charge of an amount Checkout.com cannot take is 400, and nothing is written', async () => {
    const { customer, invoice } = await invoiceToPay(
      ctx,
      {},
      { currency: 'bhd', lines: [{ description: 'Plan', quantity: 1, unit_amount: '1.234' }] },
    )
    await defaultCheckoutCard(ctx, cko, customer.id, '4242424242424242')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'checkout',
      amount: '1.234',
      currency: 'bhd',
    })
    expect(res.status, res.text).toBe(400)
    expect(await paymentsWritten(invoice.id)).toEqual([])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'PENDING' })
  })
})
