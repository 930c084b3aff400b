import { expect } from 'vitest'
import { endIncompleteAtPeriodEnd } from '../src/modules/payments/flows.ts'
import { renewDueSubscriptions } from '../src/modules/subscriptions/service.ts'
import {
  createCustomer,
  createProduct,
  type InvoiceBody,
  type List,
  payInvoice,
} from './fixtures.ts'
import type { TestContext } from './harness.ts'

export interface SubscriptionBody {
  id: string
  status: string
  price_id: string
  quantity: number
  amount: string
  billing_cycle_anchor: string
  current_period_start: string
  current_period_end: string
  cancel_at_period_end: boolean
  canceled_at: string | null
  ended_at: string | null
  started_at: string | null
  latest_invoice_id: string
  collection_method: string
  scheduled_changes: {
    price_id: string | null
    quantity: number | null
    effective_at: string
    status: string
  }[]
}

export interface OrderBody {
  id: string
  invoice_id: string
  subscription_id: string
}

/** The renewal job as it runs, then the end of incomplete subscriptions whose period ended. */
export async function renewAndEndIncomplete(ctx: TestContext): Promise<number> {
  const n = await renewDueSubscriptions({ db: ctx.db, clock: ctx.clock, logger: ctx.deps.logger })
  await endIncompleteAtPeriodEnd(ctx.deps)
  return n
}

export async function getSubscription(ctx: TestContext, id: string): Promise<SubscriptionBody> {
  return (await ctx.get<SubscriptionBody>(`/v1/subscriptions/${id}`)).body
}

/** The subscription's invoices, oldest first. */
export async function invoicesOf(ctx: TestContext, subscriptionId: string): Promise<InvoiceBody[]> {
  return (
    await ctx.get<List<InvoiceBody>>(
      `/v1/invoices?subscription_id=${subscriptionId}&sort=created_at&limit=100`,
    )
  ).body.items
}

/** A recurring product "Pro" with one usd price. */
export async function createPlan(
  ctx: TestContext,
  amount = '20.00',
  interval = 'month',
  extra: Record<string, unknown> = {},
): Promise<{ productId: string; priceId: string }> {
  const product = await createProduct(ctx, {
    name: 'Pro',
    type: 'recurring',
    prices: [{ amount, currency: 'usd', interval, ...extra }],
  })
  return { productId: product.id, priceId: product.prices[0]!.id }
}

/** A SUBSCRIPTION order (201) of `priceId` for the customer. */
export async function orderSubscription(
  ctx: TestContext,
  customerId: string,
  priceId: string,
  extra: Record<string, unknown> = {},
): Promise<OrderBody> {
  const res = await ctx.post<OrderBody>('/v1/orders', {
    customer_id: customerId,
    type: 'SUBSCRIPTION',
    price_id: priceId,
    ...extra,
  })
  expect(res.status, res.text).toBe(201)
  return res.body
}

/**
 * A subscription of a new customer (`customer`: its body) whose first invoice is paid, so
 * it is active, started at the clock's current time; `order` adds fields to the order.
 */
export async function activeSubscription(
  ctx: TestContext,
  priceId: string,
  options: { order?: Record<string, unknown>; customer?: Record<string, unknown> } = {},
): Promise<{ customerId: string; id: string; order: OrderBody }> {
  const customerId = (await createCustomer(ctx, options.customer ?? {})).id
  const order = await orderSubscription(ctx, customerId, priceId, options.order)
  const invoice = (await ctx.get<InvoiceBody>(`/v1/invoices/${order.invoice_id}`)).body
  if (invoice.amount_remaining !== '0.00')
    await payInvoice(ctx, invoice.id, BigInt(invoice.amount_remaining.replace('.', '')))
  expect((await getSubscription(ctx, order.subscription_id)).status).toBe('active')
  return { customerId, id: order.subscription_id, order }
}
