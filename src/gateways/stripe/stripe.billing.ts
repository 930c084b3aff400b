import type Stripe from 'stripe'
import type { BillingObject, GatewayContext } from '../gateway.ts'
import { stripeClient } from './stripe.client.ts'

export const BILLING_OBJECT_TYPES = [
  'product',
  'price',
  'subscription',
  'subscription_schedule',
  'invoice',
  'balance_transaction',
] as const satisfies readonly BillingObject['objectType'][]

/**
 * Pages through every object of a type in the connected Stripe account (the SDK's
 * auto-pagination), handing each to `each` in order.
 */
export async function eachBillingObject(
  ctx: GatewayContext,
  objectType: BillingObject['objectType'],
  each: (object: BillingObject) => Promise<void>,
): Promise<void> {
  const stripe = await stripeClient(ctx)
  const list = (() => {
    switch (objectType) {
      case 'product':
        return stripe.products.list({ limit: 100 })
      case 'price':
        return stripe.prices.list({ limit: 100 })
      case 'subscription':
        return stripe.subscriptions.list({ limit: 100, status: 'all' })
      case 'subscription_schedule':
        return stripe.subscriptionSchedules.list({ limit: 100 })
      case 'invoice':
        return stripe.invoices.list({ limit: 100 })
      case 'balance_transaction':
        return stripe.balanceTransactions.list({ limit: 100 })
    }
  })()
  for await (const object of list) {
    await each({ objectType, object })
  }
}

/**
 * A Stripe invoice object with every line: Stripe embeds the first 10 and says `has_more`,
 * and the rest are read from its lines (`GET /v1/invoices/:id/lines`). Mirrored from the
 * embedded ten alone, a 120.00 invoice of twelve lines showed lines adding up to 100.00.
 */
export async function withAllLines(stripe: Stripe, object: BillingObject['object']) {
  const invoice = object as { lines?: { has_more?: unknown } | null; status?: unknown }
  const lines = invoice.lines
  // A draft is not mirrored (its lines can still change), nor is a deleted one (a draft).
  if (lines?.has_more !== true || invoice.status === 'draft') return object
  const data: unknown[] = []
  try {
    for await (const line of stripe.invoices.listLineItems(object.id, { limit: 100 }))
      data.push(line)
  } catch (error) {
    // Gone at Stripe since the report (404): the lines it embedded are all there is.
    if ((error as { statusCode?: unknown }).statusCode === 404) return object
    throw error
  }
  return { ...object, lines: { ...lines, data, has_more: false } }
}

/**
 * Tells Stripe an invoice was paid outside it (another Payrail rail took the money).
 * `voided`: Stripe voided the invoice meanwhile, and a void invoice cannot be paid; the
 * money Payrail took is for the merchant to refund (the caller says so), never asked again.
 */
export async function markInvoicePaidOutOfBand(
  ctx: GatewayContext,
  stripeInvoiceId: string,
): Promise<'marked' | 'already_paid' | 'voided'> {
  const stripe = await stripeClient(ctx)
  const invoice = await stripe.invoices.retrieve(stripeInvoiceId)
  if (invoice.status === 'paid') return 'already_paid'
  if (invoice.status === 'void') return 'voided'
  await stripe.invoices.pay(
    stripeInvoiceId,
    { paid_out_of_band: true },
    { idempotencyKey: `payrail-oob-${stripeInvoiceId}` },
  )
  return 'marked'
}
