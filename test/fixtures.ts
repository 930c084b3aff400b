import { expect } from 'vitest'
import { applyInvoicePayment } from '../src/modules/settlement/service.ts'
import type { TestContext } from './harness.ts'

/** Small builders for tests that need billing objects; each goes through the public API. */

export interface CustomerRef {
  id: string
}

export async function createCustomer(
  ctx: TestContext,
  body: Record<string, unknown> = {},
  key?: string,
): Promise<CustomerRef> {
  const res = await ctx.post<CustomerRef>(
    '/v1/customers',
    { name: 'Ada Lovelace', email: 'ada@example.com', ...body },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body
}

export interface ProductRef {
  id: string
  prices: { id: string; amount: string; currency: string; interval: string | null }[]
}

export async function createProduct(
  ctx: TestContext,
  body: Record<string, unknown>,
): Promise<ProductRef> {
  const res = await ctx.post<ProductRef>('/v1/products', { name: 'Product', ...body })
  expect(res.status).toBe(201)
  return res.body
}

/** A recurring product with one price; returns its price id. */
export async function recurringPrice(
  ctx: TestContext,
  amount = '20.00',
  interval = 'month',
  currency = 'usd',
) {
  const product = await createProduct(ctx, {
    name: 'Pro plan',
    type: 'recurring',
    prices: [{ amount, currency, interval }],
  })
  return product.prices[0]!.id
}

export async function oneTimePrice(ctx: TestContext, amount = '99.00', currency = 'usd') {
  const product = await createProduct(ctx, {
    name: 'Onboarding package',
    type: 'one_time',
    prices: [{ amount, currency }],
  })
  return product.prices[0]!.id
}

export async function topUpPrice(ctx: TestContext, amount = '50.00', currency = 'usd') {
  const product = await createProduct(ctx, {
    name: 'API credits',
    type: 'credit_top_up',
    prices: [{ amount, currency }],
  })
  return product.prices[0]!.id
}

export interface InvoiceBody {
  id: string
  number: string | null
  customer_id: string
  currency: string
  invoice_status: string
  payment_status: string
  collection_method: string
  billing_reason: string
  subtotal: string
  total_discount: string
  total: string
  amount_due: string
  amount_paid: string
  amount_refunded: string
  amount_remaining: string
  payment_window_ends_at: string | null
  subscription_id: string | null
  order_id: string | null
  period_start: string | null
  period_end: string | null
  next_payment_attempt: string | null
  lines: {
    description: string
    quantity: number
    unit_amount: string
    amount: string
    price_id: string | null
  }[]
  paid_at: string | null
}

/** A draft invoice of `customerId`; with `key`, made with that key (another tenant's, say). */
export async function createInvoice(
  ctx: TestContext,
  customerId: string,
  body: Record<string, unknown> = {},
  key?: string,
) {
  const res = await ctx.post<InvoiceBody>(
    '/v1/invoices',
    {
      customer_id: customerId,
      currency: 'usd',
      lines: [{ description: 'Consulting', quantity: 2, unit_amount: '50.00' }],
      ...body,
    },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body
}

/** `createInvoice`, finalized (with the same `key`). */
export async function finalizedInvoice(
  ctx: TestContext,
  customerId: string,
  body: Record<string, unknown> = {},
  key?: string,
) {
  const invoice = await createInvoice(ctx, customerId, body, key)
  const res = await ctx.post<InvoiceBody>(
    `/v1/invoices/${invoice.id}/finalize`,
    undefined,
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(200)
  return res.body
}

export interface List<T> {
  items: T[]
  pagination: { total: number; limit: number; offset: number }
}

/** Applies money received to an invoice, as a payment rail's reconciliation does. */
export function payInvoice(ctx: TestContext, invoiceId: string, amount: bigint) {
  return ctx.db
    .transaction()
    .execute((trx) => applyInvoicePayment(trx, ctx.scope, invoiceId, amount, ctx.clock))
}

export interface EventBody {
  id: string
  type: string
  object_type: string
  object_id: string
  data: { object: Record<string, unknown> }
}

/** The events about `objectId` (only of `type`, when given), as `GET /v1/events` lists them. */
export async function eventsOf(ctx: TestContext, objectId: string, type?: string) {
  const query = new URLSearchParams({ object_id: objectId, limit: '1000' })
  if (type) query.set('type', type)
  const res = await ctx.get<List<EventBody>>(`/v1/events?${query}`)
  expect(res.status).toBe(200)
  return res.body.items
}
