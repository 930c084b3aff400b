import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import {
  createCustomer,
  eventsOf,
  finalizedInvoice,
  type InvoiceBody,
  type List,
  oneTimePrice,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  pagePost,
  payrailLockWaits,
  postSandboxWebhook,
  sandboxEventBody,
  sessionOf,
  submitCard,
  whileLocked,
} from '../payments-helpers.ts'

interface PayOption {
  payment_method_type: string
  payment_gateway: string
  available: boolean
  reason: string | null
  payment_method_id: string | null
  card: { brand: string | null; last4: string | null } | null
  balance: string | null
}

interface PayOptions {
  object: string
  invoice_id: string
  customer_id: string
  payable: boolean
  reason: string | null
  currency: string
  amount_remaining: string
  payment_window_ends_at: string | null
  options: PayOption[]
}

interface OrderBody {
  id: string
  type: string
  status: string
  amount: string
  currency: string
  customer_id: string
  invoice_id: string
  fulfilled_at: string | null
}

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
  // EXTERNAL payments need a connected external gateway in this environment.
  const connected = await ctx.post('/v1/gateway_connections', {
    gateway: 'external',
    credentials: { webhook_secret: 'external-secret' },
  })
  expect(connected.status).toBe(201)
})
afterAll(() => ctx.close())

function errorOf(res: { body: unknown }): ErrorBody['error'] {
  return (res.body as ErrorBody).error
}

async function fund(customerId: string, amount: string, currency = 'usd') {
  const res = await ctx.post(`/v1/customers/${customerId}/balance_transactions`, {
    amount,
    currency,
  })
  expect(res.status).toBe(201)
}

async function balanceOf(customerId: string, currency = 'usd') {
  const res = await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customerId}`)
  return res.body.balances[currency] ?? '0.00'
}

async function customerToken(customerId: string) {
  const res = await ctx.post<{ token: string }>(`/v1/customers/${customerId}/tokens`)
  expect(res.status).toBe(201)
  return res.body.token
}

function onRamp(invoiceId: string, body: Record<string, unknown>, key?: string) {
  return ctx.put<PaymentBody>(
    `/v1/invoices/${invoiceId}/payment`,
    body,
    key === undefined ? {} : { key },
  )
}

function confirm(invoiceId: string, body: Record<string, unknown> = {}, key?: string) {
  return ctx.post<PaymentBody>(
    `/v1/invoices/${invoiceId}/payment/confirm`,
    body,
    key === undefined ? {} : { key },
  )
}

async function discountCode(body: Record<string, unknown> = { percent_off: 10 }) {
  const code = `SAVE${randomBytes(4).toString('hex').toUpperCase()}`
  const res = await ctx.post<{ code: string; id: string }>('/v1/discounts', { code, ...body })
  expect(res.status).toBe(201)
  return res.body
}

async function timesRedeemed(discountId: string) {
  return (await ctx.get<{ times_redeemed: number }>(`/v1/discounts/${discountId}`)).body
    .times_redeemed
}

async function order(body: Record<string, unknown>) {
  const res = await ctx.post<OrderBody>('/v1/orders', body)
  expect(res.status).toBe(201)
  return res.body
}

async function getOrder(id: string) {
  return (await ctx.get<OrderBody>(`/v1/orders/${id}`)).body
}

async function cryptoPayment(body: Record<string, unknown> = {}) {
  const { customer, invoice } = await invoiceToPay(ctx)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'sandbox',
    amount: '100.00',
    ...body,
  })
  expect(res.status).toBe(201)
  return { customer, invoice, payment: res.body, page: `/sandbox/crypto/${sessionOf(res.body)}` }
}

describe('sandbox CRYPTO', () => {
  test('creates a PENDING payment with a crypto page', async () => {
    const { payment, page } = await cryptoPayment()
    expect(payment).toMatchObject({
      payment_status: 'PENDING',
      current_state: 'pending',
      payment_method_type: 'CRYPTO',
      payment_gateway: 'sandbox',
      payment_url: expect.stringMatching(/\/sandbox\/crypto\/sbs_[0-9a-f]+$/),
      gateway_tracking_id: sessionOf(payment),
    })
    const shown = await ctx.app.inject({ method: 'GET', url: page })
    expect(shown.statusCode).toBe(200)
    expect(shown.body).toContain('100.00 USD')
    expect(shown.body).toContain('value="pay_and_confirm"')
  })

  test('pay_and_confirm: SUCCEEDED and the invoice reconciled', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    const res = await pagePost(ctx, page, 'pay_and_confirm')
    expect(res.statusCode).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect(await eventsOf(ctx, payment.id, 'payment.processing')).toHaveLength(1)
    expect(await eventsOf(ctx, payment.id, 'payment.succeeded')).toHaveLength(1)
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
    // The invoice page is closed now: pressing the button again pays nothing twice.
    await pagePost(ctx, page, 'pay_and_confirm')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('pay_and_confirm redirects to success_url when there is one', async () => {
    const { page } = await cryptoPayment({ success_url: 'https://merchant.example/paid' })
    const res = await pagePost(ctx, page, 'pay_and_confirm')
    expect(res.statusCode).toBe(303)
    expect(res.headers.location).toBe('https://merchant.example/paid')
  })

  test('pay then confirm: PROCESSING, then SUCCEEDED', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    expect((await pagePost(ctx, page, 'pay')).statusCode).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PROCESSING',
      current_state: 'processing',
      amount_paid: '0.00',
    })
    // The invoice shows its payment in flight.
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PROCESSING',
      amount_paid: '0.00',
    })
    expect((await pagePost(ctx, page, 'confirm')).statusCode).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('the invoice is PROCESSING while any of its payments is, and PENDING again once they settled short of its total', async () => {
    const { invoice, page } = await cryptoPayment({ amount: '60.00' })
    const second = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'sandbox',
      amount: '30.00',
    })
    expect(second.status, second.text).toBe(201)
    const secondPage = `/sandbox/crypto/${sessionOf(second.body)}`
    await pagePost(ctx, page, 'pay')
    await pagePost(ctx, secondPage, 'pay')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('PROCESSING')
    // One settles: the other is still in flight.
    await pagePost(ctx, page, 'confirm')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PROCESSING',
      amount_paid: '60.00',
    })
    // Both settled, 10.00 still owed: the invoice waits for it.
    await pagePost(ctx, secondPage, 'confirm')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '90.00',
      amount_remaining: '10.00',
    })
  })

  test('a payment awaiting confirmations holds its share: other payments fit only beside it', async () => {
    const { invoice, payment, page } = await cryptoPayment({ amount: '60.00' })
    expect((await pagePost(ctx, page, 'pay')).statusCode).toBe(200)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PROCESSING')
    const pay = (amount: string, method: Record<string, string>) =>
      createPayment(ctx, { destination_id: invoice.id, amount, ...method })
    const offline = { payment_method_type: 'OFFLINE' }
    const link = { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' }
    for (const method of [offline, link]) {
      const refused = await pay('40.01', method)
      expect(refused.status, refused.text).toBe(409)
      expect((refused.body as unknown as ErrorBody).error).toMatchObject({
        code: 'conflict',
        details: { invoice_id: invoice.id, still_owed: '40.00' },
      })
    }
    const fits = await pay('40.00', offline)
    expect(fits.status, fits.text).toBe(201)
    expect(fits.body.payment_status).toBe('SUCCEEDED')
    const none = await pay('0.01', link)
    expect(none.status, none.text).toBe(409)
    expect((none.body as unknown as ErrorBody).error.details).toMatchObject({ still_owed: '0.00' })
    // Refused ones wrote nothing: the crypto payment and the offline one are the invoice's only.
    const listed = await ctx.get<List<PaymentBody>>(
      `/v1/payments?destination_id=${invoice.id}&include_inactive=true`,
    )
    expect(listed.body.items.map((p) => p.id).sort()).toEqual([payment.id, fits.body.id].sort())
    expect((await pagePost(ctx, page, 'confirm')).statusCode).toBe(200)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
  })

  test('underpay: the payment records half, the invoice still owes the other half', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    await pagePost(ctx, page, 'underpay')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount: '100.00',
      amount_paid: '50.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '50.00',
      amount_remaining: '50.00',
    })
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(0)
    // The rest can be paid with another payment.
    const rest = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(rest.status).toBe(201)
    expect(rest.body.amount).toBe('50.00')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
  })

  test('overpay: payment and invoice OVERPAID', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    await pagePost(ctx, page, 'overpay')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'OVERPAID',
      current_state: 'succeeded',
      amount_paid: '120.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '120.00',
      amount_remaining: '0.00',
    })
    expect(await eventsOf(ctx, invoice.id, 'invoice.overpaid')).toHaveLength(1)
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
  })

  test('expire: FAILED, the invoice still unpaid', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    await pagePost(ctx, page, 'expire')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'FAILED',
      current_state: 'failed',
      status_code: 'expired',
      amount_paid: '0.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_remaining: '100.00',
    })
    // An expired invoice page takes no money.
    await pagePost(ctx, page, 'pay_and_confirm')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
  })

  test('a page past its expiry lapses when it is next opened: its payment FAILED, its buttons refused', async () => {
    const { invoice, payment, page } = await cryptoPayment()
    ctx.clock.advance(25 * 60 * 60 * 1000)
    // Before, it showed "waiting" for good, every button (and "Let it expire") did nothing,
    // and the payment stayed PENDING.
    const shown = await ctx.app.inject({ method: 'GET', url: page })
    expect(shown.statusCode).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
    await pagePost(ctx, page, 'pay_and_confirm')
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('FAILED')
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
  })

  test('an unknown action is 400 and an unknown session 404', async () => {
    const { payment, page } = await cryptoPayment()
    expect((await pagePost(ctx, page, 'steal')).statusCode).toBe(400)
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    expect((await pagePost(ctx, '/sandbox/crypto/sbs_nope', 'pay')).statusCode).toBe(404)
  })
})

describe('invoice on-ramp: PUT/PATCH /v1/invoices/:id/payment and confirm', () => {
  test('PUT on an invoice that an orders payment pays returns that payment with all its invoices', async () => {
    const customer = await createCustomer(ctx)
    const product = async (amount: string) =>
      order({
        customer_id: customer.id,
        type: 'ONE_TIME_PRODUCT',
        price_id: await oneTimePrice(ctx, amount),
      })
    const a = await product('30.00')
    const b = await product('20.00')
    const paid = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [a.id, b.id],
      payment_method_type: 'EXTERNAL',
    })
    expect(paid.status, paid.text).toBe(201)
    const put = await onRamp(b.invoice_id, { type: 'EXTERNAL' })
    expect(put.status, put.text).toBe(200)
    // Before, it said it paid [b] alone, for 50.00.
    expect(put.body).toMatchObject({
      id: paid.body.id,
      amount: '50.00',
      invoice_ids: [a.invoice_id, b.invoice_id],
    })
  })

  test('PLATFORM: 201 creates an INITIATED CREDITS payment; a second PUT returns it (200)', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const first = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    expect(first.status).toBe(201)
    expect(first.body).toMatchObject({
      payment_status: 'INITIATED',
      payment_method_type: 'CREDITS',
      payment_gateway: 'platform',
      amount: '100.00',
      customer_id: customer.id,
      destination_type: 'INVOICE',
      destination_id: invoice.id,
      invoice_ids: [invoice.id],
    })
    const second = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    expect(second.status).toBe(200)
    expect(second.body.id).toBe(first.body.id)
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoice.id}`)
    expect(listed.body.pagination.total).toBe(1)
  })

  test('10 concurrent PUTs create one payment: one 201, the rest 200 with the same payment', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id }),
      ),
    )
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoice.id}`)
    expect(listed.body.pagination.total).toBe(1)
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1)
    expect(results.filter((r) => r.status === 201)).toHaveLength(1)
    expect(results.filter((r) => r.status === 200)).toHaveLength(9)
  })

  test('PLATFORM without account_id, or with another customer, is 400', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const someoneElse = await createCustomer(ctx, { name: 'Someone else' })
    const missing = await onRamp(invoice.id, { type: 'PLATFORM' })
    expect(missing.status).toBe(400)
    expect(errorOf(missing).code).toBe('validation_error')
    const wrong = await onRamp(invoice.id, { type: 'PLATFORM', account_id: someoneElse.id })
    expect(wrong.status).toBe(400)
    expect(errorOf(wrong).code).toBe('validation_error')
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoice.id}`)
    expect(listed.body.pagination.total).toBe(0)
  })

  test('an unknown type is 400 and an unknown invoice 404', async () => {
    const { invoice } = await invoiceToPay(ctx)
    expect((await onRamp(invoice.id, { type: 'BARTER' })).status).toBe(400)
    expect((await onRamp('inv_00000000000000000000000000', { type: 'CHECKOUT' })).status).toBe(404)
  })

  test('confirm processes the PLATFORM payment from the balance: SUCCEEDED', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '150.00')
    const created = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    const confirmed = await confirm(invoice.id)
    expect(confirmed.status).toBe(200)
    expect(confirmed.body).toMatchObject({
      id: created.body.id,
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
    })
    expect(await balanceOf(customer.id)).toBe('50.00')
  })

  test('confirm with a balance that does not cover it is 402 insufficient_funds; nothing is debited', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '40.00')
    const created = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    const confirmed = await confirm(invoice.id, { payment_id: created.body.id })
    expect(confirmed.status).toBe(402)
    expect(errorOf(confirmed).code).toBe('insufficient_funds')
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('FAILED')
    expect(await balanceOf(customer.id)).toBe('40.00')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })

  test('CHECKOUT: confirm gives a PENDING sandbox payment with a payment_url the customer pays', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await onRamp(invoice.id, {
      type: 'CHECKOUT',
      success_url: 'https://merchant.example/ok',
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      payment_status: 'INITIATED',
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      payment_url: null,
      success_url: 'https://merchant.example/ok',
    })
    const confirmed = await confirm(invoice.id)
    expect(confirmed.status).toBe(200)
    expect(confirmed.body).toMatchObject({ id: created.body.id, payment_status: 'PENDING' })
    const session = sessionOf(confirmed.body)
    // Asking again returns the open payment with its page, and confirming again changes nothing.
    const again = await onRamp(invoice.id, { type: 'CHECKOUT' })
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({
      id: created.body.id,
      payment_url: confirmed.body.payment_url,
    })
    expect((await confirm(invoice.id)).body.payment_url).toBe(confirmed.body.payment_url)

    const paid = await submitCard(ctx, session, '4242424242424242')
    expect(paid.statusCode).toBe(303)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('EXTERNAL: some_data travels as a JSON string in gateway_metadata.some_data', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await onRamp(invoice.id, { type: 'EXTERNAL', some_data: { a: 1 } })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      payment_method_type: 'EXTERNAL',
      payment_gateway: 'external',
      gateway_metadata: { some_data: '{"a":1}' },
    })
    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      some_data: { a: 2, b: ['x'] },
    })
    expect(patched.status).toBe(200)
    expect(patched.body.gateway_metadata).toEqual({ some_data: '{"a":2,"b":["x"]}' })
    const confirmed = await confirm(invoice.id)
    expect(confirmed.status).toBe(200)
    expect(confirmed.body).toMatchObject({
      payment_status: 'PENDING',
      gateway_metadata: { some_data: '{"a":2,"b":["x"]}' },
    })
  })

  test('PATCH with a discount_code lowers the payment amount and the invoice total', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const discount = await discountCode({ percent_off: 10 })
    const created = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    expect(created.body.amount).toBe('100.00')
    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: discount.code,
    })
    expect(patched.status).toBe(200)
    expect(patched.body).toMatchObject({
      id: created.body.id,
      amount: '90.00',
      discount_code: discount.code,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      subtotal: '100.00',
      total_discount: '10.00',
      total: '90.00',
      amount_due: '90.00',
      amount_remaining: '90.00',
    })
    expect(await timesRedeemed(discount.id)).toBe(1)

    await fund(customer.id, '90.00')
    const confirmed = await confirm(invoice.id)
    expect(confirmed.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '90.00' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '90.00',
      amount_remaining: '0.00',
    })
    expect(await balanceOf(customer.id)).toBe('0.00')
  })

  test('PUT with a discount_code creates the payment for the discounted amount', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const discount = await discountCode({ percent_off: 25 })
    const created = await onRamp(invoice.id, {
      type: 'PLATFORM',
      account_id: customer.id,
      discount_code: discount.code,
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect(created.body).toMatchObject({ amount: '75.00', discount_code: discount.code })
    expect((await getInvoice(ctx, invoice.id)).total).toBe('75.00')
  })

  test('PUT with a discount_code when the open payment exists is 409: the code is not spent, the amounts unchanged', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const first = await onRamp(invoice.id, { type: 'CHECKOUT' })
    expect(first.status).toBe(201)
    const discount = await discountCode({ percent_off: 10 })
    const again = await ctx.put<ErrorBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'CHECKOUT',
      discount_code: discount.code,
    })
    expect(again.status).toBe(409)
    expect(again.body.error.message).toMatch(/PATCH/)
    expect(await timesRedeemed(discount.id)).toBe(0)
    expect((await getInvoice(ctx, invoice.id)).total).toBe('100.00')
    expect((await getPayment(ctx, first.body.id)).amount).toBe('100.00')
    // PATCH applies it to the payment and the invoice together.
    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: discount.code,
    })
    expect(patched.status, patched.text).toBe(200)
    expect(patched.body.amount).toBe('90.00')
    expect((await getInvoice(ctx, invoice.id)).total).toBe('90.00')
  })

  test('a discount code is refused while a page for the full amount is open on the invoice: paid, it would overpay', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const page = await createSandboxLink(ctx, invoice)
    expect(page.body.payment_status).toBe('PENDING')
    const discount = await discountCode({ percent_off: 50 })
    for (const path of ['/v1/payments', `/v1/invoices/${invoice.id}/pay`]) {
      const res = await ctx.post<ErrorBody>(path, {
        payment_method_type: 'OFFLINE',
        discount_code: discount.code,
        ...(path === '/v1/payments' && {
          destination_type: 'INVOICE',
          destination_id: invoice.id,
          currency: 'usd',
          amount: '50.00',
          process_payment: false,
        }),
      })
      expect(res.status, res.text).toBe(422)
      expect(res.body.error).toMatchObject({
        code: 'invalid_state_transition',
        details: { payment_id: page.body.id },
      })
    }
    expect(await timesRedeemed(discount.id)).toBe(0)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total: '100.00',
      amount_remaining: '100.00',
    })
    // Paid, the page pays exactly what is owed.
    expect((await submitCard(ctx, sessionOf(page.body), '4242424242424242')).statusCode).toBe(200)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('PATCH that waited for the payment while a confirm took it changes nothing: 422, under the lock', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await onRamp(invoice.id, { type: 'EXTERNAL' })
    expect(created.status).toBe(201)
    const id = created.body.id
    const patched = await whileLocked(
      ctx,
      id,
      () =>
        ctx.patch<ErrorBody>(`/v1/invoices/${invoice.id}/payment`, {
          success_url: 'https://merchant.example/late',
        }),
      // What a confirm holding the lock commits: the payment is on its way to the gateway.
      async (holder) => {
        await holder.query(`update payments set payment_status = 'PENDING' where id = $1`, [id])
      },
    )
    expect(patched.status, JSON.stringify(patched.body)).toBe(422)
    expect(patched.body.error.code).toBe('invalid_state_transition')
    expect((await getPayment(ctx, id)).success_url).not.toBe('https://merchant.example/late')
  })

  test('PATCH cannot change the type, and an unknown discount code changes nothing', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id })
    const typeChange = await ctx.patch(`/v1/invoices/${invoice.id}/payment`, { type: 'CHECKOUT' })
    expect(typeChange.status).toBe(400)
    const unknown = await ctx.patch(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: 'NOPE-NOT-A-CODE',
    })
    expect(unknown.status).toBeGreaterThanOrEqual(400)
    expect(unknown.status).toBeLessThan(500)
    expect((await getInvoice(ctx, invoice.id)).total).toBe('100.00')
  })

  test('PATCH or confirm without an open payment is 404', async () => {
    const { invoice } = await invoiceToPay(ctx)
    expect((await ctx.patch(`/v1/invoices/${invoice.id}/payment`, {})).status).toBe(404)
    expect((await confirm(invoice.id)).status).toBe(404)
  })

  test('customer token: own invoice works; another customer invoice is 404 on every on-ramp route', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { invoice: theirs } = await invoiceToPay(ctx, { name: 'Another' })
    const token = await customerToken(customer.id)
    await fund(customer.id, '100.00')

    const created = await onRamp(invoice.id, { type: 'PLATFORM', account_id: customer.id }, token)
    expect(created.status).toBe(201)
    expect(created.body.customer_id).toBe(customer.id)
    const confirmed = await confirm(invoice.id, {}, token)
    expect(confirmed.status).toBe(200)
    expect(confirmed.body.payment_status).toBe('SUCCEEDED')

    expect((await onRamp(theirs.id, { type: 'CHECKOUT' }, token)).status).toBe(404)
    expect((await ctx.patch(`/v1/invoices/${theirs.id}/payment`, {}, { key: token })).status).toBe(
      404,
    )
    expect((await confirm(theirs.id, {}, token)).status).toBe(404)
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${theirs.id}`)
    expect(listed.body.pagination.total).toBe(0)
  })

  test("a customer cannot confirm or change an admin's OFFLINE payment it could not create", async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const token = await customerToken(customer.id)
    // The merchant records a bank transfer it expects, to be settled when the money arrives.
    const expected = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: invoice.amount_due,
      process_payment: false,
    })
    expect(expected.status, expected.text).toBe(201)
    expect(expected.body.payment_status).toBe('INITIATED')
    const named = await confirm(invoice.id, { payment_id: expected.body.id }, token)
    expect(named.status).toBe(403)
    expect((await confirm(invoice.id, {}, token)).status).toBe(404)
    const patched = await ctx.patch(
      `/v1/invoices/${invoice.id}/payment`,
      { payment_id: expected.body.id, success_url: 'https://shop.example/ok' },
      { key: token },
    )
    expect(patched.status).toBe(403)
    expect((await getPayment(ctx, expected.body.id)).payment_status).toBe('INITIATED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
    // The merchant settles it.
    expect((await confirm(invoice.id, { payment_id: expected.body.id })).status).toBe(200)
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('no key is 401', async () => {
    const { invoice } = await invoiceToPay(ctx)
    expect(
      (await ctx.put(`/v1/invoices/${invoice.id}/payment`, { type: 'CHECKOUT' }, { key: null }))
        .status,
    ).toBe(401)
    expect(
      (await ctx.post(`/v1/invoices/${invoice.id}/payment/confirm`, {}, { key: null })).status,
    ).toBe(401)
  })
})

// The amount of a payment is its caller's: a code applied through the on-ramp brings a payment
// of all the invoice owed down with it, never a payment of part of it up to the rest.
describe('a discount code applied through PATCH /v1/invoices/:id/payment to a partial payment', () => {
  const partial = async (invoiceId: string, method: string, amount: string) => {
    const res = await createPayment(ctx, {
      destination_id: invoiceId,
      payment_method_type: method,
      amount,
      process_payment: false,
    })
    expect(res.status, res.text).toBe(201)
    return res.body
  }

  test('a 30.00 CREDITS payment of a 100.00 invoice stays 30.00 and takes 30.00 off the balance', async () => {
    const customer = await createCustomer(ctx)
    const discount = await discountCode({ percent_off: 10 })
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '100.00',
      currency: 'usd',
    })
    const invoice = await finalizedInvoice(ctx, customer.id)
    const part = await partial(invoice.id, 'CREDITS', '30.00')
    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: discount.code,
      payment_id: part.id,
    })
    expect(patched.status, patched.text).toBe(200)
    expect(patched.body.amount).toBe('30.00')
    const confirmed = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/payment/confirm`, {
      payment_id: part.id,
    })
    expect(confirmed.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '30.00' })
    const shown = await ctx.get<{ balances: Record<string, string> }>(
      `/v1/customers/${customer.id}`,
    )
    expect(shown.body.balances).toEqual({ usd: '70.00' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total: '90.00',
      amount_remaining: '60.00',
    })
  })

  test('the code the invoice already has, sent again, leaves a partial payment as it is', async () => {
    const customer = await createCustomer(ctx)
    const discount = await discountCode({ percent_off: 10 })
    const order = await ctx.post<{ invoice_id: string; invoice: InvoiceBody }>('/v1/orders', {
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: await oneTimePrice(ctx, '100.00'),
      discount_code: discount.code,
    })
    expect(order.body.invoice.total).toBe('90.00')
    const part = await partial(order.body.invoice_id, 'OFFLINE', '20.00')
    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${order.body.invoice_id}/payment`, {
      discount_code: discount.code,
      payment_id: part.id,
    })
    expect(patched.status, patched.text).toBe(200)
    expect(patched.body.amount).toBe('20.00')
  })

  test('a partial payment more than the invoice owes once the code applies is refused, and the code not applied', async () => {
    const customer = await createCustomer(ctx)
    const discount = await discountCode({ percent_off: 10 })
    const invoice = await finalizedInvoice(ctx, customer.id)
    const part = await partial(invoice.id, 'OFFLINE', '95.00')
    const refused = await ctx.patch<ErrorBody>(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: discount.code,
      payment_id: part.id,
    })
    expect(refused.status, refused.text).toBe(422)
    expect(refused.body.error.details).toMatchObject({ amount: '95.00', amount_remaining: '90.00' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total: '100.00',
      discount_code: null,
    })
    expect(await timesRedeemed(discount.id)).toBe(0)
    expect((await getPayment(ctx, part.id)).amount).toBe('95.00')
  })
})

describe('GET /v1/invoices/:id/pay_options', () => {
  const option = (options: PayOptions, type: string) =>
    options.options.find((o) => o.payment_method_type === type)

  test('lists the rails with availability: no saved card, balance too small', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const res = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      object: 'pay_options',
      invoice_id: invoice.id,
      customer_id: customer.id,
      payable: true,
      reason: null,
      currency: 'usd',
      amount_remaining: '100.00',
    })
    expect(option(res.body, 'PAYMENT_LINK')).toMatchObject({
      payment_gateway: 'sandbox',
      available: true,
    })
    expect(option(res.body, 'CRYPTO')).toMatchObject({
      payment_gateway: 'sandbox',
      available: true,
    })
    expect(option(res.body, 'OFFLINE')).toMatchObject({
      payment_gateway: 'offline',
      available: true,
    })
    expect(option(res.body, 'EXTERNAL')).toMatchObject({
      payment_gateway: 'external',
      available: true,
    })
    expect(option(res.body, 'CARD')).toMatchObject({
      available: false,
      reason: expect.any(String),
      payment_method_id: null,
      card: null,
    })
    expect(option(res.body, 'CREDITS')).toMatchObject({
      payment_gateway: 'platform',
      available: false,
      balance: '0.00',
    })
  })

  test('CREDITS is available only when the balance covers what is left', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '99.99')
    const short = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(option(short.body, 'CREDITS')).toMatchObject({ available: false, balance: '99.99' })
    await fund(customer.id, '0.01')
    const enough = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(option(enough.body, 'CREDITS')).toMatchObject({
      available: true,
      reason: null,
      balance: '100.00',
    })
    // A partial payment lowers what is left, so a smaller balance covers it.
    const other = await invoiceToPay(ctx)
    await fund(other.customer.id, '60.00')
    await createPayment(ctx, {
      destination_id: other.invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '40.00',
    })
    const covered = await ctx.get<PayOptions>(`/v1/invoices/${other.invoice.id}/pay_options`)
    expect(covered.body.amount_remaining).toBe('60.00')
    expect(option(covered.body, 'CREDITS')?.available).toBe(true)
  })

  test('CARD is available with a saved default card', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const link = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '10.00',
      save_card_and_make_default: true,
    })
    await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    const res = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(res.body.amount_remaining).toBe('90.00')
    expect(option(res.body, 'CARD')).toMatchObject({
      payment_gateway: 'sandbox',
      available: true,
      reason: null,
      payment_method_id: expect.stringMatching(/^pm_/),
      card: { brand: 'visa', last4: '4242' },
    })
    expect(customer.id).toBe(res.body.customer_id)
  })

  test('a paid invoice is not payable: every option unavailable', async () => {
    const { invoice } = await invoiceToPay(ctx)
    await ctx.post(`/v1/invoices/${invoice.id}/pay`, { payment_method_type: 'OFFLINE' })
    const res = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(res.status).toBe(200)
    expect(res.body.payable).toBe(false)
    expect(res.body.reason).toEqual(expect.any(String))
    expect(res.body.amount_remaining).toBe('0.00')
    expect(res.body.options.length).toBeGreaterThan(0)
    expect(res.body.options.every((o) => !o.available)).toBe(true)
  })

  test('customer token: no OFFLINE option; another customer invoice is 404', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { invoice: theirs } = await invoiceToPay(ctx, { name: 'Another' })
    const token = await customerToken(customer.id)
    const own = await ctx.get<PayOptions>(`/v1/invoices/${invoice.id}/pay_options`, { key: token })
    expect(own.status).toBe(200)
    expect(option(own.body, 'OFFLINE')).toBeUndefined()
    expect(option(own.body, 'PAYMENT_LINK')?.available).toBe(true)
    const other = await ctx.get(`/v1/invoices/${theirs.id}/pay_options`, { key: token })
    expect(other.status).toBe(404)
  })
})

describe('POST /v1/invoices/:id/pay', () => {
  test('OFFLINE pays what is left', async () => {
    const { invoice } = await invoiceToPay(ctx)
    await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '30.00',
    })
    const res = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      amount: '70.00',
      amount_paid: '70.00',
      payment_status: 'SUCCEEDED',
      payment_gateway: 'offline',
      invoice_ids: [invoice.id],
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
  })

  test('with an amount pays part; more than is left is 400; a paid invoice is refused', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const part = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
      amount: '25.00',
    })
    expect(part.body.amount).toBe('25.00')
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('75.00')
    const tooMuch = await ctx.post(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
      amount: '75.01',
    })
    expect(tooMuch.status).toBe(400)
    // Amounts at the API edge are decimal strings, in errors too.
    expect(errorOf(tooMuch).details.amount_remaining).toBe('75.00')
    await ctx.post(`/v1/invoices/${invoice.id}/pay`, { payment_method_type: 'OFFLINE' })
    const again = await ctx.post(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(again.status).toBe(409)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('with a discount_code pays the discounted total', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const discount = await discountCode({ percent_off: 20 })
    const res = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'OFFLINE',
      discount_code: discount.code,
    })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    expect(res.body).toMatchObject({ amount: '80.00', payment_status: 'SUCCEEDED' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total: '80.00',
      payment_status: 'SUCCEEDED',
    })
  })

  test('10 concurrent CREDITS pays of one invoice debit the balance once', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '1000.00')
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
          payment_method_type: 'CREDITS',
        }),
      ),
    )
    expect(await balanceOf(customer.id)).toBe('900.00')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(results.filter((r) => r.status === 201)).toHaveLength(1)
  })

  test('5 concurrent CARD payments of the whole invoice charge the saved card once', async () => {
    const { customer, invoice: first } = await invoiceToPay(ctx)
    const link = await createPayment(ctx, {
      destination_id: first.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
      save_card_and_make_default: true,
    })
    await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'Next month', quantity: 1, unit_amount: '30.00' }],
    })
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        createPayment(ctx, {
          destination_id: invoice.id,
          payment_method_type: 'CARD',
          payment_gateway: 'sandbox',
          amount: '30.00',
        }),
      ),
    )
    const charged = results.filter((r) => r.body.payment_status === 'SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('30.00')
    expect(charged).toHaveLength(1)
  })

  test('a second INITIATED CREDITS payment processed after the invoice is paid takes no money', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '200.00')
    const create = () =>
      createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'CREDITS',
        amount: '100.00',
        process_payment: false,
      })
    const first = await create()
    const second = await create()
    expect(first.body.payment_status).toBe('INITIATED')
    expect(second.body.payment_status).toBe('INITIATED')
    expect((await ctx.post(`/v1/payments/${first.body.id}/process`)).status).toBe(200)
    const late = await ctx.post<PaymentBody>(`/v1/payments/${second.body.id}/process`)
    expect(await balanceOf(customer.id)).toBe('100.00')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(late.status).toBeGreaterThanOrEqual(400)
    expect(late.status).toBeLessThan(500)
  })

  test('an INITIATED link processed after its invoice was paid is refused: no page takes the money again', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, invoice.amount_due, {
      process_payment: false,
    })
    expect(link.body.payment_status).toBe('INITIATED')
    const offline = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: invoice.amount_due,
    })
    expect(offline.body.payment_status).toBe('SUCCEEDED')
    const late = await ctx.post<ErrorBody>(`/v1/payments/${link.body.id}/process`)
    expect(late.status).toBe(409)
    expect(late.body.error.code).toBe('conflict')
    const after = await getPayment(ctx, link.body.id)
    expect(after.payment_status).toBe('INITIATED')
    expect(after.payment_url ?? null).toBeNull()
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: invoice.amount_due,
    })
  })

  test('an INITIATED link processed while its invoice still owes it gets its page', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, invoice.amount_due, {
      process_payment: false,
    })
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${link.body.id}/process`)
    expect(processed.status).toBe(200)
    expect(processed.body.payment_status).toBe('PENDING')
    const paid = await submitCard(ctx, sessionOf(processed.body), '4242424242424242')
    expect(paid.statusCode).toBeLessThan(400)
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('customer token: OFFLINE is 403; a link on its own invoice works; another invoice is 404', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { invoice: theirs } = await invoiceToPay(ctx, { name: 'Another' })
    const token = await customerToken(customer.id)
    const offline = await ctx.post(
      `/v1/invoices/${invoice.id}/pay`,
      { payment_method_type: 'OFFLINE' },
      { key: token },
    )
    expect(offline.status).toBe(403)
    const link = await ctx.post<PaymentBody>(
      `/v1/invoices/${invoice.id}/pay`,
      { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      { key: token },
    )
    expect(link.status).toBe(201)
    expect(link.body).toMatchObject({ payment_status: 'PENDING', amount: '100.00' })
    const other = await ctx.post(
      `/v1/invoices/${theirs.id}/pay`,
      { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      { key: token },
    )
    expect(other.status).toBe(404)
    expect((await getInvoice(ctx, theirs.id)).amount_paid).toBe('0.00')
  })
})

describe('POST /v1/orders/pay', () => {
  /** Two credit top-up orders of 10.00 for the customer. */
  const twoTopUps = (customerId: string) =>
    Promise.all(
      [0, 1].map(() =>
        order({ customer_id: customerId, type: 'CREDIT_TOP_UP', amount: '10.00', currency: 'usd' }),
      ),
    )

  test('one OFFLINE payment pays two orders: both invoices paid, orders fulfilled, top-up credited', async () => {
    const customer = await createCustomer(ctx)
    const topUp = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '50.00',
      currency: 'usd',
    })
    const product = await order({
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: await oneTimePrice(ctx, '99.00'),
    })
    const res = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [topUp.id, product.id],
      payment_method_type: 'OFFLINE',
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      destination_type: 'ORDERS',
      customer_id: customer.id,
      amount: '149.00',
      amount_paid: '149.00',
      payment_status: 'SUCCEEDED',
      invoice_ids: [topUp.invoice_id, product.invoice_id],
    })
    for (const invoiceId of [topUp.invoice_id, product.invoice_id]) {
      expect((await getInvoice(ctx, invoiceId)).payment_status).toBe('SUCCEEDED')
    }
    expect((await getInvoice(ctx, topUp.invoice_id)).amount_paid).toBe('50.00')
    expect((await getInvoice(ctx, product.invoice_id)).amount_paid).toBe('99.00')
    expect(await getOrder(topUp.id)).toMatchObject({ status: 'FULFILLED' })
    expect(await getOrder(product.id)).toMatchObject({ status: 'FULFILLED' })
    expect(await balanceOf(customer.id)).toBe('50.00')
    expect(await eventsOf(ctx, topUp.id, 'order.fulfilled')).toHaveLength(1)
  })

  test('payments of the same orders named in opposite orders never deadlock', async () => {
    const customer = await createCustomer(ctx)
    const pairs = await Promise.all(Array.from({ length: 12 }, () => twoTopUps(customer.id)))
    const results = await Promise.all(
      pairs.flatMap(([a, b]) =>
        [
          [a, b],
          [b, a],
        ].map((orders) =>
          ctx.post<PaymentBody>('/v1/orders/pay', {
            orders: orders.map((o) => o?.id),
            payment_method_type: 'PAYMENT_LINK',
            payment_gateway: 'sandbox',
          }),
        ),
      ),
    )
    expect(results.map((r) => r.status)).toEqual(results.map(() => 201))
    // Each keeps the caller's order of invoices.
    const [first, second] = results
    const [a, b] = pairs[0] ?? []
    expect(first?.body.invoice_ids).toEqual([a?.invoice_id, b?.invoice_id])
    expect(second?.body.invoice_ids).toEqual([b?.invoice_id, a?.invoice_id])
  })

  test("their completions, each waiting on the other's invoice, never deadlock either", async () => {
    const customer = await createCustomer(ctx)
    const [a, b] = await twoTopUps(customer.id)
    const [first, second] = await Promise.all(
      [
        [a, b],
        [b, a],
      ].map(async (orders) => {
        const res = await ctx.post<PaymentBody>('/v1/orders/pay', {
          orders: orders.map((o) => o?.id),
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
        })
        expect(res.status, res.text).toBe(201)
        return res.body
      }),
    )
    const complete = (link: PaymentBody) =>
      postSandboxWebhook(
        ctx,
        sandboxEventBody(`sbevt_pair_${link.id}`, 'checkout.completed', {
          payment_id: link.id,
          session_id: sessionOf(link),
          amount: 2000,
          amount_received: 2000,
        }),
      )
    const waiting = async (count: number) => {
      while ((await payrailLockWaits(ctx)) < count) await new Promise((r) => setTimeout(r, 5))
    }
    // Another transaction holds a's invoice: the first completion waits on it; the second,
    // locking in the caller's order, would take b's and wait on a's, and once a's is free the
    // first would wait on b's: a deadlock. Locked in id order, one simply waits for the other.
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query('select id from invoices where id = $1 for update', [a?.invoice_id])
      const one = complete(first as PaymentBody)
      await waiting(1)
      const two = complete(second as PaymentBody)
      await waiting(2)
      await holder.query('commit')
      const answers = await Promise.all([one, two])
      expect(answers.map((r) => r.statusCode)).toEqual([200, 200])
    } finally {
      holder.release()
    }
    for (const link of [first, second]) {
      expect((await getPayment(ctx, String(link?.id))).payment_status).toBe('SUCCEEDED')
    }
  })

  test('a discount code on a payment of several orders is 409, not a payment of one invoice', async () => {
    const customer = await createCustomer(ctx)
    const [a, b] = await twoTopUps(customer.id)
    const paid = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [a?.id, b?.id],
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
    })
    expect(paid.status, paid.text).toBe(201)
    // As a payment whose gateway did not answer is left: unconfirmed, still changeable.
    await ctx.pool.query(`update payments set payment_status = 'INITIATED' where id = $1`, [
      paid.body.id,
    ])
    const { code } = await discountCode()
    const res = await ctx.patch<ErrorBody>(`/v1/invoices/${a?.invoice_id}/payment`, {
      payment_id: paid.body.id,
      discount_code: code,
    })
    expect(res.status).toBe(409)
    expect((await getPayment(ctx, paid.body.id)).amount).toBe('20.00')
    expect((await getInvoice(ctx, String(a?.invoice_id))).total_discount).toBe('0.00')
  })

  test('a refund of an orders payment comes off the last invoice first', async () => {
    const customer = await createCustomer(ctx)
    const a = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '30.00',
      currency: 'usd',
    })
    const b = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '20.00',
      currency: 'usd',
    })
    const paid = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: [a.id, b.id],
      payment_method_type: 'OFFLINE',
    })
    const refund = await ctx.post(`/v1/payments/${paid.body.id}/refunds`, { amount: '25.00' })
    expect(refund.status).toBe(201)
    expect((await getInvoice(ctx, b.invoice_id)).amount_refunded).toBe('20.00')
    expect((await getInvoice(ctx, a.invoice_id)).amount_refunded).toBe('5.00')
  })

  test('customer token pays its own orders with one sandbox link', async () => {
    const customer = await createCustomer(ctx)
    const token = await customerToken(customer.id)
    const a = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    const b = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '15.00',
      currency: 'usd',
    })
    const res = await ctx.post<PaymentBody>(
      '/v1/orders/pay',
      { orders: [a.id, b.id], payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      { key: token },
    )
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ payment_status: 'PENDING', amount: '25.00' })
    await submitCard(ctx, sessionOf(res.body), '4242424242424242')
    expect((await getOrder(a.id)).status).toBe('FULFILLED')
    expect((await getOrder(b.id)).status).toBe('FULFILLED')
    expect(await balanceOf(customer.id)).toBe('25.00')

    const stranger = await createCustomer(ctx, { name: 'Stranger' })
    const theirs = await order({
      customer_id: stranger.id,
      type: 'CREDIT_TOP_UP',
      amount: '5.00',
      currency: 'usd',
    })
    const other = await ctx.post(
      '/v1/orders/pay',
      { orders: [theirs.id], payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      { key: token },
    )
    expect(other.status).toBe(404)
    expect((await getOrder(theirs.id)).status).toBe('PENDING')
  })

  test('orders of different customers are 400 and nothing is paid', async () => {
    const first = await createCustomer(ctx)
    const second = await createCustomer(ctx, { name: 'Second' })
    const a = await order({
      customer_id: first.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    const b = await order({
      customer_id: second.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    const res = await ctx.post('/v1/orders/pay', {
      orders: [a.id, b.id],
      payment_method_type: 'OFFLINE',
    })
    expect(res.status).toBe(400)
    expect(errorOf(res).code).toBe('validation_error')
    expect((await getOrder(a.id)).status).toBe('PENDING')
    expect((await getOrder(b.id)).status).toBe('PENDING')
    expect((await getInvoice(ctx, a.invoice_id)).amount_paid).toBe('0.00')
  })

  test('an already fulfilled order is 422', async () => {
    const customer = await createCustomer(ctx)
    const a = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    const b = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    await ctx.post('/v1/orders/pay', { orders: [a.id], payment_method_type: 'OFFLINE' })
    const res = await ctx.post('/v1/orders/pay', {
      orders: [a.id, b.id],
      payment_method_type: 'OFFLINE',
    })
    expect(res.status).toBe(422)
    expect(errorOf(res).code).toBe('invalid_state_transition')
    expect((await getOrder(b.id)).status).toBe('PENDING')
    expect(await balanceOf(customer.id)).toBe('10.00')
  })

  test('an order listed twice, different currencies, no orders, or an unknown order are refused', async () => {
    const customer = await createCustomer(ctx)
    const usd = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'usd',
    })
    const eur = await order({
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '10.00',
      currency: 'eur',
    })
    const pay = (orders: string[]) =>
      ctx.post('/v1/orders/pay', { orders, payment_method_type: 'OFFLINE' })
    expect((await pay([usd.id, usd.id])).status).toBe(400)
    expect((await pay([usd.id, eur.id])).status).toBe(400)
    expect((await pay([])).status).toBe(400)
    expect((await pay(['ord_00000000000000000000000000'])).status).toBe(404)
    expect((await getOrder(usd.id)).status).toBe('PENDING')
  })
})

describe('discount codes at payment time (POST /v1/payments discount_code)', () => {
  test('the discount applies to the invoice first, then the payment pays the new total', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const discount = await discountCode({ amount_off: '15.00', currency: 'usd' })
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '85.00',
      discount_code: discount.code,
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      amount: '85.00',
      payment_status: 'SUCCEEDED',
      discount_code: discount.code,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total_discount: '15.00',
      total: '85.00',
      amount_paid: '85.00',
      payment_status: 'SUCCEEDED',
    })
    expect(await timesRedeemed(discount.id)).toBe(1)
  })

  test('a code that covers the whole invoice pays it: its order is fulfilled, no payment is made', async () => {
    const customer = await createCustomer(ctx)
    const product = await order({
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: await oneTimePrice(ctx, '30.00'),
    })
    const free = await discountCode({ percent_off: 100 })
    const res = await ctx.post<ErrorBody>(`/v1/invoices/${product.invoice_id}/pay`, {
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      discount_code: free.code,
    })
    expect(res.status, JSON.stringify(res.body)).toBe(409)
    expect(res.body.error.details).toMatchObject({
      invoice_id: product.invoice_id,
      payment_status: 'SUCCEEDED',
      paid_by_discount: true,
    })
    expect(await getInvoice(ctx, product.invoice_id)).toMatchObject({
      total: '0.00',
      amount_remaining: '0.00',
      payment_status: 'SUCCEEDED',
    })
    expect(await getOrder(product.id)).toMatchObject({ status: 'FULFILLED' })
    expect(await timesRedeemed(free.id)).toBe(1)
    const made = await ctx.get<List<PaymentBody>>(
      `/v1/payments?destination_id=${product.invoice_id}`,
    )
    expect(made.body.pagination.total).toBe(0)
    // Through the on-ramp, an amount off above the total does the same.
    const { invoice } = await invoiceToPay(ctx)
    const more = await discountCode({ amount_off: '500.00', currency: 'usd' })
    const onRamped = await onRamp(invoice.id, { type: 'CHECKOUT', discount_code: more.code })
    expect(onRamped.status).toBe(409)
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('a code that covers an invoice with a payment open on it is refused, and not used up', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    expect(link.status).toBe(201)
    const free = await discountCode({ percent_off: 100 })
    const res = await ctx.post(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      discount_code: free.code,
    })
    expect(res.status, res.text).toBe(422)
    expect(JSON.stringify(res.body)).toContain(link.body.id)
    expect(await timesRedeemed(free.id)).toBe(0)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total: '100.00',
      payment_status: 'PENDING',
    })
  })

  test('an amount above the discounted total is 400, and the code is not used up', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const discount = await discountCode({ percent_off: 50, max_redemptions: 1 })
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
      discount_code: discount.code,
    })
    expect(res.status).toBe(400)
    expect(await timesRedeemed(discount.id)).toBe(0)
    expect((await getInvoice(ctx, invoice.id)).total).toBe('100.00')
  })

  test('an unknown code is refused and the invoice keeps its total', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
      discount_code: 'NO-SUCH-CODE',
    })
    expect(res.status).toBeGreaterThanOrEqual(400)
    expect(res.status).toBeLessThan(500)
    expect((await getInvoice(ctx, invoice.id)).total).toBe('100.00')
  })

  test('a second code on an already discounted invoice is 409', async () => {
    const customer = await createCustomer(ctx)
    const first = await discountCode({ percent_off: 10 })
    const second = await discountCode({ percent_off: 20 })
    const invoice: InvoiceBody = await finalizedInvoice(ctx, customer.id, {
      discount_code: first.code,
    })
    expect(invoice.total).toBe('90.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '80.00',
      discount_code: second.code,
    })
    expect(res.status).toBe(409)
    expect(await timesRedeemed(second.id)).toBe(0)
  })
})

describe('the sandbox in a live environment', () => {
  test('takes no payment: its test cards would pay nothing, and the order would be fulfilled', async () => {
    const live = { key: ctx.main.liveKey }
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'Live', email: 'live@customer.example' },
      live,
    )
    expect(customer.status, customer.text).toBe(201)
    const topUp = await ctx.post<{ id: string; invoice_id: string; status: string }>(
      '/v1/orders',
      { customer_id: customer.body.id, type: 'CREDIT_TOP_UP', amount: '1000.00', currency: 'usd' },
      live,
    )
    expect(topUp.status, topUp.text).toBe(201)
    const invoiceId = topUp.body.invoice_id
    const checkout = await ctx.put<ErrorBody>(
      `/v1/invoices/${invoiceId}/payment`,
      { type: 'CHECKOUT' },
      live,
    )
    expect(checkout.status).toBe(400)
    expect(checkout.body.error.details).toMatchObject({ field: 'payment_gateway' })
    const named = await ctx.post<ErrorBody>(
      `/v1/invoices/${invoiceId}/pay`,
      { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      live,
    )
    expect(named.status).toBe(400)
    expect(named.body.error.message).toMatch(/live environment/)
    const options = await ctx.get<{ options: { payment_gateway: string; available: boolean }[] }>(
      `/v1/invoices/${invoiceId}/pay_options`,
      live,
    )
    expect(options.status).toBe(200)
    expect(options.body.options.length).toBeGreaterThan(0)
    expect(
      options.body.options.filter((o) => o.payment_gateway === 'sandbox' && o.available),
    ).toEqual([])
    // A sandbox card saved for the customer (before the sandbox was refused here) is not usable.
    const card = await savePaymentMethod(
      ctx.db,
      { tenantId: ctx.main.tenant.id, environmentId: ctx.main.live.id },
      {
        customerId: customer.body.id,
        gateway: 'sandbox',
        gatewayPaymentMethodId: `card_${customer.body.id}`,
        last4: '4242',
      },
    )
    await ctx.patch(
      `/v1/customers/${customer.body.id}`,
      { default_payment_method_id: card.id },
      live,
    )
    const withCard = await ctx.get<{
      options: { payment_method_type: string; available: boolean; reason: string | null }[]
    }>(`/v1/invoices/${invoiceId}/pay_options`, live)
    expect(withCard.body.options.find((o) => o.payment_method_type === 'CARD')).toMatchObject({
      available: false,
      reason: 'the sandbox gateway takes no payments here',
    })
    const charged = await ctx.post(
      `/v1/invoices/${invoiceId}/pay`,
      { payment_method_type: 'CARD' },
      live,
    )
    expect(charged.status).toBe(400)
    const order = await ctx.get<{ status: string }>(`/v1/orders/${topUp.body.id}`, live)
    expect(order.body.status).toBe('PENDING')
  })

  test('a sandbox page of a live environment (opened before it was refused there) takes no card', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const session = sessionOf(link.body)
    await ctx.pool.query('update sandbox_sessions set environment_id = $2 where id = $1', [
      session,
      ctx.main.live.id,
    ])
    const page = await ctx.app.inject({ method: 'GET', url: `/sandbox/checkout/${session}` })
    expect(page.statusCode).toBe(404)
    const paid = await submitCard(ctx, session, '4242424242424242')
    expect(paid.statusCode).toBe(404)
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('PENDING')
  })
})
