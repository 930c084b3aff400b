import { expect } from 'vitest'
import {
  SYNC_DEFAULT_PAYMENT_METHOD,
  syncDefaultPaymentMethod,
} from '../src/jobs/tasks/sync-default-payment-method.ts'
import type { StripeEmulator } from './emulators/stripe/emulator.ts'
import { startStripeEmulator } from './emulators/stripe/server.ts'
import type { TestCardAlias } from './emulators/stripe/test-cards.ts'
import type { InvoiceBody, List } from './fixtures.ts'
import type { TestContext } from './harness.ts'
import { createPayment, getPayment, unansweredPayment } from './payments-helpers.ts'

/** Where the emulator posts the main tenant's test-environment webhooks. */
export function stripeWebhookPath(ctx: TestContext): string {
  return `/v1/webhooks/stripe/${ctx.main.tenant.id}/${ctx.main.test.id}`
}

/**
 * Serves the app on a port, starts the Stripe emulator with its webhooks pointed at
 * the app, and connects the main tenant's test environment to it.
 */
export async function connectStripeEmulator(ctx: TestContext): Promise<StripeEmulator> {
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  const emulator = await startStripeEmulator({
    clock: ctx.clock,
    webhookUrl: `${address}${stripeWebhookPath(ctx)}`,
  })
  const connection = await ctx.post('/v1/gateway_connections', {
    gateway: 'stripe',
    credentials: { secret_key: emulator.secretKey, webhook_secret: emulator.webhookSecret },
    settings: { base_url: emulator.url },
  })
  expect(connection.status, connection.text).toBe(201)
  return emulator
}

/**
 * Gives a Payrail customer a Stripe customer with a saved test card of `alias`, and
 * records that card as the customer's payment method (not yet the default).
 */
export async function saveStripeCard(
  ctx: TestContext,
  emulator: StripeEmulator,
  customerId: string,
  alias: TestCardAlias,
  email = 'card@example.com',
): Promise<{ paymentMethodId: string; stripeCustomerId: string }> {
  const stripeCustomerId = String(emulator.seedCustomer({ email }).id)
  const method = emulator.seedPaymentMethod(stripeCustomerId, alias)
  await ctx.db
    .updateTable('customers')
    .set({ gateway_customer_ids: JSON.stringify({ stripe: stripeCustomerId }) })
    .where('id', '=', customerId)
    .execute()
  const saved = await ctx.db
    .insertInto('payment_methods')
    .values({
      id: `pm_payrail_${customerId}`,
      tenant_id: ctx.main.tenant.id,
      environment_id: ctx.main.test.id,
      customer_id: customerId,
      gateway: 'stripe',
      gateway_payment_method_id: String(method.id),
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  return { paymentMethodId: saved.id, stripeCustomerId }
}

/** Runs the queued `sync_default_payment_method` job of `customerId` (tests run no worker); its outcome. */
export async function runDefaultMethodJob(ctx: TestContext, customerId: string) {
  const jobs = await ctx.pool.query<{ payload: { customerId: string } }>(
    `select payload from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = $1`,
    [SYNC_DEFAULT_PAYMENT_METHOD],
  )
  const job = jobs.rows.find((row) => row.payload.customerId === customerId)
  return job ? syncDefaultPaymentMethod(ctx.deps, job.payload) : undefined
}

/** The Payrail invoice that mirrors Stripe invoice `stripeInvoiceId`, if any. */
export async function mirroredInvoice(ctx: TestContext, stripeInvoiceId: string) {
  const list = await ctx.get<List<InvoiceBody & { stripe_invoice_id: string; source: string }>>(
    '/v1/invoices?source=stripe&limit=1000',
  )
  return list.body.items.find((i) => i.stripe_invoice_id === stripeInvoiceId)
}

/** A Stripe link for `invoiceId`, of 100.00 unless `extra` says otherwise, its Checkout Session open. */
export async function openStripeLink(
  ctx: TestContext,
  invoiceId: string,
  extra: Record<string, unknown> = {},
) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'stripe',
    amount: '100.00',
    ...extra,
  })
  expect(res.status, res.text).toBe(201)
  return res.body
}

/** The same, paid on the emulator's Checkout page with a card: SUCCEEDED. */
export async function paidStripeLink(
  ctx: TestContext,
  emulator: StripeEmulator,
  invoiceId: string,
  extra: Record<string, unknown> = {},
) {
  const link = await openStripeLink(ctx, invoiceId, extra)
  emulator.completeCheckoutSession(String(link.gateway_tracking_id), {
    paymentMethod: 'pm_card_visa',
  })
  await emulator.waitForDeliveries()
  const paid = await getPayment(ctx, link.id)
  expect(paid.payment_status).toBe('SUCCEEDED')
  return paid
}

/**
 * A Stripe link for `invoiceId` whose call to `pathPrefix` Stripe carried out but whose answer
 * was lost (stripe-node's own retries too): 502, the payment left INITIATED. Its id.
 */
export async function unansweredStripeLink(
  ctx: TestContext,
  emulator: StripeEmulator,
  invoiceId: string,
  lost: { pathPrefix: string; method?: 'POST' },
) {
  emulator.timeoutNext({ count: 3, mode: 'destroy', afterProcessing: true, ...lost })
  const paymentId = await unansweredPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'stripe',
  })
  emulator.clearFaults()
  return paymentId
}
