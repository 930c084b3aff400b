import type Stripe from 'stripe'
import type { BillingObject, GatewayContext } from '../gateway.ts'
import { stripeClient, stripeSdk } from './stripe.client.ts'

export const BILLING_OBJECT_TYPES = [
  'product',
  'price',
  'subscription',
  'subscription_schedule',
  'invoice',
  'balance_transaction',
] as const satisfies readonly BillingObject['objectType'][]

/** How `eachBillingObject` waits before asking again for a list page Stripe refused for now. */
export interface ListRetry {
  /** Attempts per page after the first (3: four in all). */
  retries?: number
  /** The first wait, doubled each attempt after it, when Stripe names none (`Retry-After`). */
  baseDelayMs?: number
  /** Waits `ms` (tests pass one that does not). */
  sleep?: (ms: number) => Promise<void>
}

/** The longest Payrail waits for one page, whatever Stripe's `Retry-After` asks. */
const MAX_LIST_DELAY_MS = 60_000

/**
 * Pages through every object of a type in the connected Stripe account, 100 a page, handing
 * each to `each` in order. A page Stripe refuses for now (429 rate limited, 5xx, no answer:
 * the SDK retries only the last two, twice) is asked again a few times with backoff, after
 * Stripe's `Retry-After` when it sends one; a page still refused then throws, and the pages
 * after it are not read.
 */
export async function eachBillingObject(
  ctx: GatewayContext,
  objectType: BillingObject['objectType'],
  each: (object: BillingObject) => Promise<void>,
  retry: ListRetry = {},
): Promise<void> {
  const stripe = await stripeClient(ctx)
  let startingAfter: string | undefined
  for (;;) {
    const params = {
      limit: 100,
      ...(startingAfter !== undefined && { starting_after: startingAfter }),
    }
    const page = await withListRetries(() => listPage(stripe, objectType, params), retry)
    for (const object of page.data) await each({ objectType, object })
    const last = page.data.at(-1)
    if (!page.has_more || !last) return
    startingAfter = last.id
  }
}

interface ListParams {
  limit: number
  starting_after?: string
}

/** One page of a type's list. */
function listPage(
  stripe: Stripe,
  objectType: BillingObject['objectType'],
  params: ListParams,
): Promise<{ data: BillingObject['object'][]; has_more: boolean }> {
  switch (objectType) {
    case 'product':
      return stripe.products.list(params)
    case 'price':
      return stripe.prices.list(params)
    case 'subscription':
      return stripe.subscriptions.list({ ...params, status: 'all' })
    case 'subscription_schedule':
      return stripe.subscriptionSchedules.list(params)
    case 'invoice':
      return stripe.invoices.list(params)
    case 'balance_transaction':
      return stripe.balanceTransactions.list(params)
  }
}

async function withListRetries<T>(read: () => Promise<T>, retry: ListRetry): Promise<T> {
  const retries = retry.retries ?? 3
  const baseDelayMs = retry.baseDelayMs ?? 1_000
  const sleep = retry.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))
  const { errors } = await stripeSdk()
  for (let attempt = 0; ; attempt++) {
    try {
      return await read()
    } catch (error) {
      const transient =
        error instanceof errors.StripeConnectionError ||
        (error instanceof errors.StripeError &&
          error.statusCode !== undefined &&
          (error.statusCode === 429 || error.statusCode >= 500))
      if (!transient || attempt >= retries) throw error
      const asked = retryAfterMs(error.headers?.['retry-after'])
      await sleep(Math.min(asked ?? baseDelayMs * 2 ** attempt, MAX_LIST_DELAY_MS))
    }
  }
}

/** `Retry-After` in milliseconds: seconds, or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | undefined): number | undefined {
  if (header === undefined) return undefined
  const seconds = Number(header)
  if (header.trim() !== '' && Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
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
