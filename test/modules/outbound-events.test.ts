/**
 * What merchants are told: events carry their objects as the API shows them once committed,
 * a default card saved by a payment is a customer.updated, and a production delivery never
 * reaches a private address however the URL spells it.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { deliverMerchantWebhook } from '../../src/jobs/tasks/deliver-merchant-webhook.ts'
import { webhookEndpoints } from '../../src/modules/webhook-endpoints/registry.ts'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { type MerchantReceiver, startMerchantReceiver } from '../merchant-receiver.ts'
import { customerWithSavedCard, offlinePayment } from '../payments-helpers.ts'

let ctx: TestContext
let merchant: MerchantReceiver

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  merchant = await startMerchantReceiver()
  for (let i = 0; i < 200 && !webhookEndpoints.live; i++)
    await new Promise((r) => setTimeout(r, 10))
})
afterAll(async () => {
  await merchant.close()
  await ctx.close()
})
beforeEach(async () => {
  merchant.reset()
  await ctx.pool.query('delete from webhook_endpoints; delete from webhook_deliveries')
  webhookEndpoints.forget(ctx.main.test.id)
})

async function inProduction<T>(run: () => Promise<T>): Promise<T> {
  const environment = process.env.NODE_ENV
  process.env.NODE_ENV = 'production'
  try {
    return await run()
  } finally {
    process.env.NODE_ENV = environment
  }
}

describe('outbound webhooks', () => {
  test('in production, an endpoint URL naming a loopback address in IPv4-mapped IPv6 form is not sent to', async () => {
    // WHATWG URL writes [::ffff:127.0.0.1] as [::ffff:7f00:1]: still 127.0.0.1.
    const url = `http://[::ffff:127.0.0.1]:${merchant.port}/hooks`
    expect(new URL(url).hostname).toBe('[::ffff:7f00:1]')
    const created = await ctx.post<{ id: string }>('/v1/webhook_endpoints', {
      url,
      enabled_events: ['invoice.paid'],
    })
    expect(created.status, created.text).toBe(201)
    await offlinePayment(ctx)
    const { rows } = await ctx.pool.query<{ id: string }>(
      'select id from webhook_deliveries where endpoint_id = $1',
      [created.body.id],
    )
    expect(rows).toHaveLength(1)
    await inProduction(async () => {
      await expect(
        deliverMerchantWebhook(
          ctx.deps,
          { deliveryId: rows[0]!.id },
          { attempts: 1, max_attempts: 12 },
        ),
      ).rejects.toThrow()
    })
    expect(merchant.received).toHaveLength(0)
  })

  test('customer.balance_transaction.created carries the balance transaction as the API shows it (amount a decimal string)', async () => {
    const customer = await createCustomer(ctx)
    const created = await ctx.post<Record<string, unknown>>(
      `/v1/customers/${customer.id}/balance_transactions`,
      { amount: '5.00', currency: 'usd', description: 'goodwill' },
    )
    expect(created.status, created.text).toBe(201)
    const events = await ctx.get<{ items: { data: { object: Record<string, unknown> } }[] }>(
      `/v1/events?object_id=${created.body.id}`,
    )
    expect(events.body.items).toHaveLength(1)
    const data = events.body.items[0]!.data.object
    // 5.00 usd, not 500 (minor units): a merchant would read a hundred times the amount.
    expect(data.amount).toBe('5.00')
    expect(data).toEqual(created.body)
  })

  test('payment.succeeded of a link payment that saves its card shows the payment as committed (payment_method_id)', async () => {
    const { linkPaymentId: paymentId } = await customerWithSavedCard(ctx)
    const payment = await ctx.get<{ payment_status: string; payment_method_id: string | null }>(
      `/v1/payments/${paymentId}`,
    )
    expect(payment.body.payment_status).toBe('SUCCEEDED')
    expect(payment.body.payment_method_id).toMatch(/^pm_/)
    const events = await ctx.get<{
      items: { type: string; data: { object: Record<string, unknown> } }[]
    }>(`/v1/events?object_id=${paymentId}&type=payment.succeeded`)
    expect(events.body.items).toHaveLength(1)
    // Set in the same transaction as the move: the move's event carries it (it was set after).
    expect(events.body.items[0]!.data.object.payment_method_id).toBe(payment.body.payment_method_id)
  })

  test("a card saved as the customer's default by a payment records customer.updated, as PATCH does", async () => {
    const customerId = (await customerWithSavedCard(ctx)).customer.id
    const customer = await ctx.get<{ default_payment_method_id: string | null }>(
      `/v1/customers/${customerId}`,
    )
    expect(customer.body.default_payment_method_id).toMatch(/^pm_/)
    const events = await ctx.get<{
      items: { type: string; data: { object: Record<string, unknown> } }[]
    }>(`/v1/events?object_id=${customerId}`)
    // Newest first: the customer's last event shows its default card.
    expect(events.body.items[0]?.type).toBe('customer.updated')
    expect(events.body.items[0]?.data.object.default_payment_method_id).toBe(
      customer.body.default_payment_method_id,
    )
  })

  test('customer.updated carries the customer as the API shows it, balances included', async () => {
    const customer = await createCustomer(ctx)
    const credit = await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '25.00',
      currency: 'usd',
    })
    expect(credit.status, credit.text).toBe(201)
    expect((await ctx.patch(`/v1/customers/${customer.id}`, { name: 'Renamed' })).status).toBe(200)
    const shown = await ctx.get<Record<string, unknown>>(`/v1/customers/${customer.id}`)
    expect(shown.body.balances).toEqual({ usd: '25.00' })
    const events = await ctx.get<{
      items: { type: string; data: { object: Record<string, unknown> } }[]
    }>(`/v1/events?object_id=${customer.id}&type=customer.updated`)
    // Before, every customer event said `balances: {}`.
    expect(events.body.items[0]?.data.object).toEqual(shown.body)
  })
})
