import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { chargeDueInvoices } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import { renewDueSubscriptions } from '../../src/modules/subscriptions/service.ts'
import {
  createCustomer,
  createProduct,
  type InvoiceBody,
  type List,
  payInvoice,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { createPayment } from '../payments-helpers.ts'
import {
  activeSubscription,
  createPlan,
  getSubscription,
  invoicesOf,
  type OrderBody,
  type SubscriptionBody,
} from '../subscription-helpers.ts'

let ctx: TestContext
const START = new Date('2025-01-31T09:00:00Z')

beforeAll(async () => {
  ctx = await createTestContext({ start: START })
})
afterAll(() => ctx.close())

const renew = () => renewDueSubscriptions({ db: ctx.db, clock: ctx.clock, logger: ctx.deps.logger })
const pay = (invoiceId: string, amount: bigint) => payInvoice(ctx, invoiceId, amount)

/** An active subscription of an auto_pay customer with a default card: renewals are charged. */
async function autoChargedSubscription(priceId: string) {
  const auto = await activeSubscription(ctx, priceId, { customer: { auto_pay: true } })
  const card = await savePaymentMethod(ctx.db, ctx.scope, {
    customerId: auto.customerId,
    gateway: 'sandbox',
    gatewayPaymentMethodId: `card_${auto.customerId}`,
    last4: '4242',
  })
  await ctx.patch(`/v1/customers/${auto.customerId}`, { default_payment_method_id: card.id })
  return auto
}

/** A SUBSCRIPTION order of 25.00 whose first invoice is unpaid: its subscription is incomplete. */
async function incompleteSubscription() {
  ctx.clock.set(START)
  const customer = await createCustomer(ctx)
  const order = await ctx.post<OrderBody>('/v1/orders', {
    customer_id: customer.id,
    type: 'SUBSCRIPTION',
    price_id: (await createPlan(ctx, '25.00')).priceId,
  })
  expect(order.status, order.text).toBe(201)
  expect((await getSubscription(ctx, order.body.subscription_id)).status).toBe('incomplete')
  return order
}

/** An OFFLINE payment of 10.00 of the invoice, created and not processed (INITIATED). */
async function unprocessedPayment(invoiceId: string) {
  const later = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'OFFLINE',
    amount: '10.00',
    process_payment: false,
  })
  expect(later.status, later.text).toBe(201)
  expect(later.body.payment_status).toBe('INITIATED')
  return later
}

describe('renewals', () => {
  test('twelve monthly periods from Jan 31 produce twelve paid-in-advance invoices on the anchor day', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    for (let month = 0; month < 12; month++) {
      const current = await getSubscription(ctx, id)
      ctx.clock.set(new Date(current.current_period_end))
      expect(await renew()).toBeGreaterThanOrEqual(1)
      const latest = (await getSubscription(ctx, id)).latest_invoice_id
      const invoice = (await ctx.get<InvoiceBody>(`/v1/invoices/${latest}`)).body
      await pay(invoice.id, 2000n)
    }
    const invoices = await invoicesOf(ctx, id)
    expect(invoices).toHaveLength(13)
    expect(invoices.map((i) => i.billing_reason)).toEqual([
      'subscription_create',
      ...Array(12).fill('subscription_cycle'),
    ])
    const starts = invoices.map((i) => i.period_start?.slice(0, 10))
    expect(starts).toEqual([
      '2025-01-31',
      '2025-02-28',
      '2025-03-31',
      '2025-04-30',
      '2025-05-31',
      '2025-06-30',
      '2025-07-31',
      '2025-08-31',
      '2025-09-30',
      '2025-10-31',
      '2025-11-30',
      '2025-12-31',
      '2026-01-31',
    ])
    for (const invoice of invoices) {
      expect(invoice).toMatchObject({
        total: '20.00',
        payment_status: 'SUCCEEDED',
        invoice_status: 'FINALIZED',
      })
      expect(invoice.lines[0]?.price_id).toBeTruthy()
    }
    // Each period starts where the previous ended.
    for (let i = 1; i < invoices.length; i++)
      expect(invoices[i]!.period_start).toBe(invoices[i - 1]!.period_end)
    expect((await getSubscription(ctx, id)).status).toBe('active')
  })

  test('renewing is idempotent: running the job twice for one due period creates one invoice', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '5.00', 'week')).priceId)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await Promise.all([renew(), renew(), renew()])
    await renew()
    expect(await invoicesOf(ctx, id)).toHaveLength(2)
  })

  test('a worker that was down catches up period by period', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '1.00', 'day')).priceId)
    ctx.clock.advance(5 * 86_400_000 + 1000)
    await renew()
    const invoices = await invoicesOf(ctx, id)
    expect(invoices).toHaveLength(6)
    expect(new Date((await getSubscription(ctx, id)).current_period_end).getTime()).toBeGreaterThan(
      ctx.clock.now().getTime(),
    )
  })

  test('an unpaid renewal makes the subscription past_due; paying it makes it active again', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '10.00')).priceId)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renew()
    const first = (await getSubscription(ctx, id)).latest_invoice_id
    expect((await getSubscription(ctx, id)).status).toBe('active')
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renew()
    const second = (await getSubscription(ctx, id)).latest_invoice_id
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    await pay(first, 1000n)
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    await pay(second, 1000n)
    expect((await getSubscription(ctx, id)).status).toBe('active')
  })

  test('charge_automatically renewals of an auto_pay customer with a default card are queued for the charge', async () => {
    ctx.clock.set(START)
    const auto = await autoChargedSubscription((await createPlan(ctx, '30.00')).priceId)
    const manual = await activeSubscription(ctx, (await createPlan(ctx, '30.00')).priceId, {
      customer: { auto_pay: true },
    })
    ctx.clock.set(new Date((await getSubscription(ctx, auto.id)).current_period_end))
    await renew()
    const queued = await ctx.get<InvoiceBody>(
      `/v1/invoices/${(await getSubscription(ctx, auto.id)).latest_invoice_id}`,
    )
    expect(queued.body).toMatchObject({
      collection_method: 'charge_automatically',
      next_payment_attempt: ctx.clock.now().toISOString(),
    })
    const waiting = await ctx.get<InvoiceBody>(
      `/v1/invoices/${(await getSubscription(ctx, manual.id)).latest_invoice_id}`,
    )
    expect(waiting.body.next_payment_attempt).toBeNull()
    await pay(queued.body.id, 3000n)
    expect(
      (await ctx.get<InvoiceBody>(`/v1/invoices/${queued.body.id}`)).body.next_payment_attempt,
    ).toBeNull()
  })
})

describe('cancellation', () => {
  test('at period end: no more invoices, ends on the boundary', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx)).priceId)
    const res = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`, {
      at_period_end: true,
    })
    expect(res.body).toMatchObject({
      status: 'active',
      cancel_at_period_end: true,
      canceled_at: START.toISOString(),
    })
    const end = res.body.current_period_end
    ctx.clock.set(new Date(end))
    await renew()
    expect(await getSubscription(ctx, id)).toMatchObject({ status: 'canceled', ended_at: end })
    expect(await invoicesOf(ctx, id)).toHaveLength(1)
  })

  test('immediately: canceled now, renewals stop, cancelling again is 422', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx)).priceId)
    ctx.clock.advance(86_400_000)
    const res = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`)
    expect(res.body).toMatchObject({ status: 'canceled', ended_at: ctx.clock.now().toISOString() })
    ctx.clock.advance(60 * 86_400_000)
    await renew()
    expect(await invoicesOf(ctx, id)).toHaveLength(1)
    const again = await ctx.post<ErrorBody>(`/v1/subscriptions/${id}/cancel`)
    expect(again.status).toBe(422)
    expect(again.body.error.code).toBe('invalid_state_transition')
    expect((await ctx.patch(`/v1/subscriptions/${id}`, { quantity: 2 })).status).toBe(422)
  })

  test('cancelling now stops the automatic charges of its unpaid invoices', async () => {
    ctx.clock.set(START)
    const auto = await autoChargedSubscription((await createPlan(ctx, '30.00')).priceId)
    ctx.clock.set(new Date((await getSubscription(ctx, auto.id)).current_period_end))
    await renew()
    const invoiceId = (await getSubscription(ctx, auto.id)).latest_invoice_id
    const queued = (await ctx.get<InvoiceBody>(`/v1/invoices/${invoiceId}`)).body
    expect(queued.next_payment_attempt).not.toBeNull()
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/v1/subscriptions/${auto.id}/cancel`,
      headers: { authorization: `Bearer ${ctx.main.key}` },
    })
    // No body at all is a cancel now.
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ status: 'canceled' })
    const after = (await ctx.get<InvoiceBody>(`/v1/invoices/${invoiceId}`)).body
    expect(after).toMatchObject({ invoice_status: 'FINALIZED', next_payment_attempt: null })
    // A retry queued by a charge that was running as it was cancelled is not charged either.
    await ctx.pool.query('update invoices set next_payment_attempt = $2 where id = $1', [
      invoiceId,
      ctx.clock.now(),
    ])
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect((await ctx.get<InvoiceBody>(`/v1/invoices/${invoiceId}`)).body.amount_paid).toBe('0.00')
  })

  test('cancelling an incomplete subscription voids its first invoice and cancels its order', async () => {
    const order = await incompleteSubscription()
    const res = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.status).toBe('canceled')
    const invoice = (await ctx.get<InvoiceBody>(`/v1/invoices/${order.body.invoice_id}`)).body
    expect(invoice.invoice_status).toBe('VOIDED')
    expect((await ctx.get<{ status: string }>(`/v1/orders/${order.body.id}`)).body.status).toBe(
      'CANCELLED',
    )
    // Nothing is left to pay for it.
    const paid = await ctx.post(`/v1/invoices/${order.body.invoice_id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(paid.status).toBeGreaterThanOrEqual(400)
  })

  test("cancelling an incomplete subscription cancels the first invoice's payments not yet processed: none charges the customer later", async () => {
    const order = await incompleteSubscription()
    const later = await unprocessedPayment(order.body.invoice_id)
    const res = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.status).toBe('canceled')
    expect(
      (await ctx.get<InvoiceBody>(`/v1/invoices/${order.body.invoice_id}`)).body,
    ).toMatchObject({ invoice_status: 'VOIDED', amount_paid: '0.00' })
    const payment = await ctx.get<{ payment_status: string }>(`/v1/payments/${later.body.id}`)
    expect(payment.body.payment_status).toBe('CANCELLED')
    const processed = await ctx.post(`/v1/payments/${later.body.id}/process`)
    expect(processed.status).toBeGreaterThanOrEqual(400)
    expect(processed.status).toBeLessThan(500)
    expect((await ctx.get<{ status: string }>(`/v1/orders/${order.body.id}`)).body.status).toBe(
      'CANCELLED',
    )
  })

  test("another tenant's cancel is 404 and cancels none of the subscription's payments", async () => {
    const order = await incompleteSubscription()
    const later = await unprocessedPayment(order.body.invoice_id)
    const other = await ctx.createTenantFixture('Another merchant')
    const refused = await ctx.post(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
      {},
      { key: other.key },
    )
    expect(refused.status).toBe(404)
    const payment = await ctx.get<{ payment_status: string }>(`/v1/payments/${later.body.id}`)
    expect(payment.body.payment_status).toBe('INITIATED')
    expect((await getSubscription(ctx, order.body.subscription_id)).status).toBe('incomplete')
    expect(
      (await ctx.get<InvoiceBody>(`/v1/invoices/${order.body.invoice_id}`)).body.invoice_status,
    ).toBe('FINALIZED')
  })

  test('beside an open page on the first invoice, its unprocessed payments are left: the invoice is kept anyway', async () => {
    const order = await incompleteSubscription()
    const make = (body: Record<string, unknown>) =>
      ctx.post<{ id: string; payment_status: string }>('/v1/payments', {
        destination_type: 'INVOICE',
        destination_id: order.body.invoice_id,
        amount: '10.00',
        currency: 'usd',
        ...body,
      })
    const later = await make({ payment_method_type: 'OFFLINE', process_payment: false })
    const page = await make({ payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' })
    expect(page.body.payment_status).toBe('PENDING')
    const res = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
    )
    expect(res.body.status).toBe('canceled')
    expect(
      (await ctx.get<InvoiceBody>(`/v1/invoices/${order.body.invoice_id}`)).body.invoice_status,
    ).toBe('FINALIZED')
    for (const made of [later, page]) {
      const shown = await ctx.get<{ payment_status: string }>(`/v1/payments/${made.body.id}`)
      expect(shown.body.payment_status).toBe(made.body.payment_status)
    }
  })

  test('an incomplete subscription whose first invoice is partly paid is cancelled, its invoice kept', async () => {
    const order = await incompleteSubscription()
    await pay(order.body.invoice_id, 500n)
    const res = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.status).toBe('canceled')
    const invoice = (await ctx.get<InvoiceBody>(`/v1/invoices/${order.body.invoice_id}`)).body
    expect(invoice).toMatchObject({ invoice_status: 'FINALIZED', amount_paid: '5.00' })
  })

  test('cancel_at_period_end can be undone with PATCH', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx)).priceId)
    await ctx.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: true })
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      cancel_at_period_end: false,
    })
    expect(res.body).toMatchObject({ cancel_at_period_end: false, canceled_at: null })
    ctx.clock.set(new Date(res.body.current_period_end))
    await renew()
    expect((await getSubscription(ctx, id)).status).toBe('active')
  })
})

describe('subscription schedules', () => {
  test('a price change takes effect at the period end, and the next invoice uses it', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    const bigger = (await createPlan(ctx, '45.00')).priceId
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      price_id: bigger,
      quantity: 2,
    })
    expect(res.status).toBe(200)
    expect(res.body.price_id).not.toBe(bigger)
    expect(res.body.scheduled_changes).toEqual([
      expect.objectContaining({
        price_id: bigger,
        quantity: 2,
        effective_at: res.body.current_period_end,
        status: 'scheduled',
      }),
    ])
    ctx.clock.set(new Date(res.body.current_period_end))
    await renew()
    const after = await getSubscription(ctx, id)
    expect(after).toMatchObject({ price_id: bigger, quantity: 2, amount: '90.00' })
    expect(after.scheduled_changes[0]?.status).toBe('applied')
    const latest = (await ctx.get<InvoiceBody>(`/v1/invoices/${after.latest_invoice_id}`)).body
    expect(latest).toMatchObject({ total: '90.00' })
  })

  test('a change dated mid-period applies at the first renewal after it', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    const cheaper = (await createPlan(ctx, '15.00')).priceId
    const sub = await getSubscription(ctx, id)
    const secondEnd = new Date('2025-03-31T09:00:00Z')
    await ctx.patch(`/v1/subscriptions/${id}`, {
      price_id: cheaper,
      change_at: '2025-03-10T00:00:00Z',
    })
    ctx.clock.set(new Date(sub.current_period_end))
    await renew()
    expect((await getSubscription(ctx, id)).amount).toBe('20.00')
    ctx.clock.set(secondEnd)
    await renew()
    expect((await getSubscription(ctx, id)).amount).toBe('15.00')
  })

  test.each<[{ price_id?: string; quantity?: number; change_at?: string }, number]>([
    [{ price_id: 'price_nope' }, 404],
    [{ price_id: 'EUR' }, 400],
    [{ price_id: 'ONE_TIME' }, 400],
    [{ quantity: 2, change_at: '2000-01-01' }, 400],
    [{ quantity: 2, change_at: 'someday' }, 400],
  ])('%j is %i', async (body, status) => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx)).priceId)
    const eur = (
      await createProduct(ctx, {
        name: 'EU',
        type: 'recurring',
        prices: [{ amount: '1', currency: 'eur', interval: 'month' }],
      })
    ).prices[0]!.id
    const oneTime = (
      await createProduct(ctx, {
        name: 'Once',
        type: 'one_time',
        prices: [{ amount: '1', currency: 'usd' }],
      })
    ).prices[0]!.id
    const resolved = {
      ...body,
      ...(body.price_id === 'EUR' && { price_id: eur }),
      ...(body.price_id === 'ONE_TIME' && { price_id: oneTime }),
    }
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, resolved)
    expect(res.status).toBe(status)
  })

  test('cancel_scheduled_changes drops pending changes', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    await ctx.patch(`/v1/subscriptions/${id}`, { quantity: 3 })
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      cancel_scheduled_changes: true,
    })
    expect(res.body.scheduled_changes.map((s) => s.status)).toEqual(['cancelled'])
    ctx.clock.set(new Date(res.body.current_period_end))
    await renew()
    expect((await getSubscription(ctx, id)).quantity).toBe(1)
  })
})

describe('a first invoice paid late', () => {
  test('after its first period passed, the periods start from the payment: no passed period is billed', async () => {
    const order = await incompleteSubscription()
    // Paid two and a half months after the order (Jan 31 → Apr 15).
    ctx.clock.set(new Date('2025-04-15T09:00:00Z'))
    await pay(order.body.invoice_id, 2500n)
    const activated = await getSubscription(ctx, order.body.subscription_id)
    expect(activated).toMatchObject({
      status: 'active',
      current_period_start: '2025-04-15T09:00:00.000Z',
      current_period_end: '2025-05-15T09:00:00.000Z',
    })
    await renew()
    expect(await invoicesOf(ctx, order.body.subscription_id)).toHaveLength(1)
    expect((await getSubscription(ctx, order.body.subscription_id)).status).toBe('active')
    ctx.clock.set(new Date('2025-05-15T09:00:00Z'))
    await renew()
    expect(await invoicesOf(ctx, order.body.subscription_id)).toHaveLength(2)
  })

  test('within its first period, the period it was ordered for stands', async () => {
    const order = await incompleteSubscription()
    ctx.clock.set(new Date('2025-02-10T09:00:00Z'))
    await pay(order.body.invoice_id, 2500n)
    expect(await getSubscription(ctx, order.body.subscription_id)).toMatchObject({
      status: 'active',
      current_period_start: START.toISOString(),
      current_period_end: '2025-02-28T09:00:00.000Z',
    })
  })
})

describe('past_due', () => {
  test('ends when the invoice it owed is voided, and at a renewal that finds nothing owed', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    // Two renewals unpaid: past_due from the second.
    for (let i = 0; i < 2; i++) {
      ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
      await renew()
    }
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    const [, second, third] = await invoicesOf(ctx, id)
    await pay(String(third?.id), 2000n)
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    expect((await ctx.post(`/v1/invoices/${second?.id}/void`)).status).toBe(200)
    expect((await getSubscription(ctx, id)).status).toBe('active')
    // Past due again; what it owed is written off: the next renewal finds nothing owed.
    for (let i = 0; i < 2; i++) {
      ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
      await renew()
    }
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    for (const invoice of (await invoicesOf(ctx, id)).slice(-2)) {
      expect((await ctx.post(`/v1/invoices/${invoice.id}/mark_uncollectible`)).status).toBe(200)
    }
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renew()
    expect((await getSubscription(ctx, id)).status).toBe('active')
  })
})

describe('changes that would bill wrongly', () => {
  test('a price on another interval is 400: the periods follow the subscription', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00', 'month')).priceId)
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, {
      price_id: (await createPlan(ctx, '200.00', 'year')).priceId,
    })
    expect(res.status).toBe(400)
    expect(res.body.error.details).toMatchObject({ field: 'price_id' })
    expect((await getSubscription(ctx, id)).scheduled_changes).toEqual([])
  })

  test('a price change and a quantity change scheduled apart both apply, in either order', async () => {
    ctx.clock.set(START)
    const bigger = (await createPlan(ctx, '45.00')).priceId
    for (const changes of [
      [{ price_id: bigger }, { quantity: 3 }],
      [{ quantity: 3 }, { price_id: bigger }],
    ]) {
      const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
      for (const change of changes) {
        expect((await ctx.patch(`/v1/subscriptions/${id}`, change)).status).toBe(200)
      }
      ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
      await renew()
      expect(await getSubscription(ctx, id)).toMatchObject({
        price_id: bigger,
        quantity: 3,
        amount: '135.00',
      })
      const invoices = await invoicesOf(ctx, id)
      expect(invoices.at(-1)?.amount_due).toBe('135.00')
      ctx.clock.set(START)
    }
  })

  test('a quantity whose amount is larger than Payrail accepts is 400 at PATCH, with the changes already scheduled', async () => {
    ctx.clock.set(START)
    const { id } = await activeSubscription(ctx, (await createPlan(ctx, '20000000.00')).priceId)
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { quantity: 1_000_000 })
    expect(res.status).toBe(400)
    // A price scheduled first, then a quantity: together over the limit.
    const small = await activeSubscription(ctx, (await createPlan(ctx, '2.00')).priceId)
    const dear = (await createPlan(ctx, '20000000.00')).priceId
    expect((await ctx.patch(`/v1/subscriptions/${small.id}`, { price_id: dear })).status).toBe(200)
    const both = await ctx.patch<ErrorBody>(`/v1/subscriptions/${small.id}`, {
      quantity: 1_000_000,
    })
    expect(both.status).toBe(400)
    expect((await getSubscription(ctx, small.id)).scheduled_changes).toHaveLength(1)
  })

  test('a subscription that cannot renew is left for the next run; the others renew', async () => {
    ctx.clock.set(START)
    const broken = await activeSubscription(ctx, (await createPlan(ctx, '20000000.00')).priceId)
    const healthy = await activeSubscription(ctx, (await createPlan(ctx, '20.00')).priceId)
    // A quantity written before PATCH checked it: its renewal's invoice is over the limit.
    await ctx.pool.query('update subscriptions set quantity = 1000000 where id = $1', [broken.id])
    ctx.clock.set(new Date((await getSubscription(ctx, healthy.id)).current_period_end))
    await expect(renew()).resolves.toBeGreaterThanOrEqual(1)
    expect(await invoicesOf(ctx, healthy.id)).toHaveLength(2)
    expect(await invoicesOf(ctx, broken.id)).toHaveLength(1)
  })
})

describe('listing and access', () => {
  test('filters by status and customer; customer tokens cannot use subscription routes', async () => {
    ctx.clock.set(START)
    const { id, customerId } = await activeSubscription(ctx, (await createPlan(ctx)).priceId)
    const list = await ctx.get<List<SubscriptionBody>>(
      `/v1/subscriptions?customer_id=${customerId}&status=active`,
    )
    expect(list.body.items.map((s) => s.id)).toEqual([id])
    expect(
      (
        await ctx.get<List<SubscriptionBody>>(
          `/v1/subscriptions?customer_id=${customerId}&status=canceled`,
        )
      ).body.items,
    ).toEqual([])
    const token = (await ctx.post<{ token: string }>(`/v1/customers/${customerId}/tokens`)).body
      .token
    expect((await ctx.get(`/v1/subscriptions/${id}`, { key: token })).status).toBe(403)
    const other = await ctx.createTenantFixture('Other')
    expect((await ctx.get(`/v1/subscriptions/${id}`, { key: other.key })).status).toBe(404)
    expect((await ctx.post(`/v1/subscriptions/${id}/cancel`, {}, { key: other.key })).status).toBe(
      404,
    )
  })
})
