import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  type PaymentBody,
  payrailWaitsOnLock,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

interface OrderBody {
  id: string
  invoice_id: string
  status: string
}

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

const balance = async (customerId: string) =>
  (await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customerId}`)).body.balances

/** A credit top-up order of `amount` dollars for a new customer, not yet paid. */
async function topUpOrder(amount: string) {
  const customer = await createCustomer(ctx)
  const order = await ctx.post<OrderBody>('/v1/orders', {
    customer_id: customer.id,
    type: 'CREDIT_TOP_UP',
    amount,
    currency: 'usd',
  })
  return { customer, order: order.body }
}

/** A fulfilled credit top-up paid OFFLINE: the customer, the order and the payment. */
async function paidTopUp(amount = '40.00') {
  const { customer, order } = await topUpOrder(amount)
  const payment = await createPayment(ctx, {
    destination_id: order.invoice_id,
    payment_method_type: 'OFFLINE',
    amount,
  })
  expect(payment.body.payment_status).toBe('SUCCEEDED')
  return { customer, order, payment: payment.body }
}

describe('payments and what they pay for', () => {
  test('a paid credit top-up credits the balance; refunding it takes the unspent credit back', async () => {
    const { customer, payment } = await paidTopUp('40.00')
    expect(await balance(customer.id)).toEqual({ usd: '40.00' })
    // 15.00 of the credit is spent before the refund.
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '-15.00',
      currency: 'usd',
    })
    const refund = await ctx.post<{ status: string }>(`/v1/payments/${payment.id}/refunds`, {})
    expect(refund.status).toBe(201)
    expect(refund.body.status).toBe('succeeded')
    expect(await balance(customer.id)).toEqual({ usd: '0.00' })
    const ledger = await ctx.get<List<{ type: string; amount: string }>>(
      `/v1/customers/${customer.id}/balance_transactions`,
    )
    expect(ledger.body.items.map((t) => [t.type, t.amount])).toEqual([
      ['refund', '-25.00'],
      ['adjustment', '-15.00'],
      ['top_up', '40.00'],
    ])
  })

  const ledgerOf = async (customerId: string) =>
    (
      await ctx.get<List<{ type: string; amount: string }>>(
        `/v1/customers/${customerId}/balance_transactions`,
      )
    ).body.items.map((t) => [t.type, t.amount])

  test('refunding a top-up in parts takes back each part once, never more than was credited', async () => {
    const { customer, payment } = await paidTopUp()
    for (const amount of ['10.00', '30.00']) {
      const refund = await ctx.post(`/v1/payments/${payment.id}/refunds`, { amount })
      expect(refund.status, refund.text).toBe(201)
    }
    expect(await balance(customer.id)).toEqual({ usd: '0.00' })
    expect(await ledgerOf(customer.id)).toEqual([
      ['refund', '-30.00'],
      ['refund', '-10.00'],
      ['top_up', '40.00'],
    ])
  })

  test('refunding part of a discounted top-up takes back the share of credit it paid for', async () => {
    const { customer, order } = await topUpOrder('50.00')
    const code = `TOPUP${Date.now()}`
    expect((await ctx.post('/v1/discounts', { code, percent_off: 20 })).status).toBe(201)
    const paid = await createPayment(ctx, {
      destination_id: order.invoice_id,
      payment_method_type: 'OFFLINE',
      amount: '40.00',
      discount_code: code,
    })
    expect(paid.status, paid.text).toBe(201)
    expect(paid.body.payment_status).toBe('SUCCEEDED')
    // 50.00 of credit bought for 40.00: 1.00 refunded is 1.25 of credit.
    expect(await balance(customer.id)).toEqual({ usd: '50.00' })
    expect(
      (await ctx.post(`/v1/payments/${paid.body.id}/refunds`, { amount: '1.00' })).status,
    ).toBe(201)
    expect(await balance(customer.id)).toEqual({ usd: '48.75' })
    expect((await ctx.post(`/v1/payments/${paid.body.id}/refunds`, {})).status).toBe(201)
    expect(await balance(customer.id)).toEqual({ usd: '0.00' })
  })

  test('refunding a second payment of a paid top-up keeps the credit the invoice is still paid for', async () => {
    const { customer, order } = await topUpOrder('50.00')
    const link = await createPayment(ctx, {
      destination_id: order.invoice_id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '50.00',
    })
    const offline = await createPayment(ctx, {
      destination_id: order.invoice_id,
      payment_method_type: 'OFFLINE',
      amount: '50.00',
    })
    expect(offline.body.payment_status).toBe('SUCCEEDED')
    await submitCard(ctx, sessionOf(link.body), '4242424242424242')
    expect(await balance(customer.id)).toEqual({ usd: '50.00' })
    // The customer paid twice for 50.00 of credit: refunding one payment leaves it paid for.
    expect((await ctx.post(`/v1/payments/${link.body.id}/refunds`, {})).status).toBe(201)
    expect(await balance(customer.id)).toEqual({ usd: '50.00' })
    expect((await ctx.post(`/v1/payments/${offline.body.id}/refunds`, {})).status).toBe(201)
    expect(await balance(customer.id)).toEqual({ usd: '0.00' })
  })

  test('a top-up refund waits for a balance payment committing meanwhile, and takes back what is left', async () => {
    const { customer, payment } = await paidTopUp()
    const holder = await ctx.pool.connect()
    try {
      await holder.query('begin')
      await holder.query(
        'select balance from customer_balances where customer_id = $1 for update',
        [customer.id],
      )
      const refund = ctx.post(`/v1/payments/${payment.id}/refunds`, {})
      while (!(await payrailWaitsOnLock(ctx))) await new Promise((r) => setTimeout(r, 5))
      // Spent from the balance by another transaction while the refund waits.
      await holder.query(
        'update customer_balances set balance = balance - 1000 where customer_id = $1',
        [customer.id],
      )
      await holder.query('commit')
      expect((await refund).status).toBe(201)
    } finally {
      holder.release()
    }
    expect(await balance(customer.id)).toEqual({ usd: '0.00' })
    expect((await ledgerOf(customer.id))[0]).toEqual(['refund', '-30.00'])
  })

  test('a payment refunded before its invoice was paid in full is owed again; paying it then pays the invoice and fulfils the order', async () => {
    const customer = await createCustomer(ctx)
    const product = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Report',
      type: 'one_time',
      prices: [{ amount: '100.00', currency: 'usd' }],
    })
    const order = await ctx.post<OrderBody>('/v1/orders', {
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: product.body.prices[0]?.id,
    })
    expect(order.status, order.text).toBe(201)
    const invoiceId = order.body.invoice_id
    const pay = (amount: string) =>
      createPayment(ctx, { destination_id: invoiceId, payment_method_type: 'OFFLINE', amount })
    const part = await pay('40.00')
    expect((await ctx.post(`/v1/payments/${part.body.id}/refunds`, {})).status).toBe(201)
    expect(await getInvoice(ctx, invoiceId)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '40.00',
      amount_refunded: '40.00',
      amount_remaining: '100.00',
      paid_at: null,
    })
    expect((await pay('100.00')).status).toBe(201)
    const paid = await getInvoice(ctx, invoiceId)
    expect(paid).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
    expect(paid.paid_at).not.toBeNull()
    const fulfilled = await ctx.get<{ status: string }>(`/v1/orders/${order.body.id}`)
    expect(fulfilled.body.status).toBe('FULFILLED')
    // Paid in full once, a refund is a refund: it reopens nothing.
    const last = await ctx.get<{ items: { id: string; amount: string }[] }>(
      `/v1/payments?destination_id=${invoiceId}&status=SUCCEEDED`,
    )
    const full = last.body.items.find((p) => p.amount === '100.00')
    expect((await ctx.post(`/v1/payments/${full?.id}/refunds`, { amount: '10.00' })).status).toBe(
      201,
    )
    expect(await getInvoice(ctx, invoiceId)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_remaining: '0.00',
    })
  })

  test('a subscription order paid from the balance, retried after a shortfall, activates the subscription', async () => {
    const customer = await createCustomer(ctx)
    const product = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Pro',
      type: 'recurring',
      prices: [{ amount: '25.00', currency: 'usd', interval: 'month' }],
    })
    const order = await ctx.post<OrderBody & { subscription_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: product.body.prices[0]?.id,
    })
    const payment = await createPayment(ctx, {
      destination_id: order.body.invoice_id,
      payment_method_type: 'CREDITS',
      amount: '25.00',
    })
    expect(payment.status).toBe(402)
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '30.00',
      currency: 'usd',
    })
    const paid = await ctx.post<PaymentBody>(
      `/v1/payments/${(await failedPaymentId(order.body.invoice_id)) ?? ''}/process`,
    )
    expect(paid.body.payment_status).toBe('SUCCEEDED')
    const subscription = await ctx.get<{ status: string }>(
      `/v1/subscriptions/${order.body.subscription_id}`,
    )
    expect(subscription.body.status).toBe('active')
    expect(await balance(customer.id)).toEqual({ usd: '5.00' })
  })
})

describe('concurrent confirmations', () => {
  test('50 concurrent process calls on one balance payment apply it once: one debit, one event, invoice paid once', async () => {
    const customer = await createCustomer(ctx)
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '500.00',
      currency: 'usd',
    })
    const invoice = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Seats', quantity: 1, unit_amount: '80.00' }],
    })
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`)
    const payment = await createPayment(ctx, {
      destination_id: invoice.body.id,
      payment_method_type: 'CREDITS',
      amount: '80.00',
      process_payment: false,
    })
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        ctx.post<PaymentBody>(`/v1/payments/${payment.body.id}/process`),
      ),
    )
    expect(results.filter((r) => r.status === 200)).toHaveLength(1)
    expect(results.filter((r) => r.status !== 200).every((r) => r.status === 422)).toBe(true)
    expect(await balance(customer.id)).toEqual({ usd: '420.00' })
    const events = await ctx.get<List<unknown>>(
      `/v1/events?object_id=${payment.body.id}&type=payment.succeeded`,
    )
    expect(events.body.items).toHaveLength(1)
    const shown = await ctx.get<{ amount_paid: string; payment_status: string }>(
      `/v1/invoices/${invoice.body.id}`,
    )
    expect(shown.body).toMatchObject({ amount_paid: '80.00', payment_status: 'SUCCEEDED' })
  })

  test('50 concurrent balance payments for one invoice take the money once', async () => {
    const customer = await createCustomer(ctx)
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '1000.00',
      currency: 'usd',
    })
    const invoice = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Seats', quantity: 1, unit_amount: '100.00' }],
    })
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`)
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        ctx.post(`/v1/invoices/${invoice.body.id}/pay`, { payment_method_type: 'CREDITS' }),
      ),
    )
    expect(results.filter((r) => r.status === 201)).toHaveLength(1)
    expect(await balance(customer.id)).toEqual({ usd: '900.00' })
    const shown = await ctx.get<{ amount_paid: string }>(`/v1/invoices/${invoice.body.id}`)
    expect(shown.body.amount_paid).toBe('100.00')
  })
})

async function failedPaymentId(invoiceId: string) {
  const list = await ctx.get<List<PaymentBody>>(
    `/v1/payments?destination_id=${invoiceId}&status=FAILED`,
  )
  return list.body.items[0]?.id
}
