/**
 * Billing paths a review found wrong: an automatic charge racing a payment, a code paying an
 * invoice past its window, subscriptions ended at the period end, a top-up of nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { chargeDueInvoices } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import { endIncompleteAtPeriodEnd } from '../../src/modules/payments/flows.ts'
import { applyInvoicePayment } from '../../src/modules/settlement/service.ts'
import { renewDueSubscriptions } from '../../src/modules/subscriptions/service.ts'
import {
  createCustomer,
  createProduct,
  type InvoiceBody,
  oneTimePrice,
  payInvoice,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  customerWithCard,
  whileLocked,
} from '../payments-helpers.ts'

interface SubscriptionBody {
  id: string
  status: string
  current_period_start: string
  current_period_end: string
  ended_at: string | null
  cancel_at_period_end: boolean
  latest_invoice_id: string
  billing_cycle_anchor: string
}
interface OrderBody {
  id: string
  status: string
  invoice_id: string
  subscription_id: string
  invoice: InvoiceBody
}

let ctx: TestContext
const START = new Date('2026-01-15T12:00:00Z')

beforeAll(async () => {
  ctx = await createTestContext({ start: START })
})
afterAll(() => ctx.close())

const renew = async () => {
  await renewDueSubscriptions({ db: ctx.db, clock: ctx.clock, logger: ctx.deps.logger })
  await endIncompleteAtPeriodEnd(ctx.deps)
}
const subscription = async (id: string) =>
  (await ctx.get<SubscriptionBody>(`/v1/subscriptions/${id}`)).body
const invoice = async (id: string) => (await ctx.get<InvoiceBody>(`/v1/invoices/${id}`)).body

async function monthlyPrice(amount = '20.00') {
  const product = await createProduct(ctx, {
    name: 'Pro',
    type: 'recurring',
    prices: [{ amount, currency: 'usd', interval: 'month' }],
  })
  return product.prices[0]!.id
}

/** A new monthly subscription, `incomplete` (its first invoice unpaid), at START: its id. */
async function incompleteSubscription() {
  return (await incompleteOrder()).subscription_id
}

/** The order of a new monthly subscription at START, `incomplete` (its first invoice unpaid). */
async function incompleteOrder() {
  ctx.clock.set(START)
  const customer = await createCustomer(ctx)
  const order = await ctx.post<OrderBody>('/v1/orders', {
    customer_id: customer.id,
    type: 'SUBSCRIPTION',
    price_id: await monthlyPrice(),
  })
  expect(order.status, order.text).toBe(201)
  return order.body
}

describe('subscriptions', () => {
  test('an incomplete subscription cancelled at period end is canceled once that period has ended', async () => {
    const id = await incompleteSubscription()
    const res = await ctx.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: true })
    expect(res.status, res.text).toBe(200)
    const before = await subscription(id)
    ctx.clock.set(new Date(new Date(before.current_period_end).getTime() + 60_000))
    await renew()
    // The period it was to end with has ended: it is over, and its first invoice can no
    // longer start a new period the merchant asked to end.
    expect((await subscription(id)).status).toBe('canceled')
  })
})

describe('an incomplete subscription set to cancel at its period end', () => {
  /** An `incomplete` subscription ordered at START, set to cancel at its period end (Feb 15). */
  async function cancelledAtPeriodEnd() {
    const order = await incompleteOrder()
    const patched = await ctx.patch<SubscriptionBody>(
      `/v1/subscriptions/${order.subscription_id}`,
      { cancel_at_period_end: true },
    )
    expect(patched.body).toMatchObject({ status: 'incomplete', cancel_at_period_end: true })
    return { ...order, periodEnd: patched.body.current_period_end }
  }

  /** Ended as the renewal job ends it: canceled at its period end, its invoice voided, its order cancelled. */
  async function expectEndedAsTheJobEndsIt(order: OrderBody & { periodEnd: string }) {
    expect(await subscription(order.subscription_id)).toMatchObject({
      status: 'canceled',
      ended_at: order.periodEnd,
    })
    expect(await invoice(order.invoice_id)).toMatchObject({
      invoice_status: 'VOIDED',
      amount_paid: '0.00',
    })
    const shown = await ctx.get<OrderBody>(`/v1/orders/${order.id}`)
    expect(shown.body.status).toBe('CANCELLED')
  }

  // The job read the subscription, then cancelled whatever it had become: a late payment that
  // started it in between (the first invoice paid, so no longer voidable) had the period just
  // paid for ended the same instant. The ending is decided under the subscription's lock.
  test.each([
    ['a payment started it', 'paid'],
    ['the merchant took the cancel back', 'taken back'],
  ])(
    'the renewal job leaves alone a subscription that changed as it was ending it: %s',
    async (_, change) => {
      const order = await cancelledAtPeriodEnd()
      ctx.clock.set(new Date(new Date(order.periodEnd).getTime() + 30_000))
      let job: Promise<number> | undefined
      // The change commits while the job is between its read and its ending: the invoice's lock
      // held here lets the job read the subscription, then wait at the invoice.
      await ctx.db.transaction().execute(async (trx) => {
        await trx
          .selectFrom('invoices')
          .select('id')
          .where('id', '=', order.invoice_id)
          .forUpdate()
          .execute()
        job = endIncompleteAtPeriodEnd(ctx.deps)
        await new Promise((resolve) => setTimeout(resolve, 500))
        if (change === 'paid') {
          await applyInvoicePayment(trx, ctx.scope, order.invoice_id, 2000n, ctx.clock)
        } else {
          await trx
            .updateTable('subscriptions')
            .set({ cancel_at_period_end: false, canceled_at: null })
            .where('id', '=', order.subscription_id)
            .execute()
        }
      })
      expect(await job).toBe(0)
      if (change === 'paid') {
        // The customer keeps the period paid for, from the payment on.
        expect(await subscription(order.subscription_id)).toMatchObject({
          status: 'active',
          current_period_start: ctx.clock.now().toISOString(),
        })
        expect(await invoice(order.invoice_id)).toMatchObject({ payment_status: 'SUCCEEDED' })
      } else {
        expect((await subscription(order.subscription_id)).status).toBe('incomplete')
        expect((await invoice(order.invoice_id)).invoice_status).toBe('FINALIZED')
      }
    },
  )

  // docs/billing.md: paying later must not start a subscription the merchant ended. Only the
  // job ended it: a payment made after the period end, the job behind (a worker down, or just
  // the next minute), made it active with a new period and billed the customer for it.
  test.each([
    [
      'POST /v1/payments',
      (invoiceId: string) =>
        createPayment(ctx, {
          destination_id: invoiceId,
          payment_method_type: 'OFFLINE',
          amount: '20.00',
        }),
    ],
    [
      'POST /v1/invoices/:id/pay',
      (invoiceId: string) =>
        ctx.post(`/v1/invoices/${invoiceId}/pay`, { payment_method_type: 'OFFLINE' }),
    ],
  ])(
    'a payment after the period end, the job behind, is refused and ends it as the job would: %s',
    async (_, pay) => {
      const order = await cancelledAtPeriodEnd()
      ctx.clock.set(new Date(new Date(order.periodEnd).getTime() + 2 * 86_400_000))
      const res = await pay(order.invoice_id)
      expect(res.status, res.text).toBe(422)
      expect(res.text).toContain('"code":"invalid_state_transition"')
      await expectEndedAsTheJobEndsIt(order)
    },
  )

  // docs/billing.md: a PATCH or a cancel made while the job is behind finds a subscription set
  // to cancel at a period end now over canceled (422). A PATCH took the cancel back instead,
  // and the subscription stayed incomplete, its first invoice payable.
  test.each([
    [
      'PATCH cancel_at_period_end: false',
      (id: string) => ctx.patch(`/v1/subscriptions/${id}`, { cancel_at_period_end: false }),
    ],
    ['PATCH quantity', (id: string) => ctx.patch(`/v1/subscriptions/${id}`, { quantity: 2 })],
    ['POST cancel', (id: string) => ctx.post(`/v1/subscriptions/${id}/cancel`)],
  ])('after the period end, the job behind, %s finds it ended (422)', async (_, change) => {
    const order = await cancelledAtPeriodEnd()
    ctx.clock.set(new Date(new Date(order.periodEnd).getTime() + 86_400_000))
    const res = await change(order.subscription_id)
    expect(res.status, res.text).toBe(422)
    await expectEndedAsTheJobEndsIt(order)
  })
})

describe('orders', () => {
  test('a credit top-up price of zero is refused up front, and one stored before is refused by name, never a stray 400 from the ledger', async () => {
    const customer = await createCustomer(ctx)
    const product = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Free credits',
      type: 'credit_top_up',
      prices: [{ amount: '0', currency: 'usd' }],
    })
    // Refused up front: before, the product was made and every order of it was a 400 from
    // the ledger ("a balance change needs a non-zero amount").
    expect(product.status, product.text).toBe(400)
    expect(product.text).toContain('prices[0].amount of a credit top-up must be greater than zero')
    // A price of 0 stored before is refused by name when ordered.
    const legacy = await ctx.post<{ id: string; prices: { id: string }[] }>('/v1/products', {
      name: 'Old free credits',
      type: 'credit_top_up',
      prices: [{ amount: '1.00', currency: 'usd' }],
    })
    const priceId = legacy.body.prices[0]!.id
    await ctx.db.updateTable('prices').set({ amount: 0n }).where('id', '=', priceId).execute()
    const res = await ctx.post<ErrorBody>('/v1/orders', {
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      price_id: priceId,
    })
    expect(res.status, res.text).toBe(400)
    expect(res.body.error.message).toBe(`Price ${priceId} tops up nothing`)
  })
})

describe('discounts', () => {
  test('a 100% code does not settle an order whose invoice payment window has ended', async () => {
    ctx.clock.set(START)
    const customer = await createCustomer(ctx)
    await ctx.post('/v1/discounts', { code: 'LATEFREE', percent_off: 100 })
    const res = await ctx.post<OrderBody>('/v1/orders', {
      customer_id: customer.id,
      type: 'ONE_TIME_PRODUCT',
      price_id: await oneTimePrice(ctx, '40.00'),
      payment_window_days: 1,
    })
    expect(res.status, res.text).toBe(201)
    ctx.clock.set(new Date(START.getTime() + 2 * 86_400_000))
    // Paying without a code is refused: the window has ended.
    const plain = await ctx.post(`/v1/invoices/${res.body.invoice_id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(plain.status).toBe(422)
    await ctx.post(`/v1/invoices/${res.body.invoice_id}/pay`, {
      payment_method_type: 'OFFLINE',
      discount_code: 'LATEFREE',
    })
    // "An invoice is payable while FINALIZED, not yet paid, and inside its payment window."
    expect((await invoice(res.body.invoice_id)).payment_status).toBe('PENDING')
    expect((await ctx.get<OrderBody>(`/v1/orders/${res.body.id}`)).body.status).toBe('PENDING')
    ctx.clock.set(START)
  })
})

describe('automatic charges', () => {
  test('a subscription ended at its period end leaves no next_payment_attempt on its unpaid invoices', async () => {
    ctx.clock.set(START)
    const customer = await createCustomer(ctx, { auto_pay: true })
    const card = await savePaymentMethod(ctx.db, ctx.scope, {
      customerId: customer.id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: `card_${customer.id}`,
      last4: '4242',
    })
    await ctx.patch(`/v1/customers/${customer.id}`, { default_payment_method_id: card.id })
    const order = await ctx.post<OrderBody>('/v1/orders', {
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: await monthlyPrice('30.00'),
    })
    await payInvoice(ctx, order.body.invoice_id, 3000n)
    const id = order.body.subscription_id
    ctx.clock.set(new Date((await subscription(id)).current_period_end))
    await renew()
    const renewal = (await subscription(id)).latest_invoice_id
    expect((await invoice(renewal)).next_payment_attempt).not.toBeNull()
    expect((await ctx.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: true })).status).toBe(
      200,
    )
    ctx.clock.set(new Date((await subscription(id)).current_period_end))
    await renew()
    expect((await subscription(id)).status).toBe('canceled')
    // The charge job skips it for good: none is queued (as cancelling now clears it).
    expect((await invoice(renewal)).next_payment_attempt).toBeNull()
  })
})

describe('subscription cancel of an incomplete subscription', () => {
  test('cancelling an incomplete subscription now also cancels its scheduled changes', async () => {
    const id = await incompleteSubscription()
    expect((await ctx.patch(`/v1/subscriptions/${id}`, { quantity: 3 })).status).toBe(200)
    const res = await ctx.post<{ status: string; scheduled_changes: { status: string }[] }>(
      `/v1/subscriptions/${id}/cancel`,
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.status).toBe('canceled')
    // As a cancel of a started subscription does (`markSchedules(..., 'cancelled')`).
    expect(res.body.scheduled_changes.map((c) => c.status)).toEqual(['cancelled'])
  })
})

describe('charge_due_invoices while money lands', () => {
  test('a partial payment landing while the job charges does not end the automatic charges of an invoice still owed', async () => {
    ctx.clock.set(START)
    const customer = await customerWithCard(ctx, '4242424242424242')
    const created = await ctx.post<InvoiceBody>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      collection_method: 'charge_automatically',
      lines: [{ description: 'Renewal', quantity: 1, unit_amount: '100.00' }],
    })
    expect((await ctx.post(`/v1/invoices/${created.body.id}/finalize`)).status).toBe(200)
    const id = created.body.id
    // A checkout page opened two days ago: the job withdraws it before charging the card.
    const link = await createSandboxLink(ctx, { id, amount_due: '100.00' })
    expect(link.status, link.text).toBe(201)
    ctx.clock.set(new Date(START.getTime() + 2 * 86_400_000))
    await queueAutomaticPayment(ctx.db, id, ctx.clock.now())
    // While the job withdraws the page, 30.00 reaches the invoice (a bank transfer reconciled).
    const result = await whileLocked(
      ctx,
      link.body.id,
      () => chargeDueInvoices(ctx.deps),
      async () => {
        await payInvoice(ctx, id, 3000n)
      },
    )
    // The 70.00 still owed is charged: the charge takes what is owed under the invoice's lock
    // (it was refused for the 100.00 read before, and the invoice never charged again).
    expect(result).toMatchObject({ charged: 1, failed: 0 })
    const after = await invoice(id)
    expect(after).toMatchObject({
      amount_paid: '100.00',
      amount_remaining: '0.00',
      payment_status: 'SUCCEEDED',
      next_payment_attempt: null,
    })
    ctx.clock.set(START)
  })
})
