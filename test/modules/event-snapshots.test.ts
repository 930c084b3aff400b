/**
 * Outbound events: each event carries its object exactly as the API shows it once the change
 * that recorded it committed (docs/webhooks.md: "POSTs the event, exactly as GET /v1/events/:id
 * shows it"; each type "carries the … as GET /v1/…/:id shows it"), and every state change of
 * an object is announced.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { renewDueSubscriptions } from '../../src/modules/subscriptions/service.ts'
import { webhookEndpoints } from '../../src/modules/webhook-endpoints/registry.ts'
import { createCustomer, createProduct, eventsOf } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  chargeDefaultCard,
  createPayment,
  customerWithCard,
  customerWithSavedCard,
  getInvoice,
  getPayment,
  sandboxCardCharge,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date('2026-01-15T12:00:00Z') })
  for (let i = 0; i < 200 && !webhookEndpoints.live; i++)
    await new Promise((r) => setTimeout(r, 10))
})
afterAll(async () => {
  await ctx.close()
})

async function monthlyPrice(amount = '20.00') {
  const product = await createProduct(ctx, {
    name: 'Pro',
    type: 'recurring',
    prices: [{ amount, currency: 'usd', interval: 'month' }],
  })
  return product.prices[0]!.id
}

/** A paid (active) monthly subscription of `customerId`: its order. */
async function activeSubscription(customerId: string) {
  const order = await ctx.post<{ id: string; invoice_id: string; subscription_id: string }>(
    '/v1/orders',
    { customer_id: customerId, type: 'SUBSCRIPTION', price_id: await monthlyPrice() },
  )
  expect(order.status, order.text).toBe(201)
  const paid = await createPayment(ctx, {
    destination_id: order.body.invoice_id,
    payment_method_type: 'OFFLINE',
    amount: '20.00',
  })
  expect(paid.status, paid.text).toBe(201)
  return order.body
}

describe('event snapshots', () => {
  test('invoice.payment_applied of a partial card charge shows the invoice as committed (PENDING, not PROCESSING)', async () => {
    const { nextInvoiceId } = await customerWithSavedCard(ctx)
    const res = await createPayment(ctx, {
      destination_id: nextInvoiceId,
      payment_method_type: 'CARD',
      payment_gateway: 'sandbox',
      amount: '10.00',
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body.payment_status).toBe('SUCCEEDED')
    const invoice = await getInvoice(ctx, nextInvoiceId)
    expect(invoice.payment_status).toBe('PENDING')
    const [applied] = await eventsOf(ctx, nextInvoiceId, 'invoice.payment_applied')
    // Before, it said PROCESSING: the charge's end moved the invoice back after the event was written.
    expect(applied?.data.object.payment_status).toBe(invoice.payment_status)
    expect(applied?.data.object).toEqual(invoice)
  })

  test("a declined card charge that leaves the invoice FAILED is announced with the invoice's new status", async () => {
    const { invoice: created, res } = await sandboxCardCharge(ctx, '4000000000000002')
    expect(res.status, res.text).toBe(402)
    const invoice = await getInvoice(ctx, created.id)
    expect(invoice.payment_status).toBe('FAILED')
    // Newest first: the invoice's last event shows it as it now is (before, it said PENDING,
    // from invoice.finalized: the move to FAILED recorded no event).
    const [latest] = await eventsOf(ctx, created.id)
    expect(latest?.data.object.payment_status).toBe('FAILED')
  })

  test('payment.succeeded of an off-session sandbox card charge carries the charge attempt, as GET shows it', async () => {
    const { nextInvoiceId } = await customerWithSavedCard(ctx)
    const res = await chargeDefaultCard(ctx, nextInvoiceId)
    expect(res.status, res.text).toBe(201)
    const payment = await getPayment(ctx, res.body.id)
    expect(payment.payment_status).toBe('SUCCEEDED')
    expect(payment.attempts).toHaveLength(1)
    const [succeeded] = await eventsOf(ctx, res.body.id, 'payment.succeeded')
    // Before, attempts: [] (the sandbox's report moved it first; the attempt came after, silently).
    expect(succeeded?.data.object.attempts).toEqual(payment.attempts)
    expect(succeeded?.data.object).toEqual(payment)
  })

  test('subscription.updated of a PATCH that schedules a change shows the scheduled change', async () => {
    const customer = await createCustomer(ctx)
    const order = await activeSubscription(customer.id)
    const patched = await ctx.patch<Record<string, unknown>>(
      `/v1/subscriptions/${order.subscription_id}`,
      { quantity: 2 },
    )
    expect(patched.status, patched.text).toBe(200)
    const shown = await ctx.get<{ scheduled_changes: unknown[] }>(
      `/v1/subscriptions/${order.subscription_id}`,
    )
    expect(shown.body.scheduled_changes).toHaveLength(1)
    const [updated] = await eventsOf(ctx, order.subscription_id, 'subscription.updated')
    // Before, every subscription event said scheduled_changes: [].
    expect(updated?.data.object.scheduled_changes).toEqual(shown.body.scheduled_changes)
    expect(updated?.data.object).toEqual(shown.body)
  })

  test('invoice.finalized of an automatically charged renewal shows its next_payment_attempt', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const order = await activeSubscription(customer.id)
    ctx.clock.advance(32 * 86_400_000)
    await renewDueSubscriptions({ db: ctx.db, clock: ctx.clock, logger: ctx.deps.logger })
    const subscription = await ctx.get<{ latest_invoice_id: string }>(
      `/v1/subscriptions/${order.subscription_id}`,
    )
    const renewalId = subscription.body.latest_invoice_id
    expect(renewalId).not.toBe(order.invoice_id)
    const invoice = await getInvoice(ctx, renewalId)
    expect(
      (invoice as unknown as { next_payment_attempt: string | null }).next_payment_attempt,
    ).not.toBeNull()
    const [finalized] = await eventsOf(ctx, renewalId, 'invoice.finalized')
    // Before, null: the charge was queued after the event, in the same transaction.
    expect(finalized?.data.object).toEqual(invoice)
  })
})
