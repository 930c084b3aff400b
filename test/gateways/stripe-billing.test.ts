import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { inTransaction } from '../../src/db/transaction.ts'
import {
  markStripeInvoicePaid,
  STRIPE_PAID_OUT_OF_BAND,
} from '../../src/jobs/tasks/stripe-paid-out-of-band.ts'
import { backfillStripe } from '../../src/modules/stripe-sync/backfill.ts'
import { applyBillingObject } from '../../src/modules/stripe-sync/service.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { signatureHeader } from '../emulators/stripe/signing.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { getPayment, type PaymentBody, pagePost, sessionOf } from '../payments-helpers.ts'
import { connectStripeEmulator, mirroredInvoice, stripeWebhookPath } from '../stripe-helpers.ts'

let ctx: TestContext
let emulator: StripeEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  emulator = await connectStripeEmulator(ctx)
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

/** A sandbox CRYPTO payment of a mirrored invoice, created (201). */
async function sandboxCryptoPayment(invoiceId: string | undefined, amount: string) {
  const payment = await ctx.post<PaymentBody>('/v1/payments', {
    destination_type: 'INVOICE',
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'sandbox',
    amount,
    currency: 'usd',
  })
  expect(payment.status, payment.text).toBe(201)
  return payment
}

/** An open 45.00 Stripe invoice of a new customer, mirrored: Stripe's and Payrail's. */
async function openMirrored(email: string) {
  const customer = emulator.seedCustomer({ email })
  const invoice = emulator.seedInvoice({
    customer: String(customer.id),
    amountDue: 4500,
    status: 'open',
  })
  emulator.sendEvent('invoice.finalized', String(invoice.id))
  await emulator.waitForDeliveries()
  const mirrored = await mirroredInvoice(ctx, String(invoice.id))
  if (!mirrored) throw new Error('not mirrored')
  return { invoice, mirrored }
}

/** How many `invoice.paid` events the invoice has. */
async function invoicePaidEvents(invoiceId: string) {
  const res = await ctx.get<{ items: unknown[] }>(
    `/v1/events?object_id=${invoiceId}&type=invoice.paid`,
  )
  return res.body.items.length
}

/** The out-of-band job's payload for a Stripe invoice of the main test environment. */
const outOfBandJob = (stripeInvoiceId: string) => ({
  tenantId: ctx.main.tenant.id,
  environmentId: ctx.main.test.id,
  stripeInvoiceId,
})

/** A 45.00 Stripe invoice as Stripe shows it once it collected it itself. */
const collectedByStripe = (invoice: Record<string, unknown>) => ({
  ...invoice,
  status: 'paid',
  amount_paid: 4500,
  amount_remaining: 0,
  paid_out_of_band: false,
})

describe('Stripe Billing sync', () => {
  test('an open Stripe invoice is mirrored; paid with the sandbox crypto rail, it is marked paid out of band in Stripe', async () => {
    const customer = emulator.seedCustomer({
      name: 'Stripe Co',
      email: 'billing@stripe-co.example',
    })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 4500,
      status: 'open',
      number: 'STR-0001',
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored).toMatchObject({
      source: 'stripe',
      invoice_status: 'FINALIZED',
      payment_status: 'PENDING',
      total: '45.00',
      number: 'STR-0001',
    })

    const payment = await sandboxCryptoPayment(mirrored?.id, '45.00')
    await pagePost(ctx, `/sandbox/crypto/${sessionOf(payment.body)}`, 'pay_and_confirm')
    expect((await getPayment(ctx, payment.body.id)).payment_status).toBe('SUCCEEDED')

    const jobs = await ctx.pool.query<{ payload: unknown }>(
      `select payload from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = $1`,
      [STRIPE_PAID_OUT_OF_BAND],
    )
    const job = jobs.rows.find((row) => JSON.stringify(row.payload).includes(String(invoice.id)))
    expect(job).toBeDefined()
    expect(await markStripeInvoicePaid(ctx.deps, job?.payload)).toBe('marked')
    const atStripe = emulator.state.invoices.get(String(invoice.id))
    expect(atStripe?.status).toBe('paid')
    expect(await markStripeInvoicePaid(ctx.deps, job?.payload)).toBe('already_paid')
  })

  test('a charge_automatically Stripe invoice is marked paid when Stripe collects it', async () => {
    const customer = emulator.seedCustomer({ email: 'auto@stripe-co.example' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 2000,
      status: 'open',
      collectionMethod: 'charge_automatically',
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    expect((await mirroredInvoice(ctx, String(invoice.id)))?.payment_status).toBe('PENDING')
    const paid = { ...invoice, status: 'paid', amount_paid: 2000, amount_remaining: 0 }
    emulator.sendEvent('invoice.paid', paid)
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
    // Told as any paid invoice is, once, though Stripe reports it again.
    emulator.sendEvent('invoice.updated', paid)
    await emulator.waitForDeliveries()
    expect(await invoicePaidEvents(String(mirrored?.id))).toBe(1)
  })

  test('product, price and subscription webhooks are replicated', async () => {
    const product = emulator.seedProduct({ name: 'Stripe Pro' })
    emulator.sendEvent('product.created', String(product.id))
    const price = emulator.seedPrice({
      product: String(product.id),
      unitAmount: 1500,
      recurring: { interval: 'month', intervalCount: 1 },
    })
    emulator.sendEvent('price.created', String(price.id))
    const customer = emulator.seedCustomer({})
    const subscription = emulator.seedSubscription({
      customer: String(customer.id),
      items: [{ price: String(price.id) }],
    })
    emulator.sendEvent('customer.subscription.created', String(subscription.id))
    await emulator.waitForDeliveries()
    const rows = await ctx.db
      .selectFrom('stripe_replicas')
      .select(['object_type', 'stripe_id'])
      .execute()
    expect(rows).toEqual(
      expect.arrayContaining([
        { object_type: 'product', stripe_id: product.id },
        { object_type: 'price', stripe_id: price.id },
        { object_type: 'subscription', stripe_id: subscription.id },
      ]),
    )
  })

  test('a product update delivered after a later one leaves the later one in the replica', async () => {
    const product = emulator.seedProduct({ name: 'Starter' })
    emulator.setWebhookDelivery('manual')
    emulator.sendEvent('product.updated', { ...product, name: 'Starter (older)' })
    ctx.clock.advance(5_000)
    emulator.sendEvent('product.updated', { ...product, name: 'Starter (newer)' })
    // Newest first: the older event lands last.
    await emulator.deliverOutbox({ order: 'reverse' })
    emulator.setWebhookDelivery('auto')
    const replica = async () =>
      ctx.db
        .selectFrom('stripe_replicas')
        .select(['data', 'seen_at'])
        .where('object_type', '=', 'product')
        .where('stripe_id', '=', String(product.id))
        .executeTakeFirstOrThrow()
    expect((await replica()).data).toMatchObject({ name: 'Starter (newer)' })
    const outcomes = await ctx.db
      .selectFrom('webhook_events')
      .select('outcome')
      .where('event_type', '=', 'product.updated')
      .orderBy('received_at')
      .execute()
    expect(outcomes.slice(-2).map((e) => e.outcome)).toEqual(['synced', 'stale'])
    // A later event of the same object still lands.
    ctx.clock.advance(5_000)
    emulator.sendEvent('product.updated', { ...product, name: 'Starter (latest)' })
    await emulator.waitForDeliveries()
    expect((await replica()).data).toMatchObject({ name: 'Starter (latest)' })
  })

  test('an event Stripe made after a backfill fetched the object replaces it, even in the same second or with the clocks apart', async () => {
    const replica = async (id: string) =>
      (
        await ctx.db
          .selectFrom('stripe_replicas')
          .select('data')
          .where('stripe_id', '=', id)
          .executeTakeFirstOrThrow()
      ).data
    const apply = (billing: Parameters<typeof applyBillingObject>[2]) =>
      inTransaction(ctx.db, (trx) => applyBillingObject(trx, ctx.scope, billing, ctx.clock))
    // Fetched and applied at .600 of a second; renamed at Stripe at .800 of it (created: that second).
    const second = Math.floor(ctx.clock.now().getTime() / 1000) + 60
    ctx.clock.set(new Date(second * 1000 + 600))
    const fetched = { id: 'prod_backfilled', name: 'Fetched' }
    const renamed = { ...fetched, name: 'Renamed' }
    await apply({ objectType: 'product', object: fetched })
    expect(
      await apply({
        objectType: 'product',
        object: renamed,
        seenAt: second,
      }),
    ).toBe('synced')
    expect(await replica('prod_backfilled')).toMatchObject({ name: 'Renamed' })
    // Applied a few seconds after its page was fetched (or Payrail's clock ahead of Stripe's).
    ctx.clock.advance(3_000)
    const price = { id: 'price_backfilled', active: true }
    const archived = { ...price, active: false }
    await apply({ objectType: 'price', object: price })
    await apply({
      objectType: 'price',
      object: archived,
      seenAt: second + 1,
    })
    expect(await replica('price_backfilled')).toMatchObject({ active: false })
  })

  test('payrail sync stripe backfills every object type, and running it again changes nothing', async () => {
    const product = emulator.seedProduct({ name: 'Backfilled' })
    emulator.seedPrice({ product: String(product.id), unitAmount: 900 })
    const customer = emulator.seedCustomer({ email: 'old@stripe-co.example' })
    for (let i = 0; i < 3; i++)
      emulator.seedInvoice({ customer: String(customer.id), amountDue: 1000 + i, status: 'paid' })
    const progress: string[] = []
    const first = await backfillStripe(ctx.deps, ctx.scope, (type) => progress.push(type))
    expect(first.product).toBeGreaterThanOrEqual(1)
    expect(first.invoice).toBeGreaterThanOrEqual(3)
    expect(progress).toContain('invoice')
    const count = async () =>
      (await ctx.db.selectFrom('stripe_replicas').select('stripe_id').execute()).length
    const invoices = async () =>
      (await ctx.db.selectFrom('invoices').select('id').where('source', '=', 'stripe').execute())
        .length
    const [replicas, mirrored] = [await count(), await invoices()]
    await backfillStripe(ctx.deps, ctx.scope)
    expect(await count()).toBe(replicas)
    expect(await invoices()).toBe(mirrored)
  })
})

describe('Stripe Billing sync: events out of order, and money in flight', () => {
  test('a late invoice.finalized after invoice.voided leaves the mirror VOIDED: no payment is taken on it', async () => {
    const customer = emulator.seedCustomer({ email: 'late@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 3000,
      status: 'open',
    })
    emulator.setWebhookDelivery('manual')
    emulator.sendEvent('invoice.finalized', { ...invoice, status: 'open' })
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.deliverOutbox({ order: 'reverse' })
    emulator.setWebhookDelivery('auto')
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored?.invoice_status).toBe('VOIDED')
    const refused = await ctx.post('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: mirrored?.id,
      payment_method_type: 'OFFLINE',
      amount: '30.00',
      currency: 'usd',
    })
    expect(refused.status).toBeGreaterThanOrEqual(400)
    expect(refused.status).toBeLessThan(500)
  })

  test('money that arrives for a payment in flight when Stripe voided the invoice is recorded, not refused forever', async () => {
    const { invoice, mirrored } = await openMirrored('inflight@example.com')
    const payment = await sandboxCryptoPayment(mirrored.id, '45.00')
    await pagePost(ctx, `/sandbox/crypto/${sessionOf(payment.body)}`, 'pay')
    expect((await getPayment(ctx, payment.body.id)).payment_status).toBe('PROCESSING')
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.waitForDeliveries()
    expect((await mirroredInvoice(ctx, String(invoice.id)))?.invoice_status).toBe('VOIDED')
    await pagePost(ctx, `/sandbox/crypto/${sessionOf(payment.body)}`, 'confirm')
    expect(await getPayment(ctx, payment.body.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '45.00',
    })
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      invoice_status: 'VOIDED',
      amount_paid: '45.00',
    })
  })

  /** Pays the mirrored invoice in full, offline: the payment. */
  async function payOffline(invoiceId: string) {
    const res = await ctx.post<PaymentBody>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: invoiceId,
      payment_method_type: 'OFFLINE',
      amount: '45.00',
      currency: 'usd',
    })
    expect(res.status, res.text).toBe(201)
    return res.body
  }

  test("a Payrail discount code is refused on a Stripe invoice: its amounts are Stripe's", async () => {
    const { mirrored } = await openMirrored('discount@example.com')
    const code = `STRIPE10-${Date.now()}`
    expect((await ctx.post('/v1/discounts', { code, percent_off: 10 })).status).toBe(201)
    const res = await ctx.post<{ error: { code: string; details: Record<string, unknown> } }>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: mirrored.id,
        payment_method_type: 'OFFLINE',
        amount: '40.50',
        currency: 'usd',
        discount_code: code,
      },
    )
    expect(res.status, res.text).toBe(400)
    expect(res.body.error).toMatchObject({
      code: 'validation_error',
      details: { field: 'discount_code' },
    })
    expect(await mirroredInvoice(ctx, mirrored.stripe_invoice_id)).toMatchObject({
      payment_status: 'PENDING',
      amount_remaining: '45.00',
    })
  })

  test("a stale open snapshot reopens nothing, and Stripe's later paid undoes no refund", async () => {
    const { invoice, mirrored } = await openMirrored('refunded@example.com')
    const payment = await payOffline(mirrored.id)
    const refund = (amount: string) =>
      ctx.post(`/v1/payments/${payment.id}/refunds`, { amount }).then((r) => r.status)
    expect(await refund('10.00')).toBe(201)
    // Stripe's own retry, sent before it heard of the payment: still "open".
    emulator.sendEvent('invoice.payment_failed', { ...invoice, status: 'open' })
    await emulator.waitForDeliveries()
    // Once paid, a refund reopens nothing: the second leaves it owing nothing too.
    expect(await refund('10.00')).toBe(201)
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '20.00',
      amount_remaining: '0.00',
    })
    // Marked paid out of band, Stripe reports it paid: the refunds recorded here stay.
    emulator.sendEvent('invoice.paid', {
      ...invoice,
      status: 'paid',
      amount_paid: 4500,
      amount_remaining: 0,
      paid_out_of_band: true,
    })
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_paid: '45.00',
      amount_refunded: '20.00',
      amount_remaining: '0.00',
    })
  })

  test('an invoice Stripe voided after Payrail was paid for it: the job reports it once, and does not retry', async () => {
    const { invoice, mirrored } = await openMirrored('voided@example.com')
    await payOffline(mirrored.id)
    const atStripe = emulator.state.invoices.get(String(invoice.id))
    if (atStripe) atStripe.status = 'void'
    expect(await markStripeInvoicePaid(ctx.deps, outOfBandJob(String(invoice.id)))).toBe('voided')
  })

  test('two first-seen invoices of one new Stripe customer, mirrored at once, make one customer', async () => {
    const customer = emulator.seedCustomer({ email: 'twice@example.com' })
    const invoices = [1, 2].map(() =>
      emulator.seedInvoice({ customer: String(customer.id), amountDue: 1000, status: 'open' }),
    )
    // Two deliveries handled at the same moment, each in its own transaction.
    await Promise.all(
      invoices.map((invoice) =>
        inTransaction(ctx.db, (trx) =>
          applyBillingObject(
            trx,
            ctx.scope,
            { objectType: 'invoice', object: invoice as { id: string } },
            ctx.clock,
          ),
        ),
      ),
    )
    const mirrored = await Promise.all(invoices.map((i) => mirroredInvoice(ctx, String(i.id))))
    expect(mirrored.every((m) => m !== undefined)).toBe(true)
    expect(new Set(mirrored.map((m) => m?.customer_id)).size).toBe(1)
  })

  test('Stripe collecting an invoice Payrail was already paid for shows the customer paid twice: OVERPAID, both amounts', async () => {
    const { invoice, mirrored } = await openMirrored('twice-paid@example.com')
    await payOffline(mirrored.id)
    // Before the out-of-band job ran, Stripe charged the customer's card itself.
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '90.00',
      amount_remaining: '0.00',
    })
    const events = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${mirrored.id}&type=invoice.overpaid`,
    )
    expect(events.body.items).toHaveLength(1)
    // Its duplicate changes nothing more.
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    expect((await mirroredInvoice(ctx, String(invoice.id)))?.amount_paid).toBe('90.00')
  })

  test('Stripe collecting an invoice whose Payrail payment was partly refunded counts the refund once: it keeps what the merchant holds', async () => {
    const { invoice, mirrored } = await openMirrored('twice-paid-refunded@example.com')
    const paid = await payOffline(mirrored.id)
    const refund = await ctx.post(`/v1/payments/${paid.id}/refunds`, { amount: '10.00' })
    expect(refund.status, refund.text).toBe(201)
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    // 45.00 through Payrail and 45.00 at Stripe came in, 10.00 went back: it keeps 80.00.
    // Before, the refund was taken off twice: amount_paid 80.00, keeping 70.00.
    // A refund recorded here is kept, so is its status (as Stripe's later "paid" keeps it).
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_paid: '90.00',
      amount_refunded: '10.00',
      amount_remaining: '0.00',
    })
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    expect((await mirroredInvoice(ctx, String(invoice.id)))?.amount_paid).toBe('90.00')
  })

  test('Stripe collecting an invoice whose Payrail payment was refunded in full: both amounts, paid once, not OVERPAID', async () => {
    const { invoice, mirrored } = await openMirrored('refunded-then-collected@example.com')
    const paid = await payOffline(mirrored.id)
    const refund = await ctx.post(`/v1/payments/${paid.id}/refunds`, {})
    expect(refund.status, refund.text).toBe(201)
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    // Stripe holds 45.00; Payrail's 45.00 went back: kept 45.00, the amount due.
    expect(after).toMatchObject({ amount_paid: '90.00', amount_refunded: '45.00' })
    expect(after?.payment_status).not.toBe('OVERPAID')
  })

  test('marked paid out of band at Stripe, the invoice is paid once: no money moved there', async () => {
    const { invoice, mirrored } = await openMirrored('oob@example.com')
    await payOffline(mirrored.id)
    expect(await markStripeInvoicePaid(ctx.deps, outOfBandJob(String(invoice.id)))).toBe('marked')
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '45.00',
    })
    // Paid by Payrail's payment, told once: Stripe's "paid" after it adds no second event.
    expect(await invoicePaidEvents(mirrored.id)).toBe(1)
  })

  test('a proration invoice with a credit line is mirrored, its lines shown as their net', async () => {
    const customer = emulator.seedCustomer({ email: 'proration@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      status: 'open',
      number: 'STR-PRORATE',
      lines: [
        { description: 'Pro plan', amount: 2000 },
        { description: 'Unused time on Basic', amount: -500 },
      ],
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored).toMatchObject({ total: '15.00', amount_remaining: '15.00' })
    const shown = await ctx.get<{ lines: { description: string; amount: string }[] }>(
      `/v1/invoices/${mirrored?.id}`,
    )
    expect(shown.body.lines).toEqual([
      expect.objectContaining({
        description: 'Stripe invoice STR-PRORATE, net of its credits',
        amount: '15.00',
      }),
    ])
  })

  test('a refund before the invoice was paid in full leaves that much owed, through Stripe snapshots too', async () => {
    const { invoice, mirrored } = await openMirrored('refund-before-paid@example.com')
    const payment = await ctx.post<PaymentBody>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: mirrored.id,
      payment_method_type: 'OFFLINE',
      amount: '20.00',
      currency: 'usd',
    })
    expect(payment.status, payment.text).toBe(201)
    expect(
      (await ctx.post(`/v1/payments/${payment.body.id}/refunds`, { amount: '10.00' })).status,
    ).toBe(201)
    expect((await mirroredInvoice(ctx, String(invoice.id)))?.amount_remaining).toBe('35.00')
    // Stripe's next view of the invoice, still open, changes nothing of it.
    emulator.sendEvent('invoice.updated', String(invoice.id))
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      amount_paid: '20.00',
      amount_refunded: '10.00',
      amount_remaining: '35.00',
    })
  })

  /** How many events of `type` the invoice has. */
  async function eventsOfType(invoiceId: string, type: string) {
    const res = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${invoiceId}&type=${type}`,
    )
    return res.body.items.length
  }

  test("Stripe's paid delivered before its finalized: the mirror is made paid, and invoice.paid is sent once", async () => {
    const customer = emulator.seedCustomer({ email: 'paid-first@example.com' })
    const invoice = emulator.seedInvoice({ customer: String(customer.id), amountDue: 4500 })
    emulator.sendEvent('invoice.paid', collectedByStripe(invoice))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
    // Before, only invoice.created was sent: the merchant never heard it was paid.
    expect(await invoicePaidEvents(String(mirrored?.id))).toBe(1)
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    expect(await invoicePaidEvents(String(mirrored?.id))).toBe(1)
  })

  test('an invoice Stripe voids is voided as Payrail voids its own: owes nothing, dated, invoice.voided', async () => {
    const { invoice, mirrored } = await openMirrored('stripe-voids@example.com')
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    // Before, it said VOIDED yet still owing 45.00, undated, and no event told the merchant.
    expect(after).toMatchObject({ invoice_status: 'VOIDED', amount_remaining: '0.00' })
    expect((after as unknown as { voided_at: string | null }).voided_at).not.toBeNull()
    expect(await eventsOfType(mirrored.id, 'invoice.voided')).toBe(1)
  })

  test('an invoice Stripe marks uncollectible is dated and told as Payrail does its own', async () => {
    const { invoice, mirrored } = await openMirrored('stripe-writes-off@example.com')
    emulator.sendEvent('invoice.marked_uncollectible', { ...invoice, status: 'uncollectible' })
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    expect(after?.invoice_status).toBe('UNCOLLECTIBLE')
    expect(
      (after as unknown as { marked_uncollectible_at: string | null }).marked_uncollectible_at,
    ).not.toBeNull()
    expect(await eventsOfType(mirrored.id, 'invoice.marked_uncollectible')).toBe(1)
  })

  test('a credit note at Stripe after Payrail was paid in full: the customer paid more than is due, OVERPAID', async () => {
    const { invoice, mirrored } = await openMirrored('credit-note@example.com')
    await payOffline(mirrored.id)
    // Before the job marks it paid at Stripe, the merchant credits 15.00 there.
    emulator.sendEvent('invoice.updated', {
      ...invoice,
      total: 3000,
      amount_due: 3000,
      amount_remaining: 3000,
    })
    await emulator.waitForDeliveries()
    // Before, it stayed SUCCEEDED: the 15.00 paid too much was nowhere to be seen.
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      payment_status: 'OVERPAID',
      amount_due: '30.00',
      amount_paid: '45.00',
      amount_remaining: '0.00',
    })
    expect(await eventsOfType(mirrored.id, 'invoice.overpaid')).toBe(1)
  })

  test('payrail sync stripe goes on past an invoice it cannot mirror, and counts it failed', async () => {
    const customer = emulator.seedCustomer({ email: 'backfill-failure@example.com' })
    const now = Math.floor(Date.now() / 1000)
    const older = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 1200,
      number: 'OK-0001',
      created: now + 86_400 - 60,
    })
    // Listed first (newest first); PostgreSQL refuses to store it (a constraint put there for
    // the test stands for any object that cannot be stored).
    const refused = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 1300,
      number: 'FAIL-0001',
      created: now + 86_400,
    })
    await ctx.pool.query(
      "alter table invoices add constraint test_refused check (number is distinct from 'FAIL-0001') not valid",
    )
    let counts: Awaited<ReturnType<typeof backfillStripe>>
    try {
      counts = await backfillStripe(ctx.deps, ctx.scope)
    } finally {
      await ctx.pool.query('alter table invoices drop constraint test_refused')
    }
    // Before, the sync stopped there and mirrored nothing after it.
    expect(counts.failed).toBe(1)
    expect(await mirroredInvoice(ctx, String(refused.id))).toBeUndefined()
    expect(await mirroredInvoice(ctx, String(older.id))).toMatchObject({ amount_due: '12.00' })
  })

  test('a Stripe invoice whose number a Payrail invoice already has is mirrored without it (it was refused on every delivery)', async () => {
    const { mirrored } = await openMirrored('number-owner@example.com')
    await ctx.db
      .updateTable('invoices')
      .set({ number: 'CLASH-0001' })
      .where('id', '=', mirrored.id)
      .execute()
    const customer = emulator.seedCustomer({ email: 'number-clash@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 1300,
      number: 'CLASH-0001',
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      number: null,
      amount_due: '13.00',
    })
  })

  test('a line of 3 for 10.00 is one line of 10.00 naming its quantity (3 × 3.33 made 9.99)', async () => {
    const customer = emulator.seedCustomer({ email: 'thirds@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      lines: [{ amount: 1000, quantity: 3, description: 'Seats' }],
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect((mirrored as unknown as { lines: Record<string, unknown>[] }).lines).toMatchObject([
      { description: 'Seats (× 3)', quantity: 1, unit_amount: '10.00', amount: '10.00' },
    ])
  })

  test('a discounted and taxed invoice shows the discount Stripe gave, not the subtotal less the total', async () => {
    const customer = emulator.seedCustomer({ email: 'taxed@example.com' })
    const invoice = emulator.seedInvoice({ customer: String(customer.id), amountDue: 10000 })
    // 100.00, a 10.00 coupon, 9.00 of tax: 99.00.
    emulator.sendEvent('invoice.finalized', {
      ...invoice,
      subtotal: 10000,
      total_discount_amounts: [{ amount: 1000, discount: 'di_test' }],
      total_taxes: [
        { amount: 900, tax_behavior: 'exclusive', taxability_reason: 'standard_rated' },
      ],
      total: 9900,
      amount_due: 9900,
      amount_remaining: 9900,
    })
    await emulator.waitForDeliveries()
    // Before, it read a 1.00 discount (100.00 - 99.00).
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      subtotal: '100.00',
      total_discount: '10.00',
      total: '99.00',
      amount_due: '99.00',
    })
  })

  test('an invoice of more than 10 lines (Stripe embeds 10) is mirrored with all of them', async () => {
    const customer = emulator.seedCustomer({ email: 'many-lines@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 1000, description: `Seat ${i + 1}` })),
    })
    expect((invoice.lines as { has_more: boolean }).has_more).toBe(true)
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    const lines = (mirrored as unknown as { lines: { description: string; amount: string }[] })
      .lines
    // Before, ten lines adding up to 100.00 on an invoice of 120.00.
    expect(lines.map((l) => l.description)).toEqual(
      Array.from({ length: 12 }, (_, i) => `Seat ${i + 1}`),
    )
    expect(mirrored?.amount_due).toBe('120.00')
  })

  test('a credit note at Stripe after a partial Payrail payment that now covers it: paid (OVERPAID), told, and Stripe asked to mark it paid', async () => {
    const { invoice, mirrored } = await openMirrored('partial-credit@example.com')
    const paid = await ctx.post<PaymentBody>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: mirrored.id,
      payment_method_type: 'OFFLINE',
      amount: '40.00',
      currency: 'usd',
    })
    expect(paid.status, paid.text).toBe(201)
    // The merchant credits 15.00 at Stripe: 30.00 due, Payrail holds 40.00.
    emulator.sendEvent('invoice.updated', {
      ...invoice,
      total: 3000,
      amount_due: 3000,
      amount_remaining: 3000,
    })
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    expect(after).toMatchObject({
      amount_due: '30.00',
      amount_paid: '40.00',
      amount_remaining: '0.00',
    })
    // Paid more than is due: OVERPAID, as with a full payment (it stayed PENDING, owing
    // nothing, and Stripe went on collecting).
    expect(after?.payment_status).toBe('OVERPAID')
    expect(await eventsOfType(mirrored.id, 'invoice.paid')).toBe(1)
    const jobs = await ctx.pool.query(
      `select 1 from graphile_worker._private_jobs where key = $1`,
      [`stripe-oob-${mirrored.id}`],
    )
    expect(jobs.rowCount).toBe(1)
  })

  test("a late, older marked_uncollectible after Stripe's paid does not write the paid invoice off", async () => {
    const { invoice, mirrored } = await openMirrored('late-writeoff@example.com')
    const writtenOff = { ...invoice, status: 'uncollectible' }
    const paid = {
      ...invoice,
      status: 'paid',
      amount_paid: 4500,
      amount_remaining: 0,
      paid_out_of_band: false,
    }
    emulator.sendEvent('invoice.paid', paid)
    await emulator.waitForDeliveries()
    emulator.sendEvent('invoice.marked_uncollectible', writtenOff)
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    // Payrail refuses to write off a paid invoice (markUncollectibleLocked); the mirror wrote
    // it off, and told the merchant so after telling it was paid.
    expect(await eventsOfType(mirrored.id, 'invoice.marked_uncollectible')).toBe(0)
    expect(after?.invoice_status).not.toBe('UNCOLLECTIBLE')
  })

  test('invoice.deleted of a draft with more than 10 lines is accepted: its lines are not read', async () => {
    const customer = emulator.seedCustomer({ email: 'deleted-draft@example.com' })
    const draft = emulator.seedInvoice({
      customer: String(customer.id),
      status: 'draft',
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100, description: `L${i}` })),
    })
    // Stripe deleted the draft: its lines are gone (the id is unknown from then on).
    const deleted = { ...draft, id: 'in_deleted_draft_review2', deleted: true }
    const sent = emulator.sendEvent('invoice.deleted', deleted)
    await emulator.waitForDeliveries()
    const attempts = emulator.deliveries.filter((d) => d.eventId === sent.id)
    expect(attempts.length).toBeGreaterThan(0)
    expect(attempts.at(-1)?.ok).toBe(true)
  })

  test("Stripe's voided delivered before its finalized: the mirror is made VOIDED, and invoice.voided is sent", async () => {
    const customer = emulator.seedCustomer({ email: 'void-first@example.com' })
    const invoice = emulator.seedInvoice({ customer: String(customer.id), amountDue: 4500 })
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored?.invoice_status).toBe('VOIDED')
    expect(await eventsOfType(String(mirrored?.id), 'invoice.voided')).toBe(1)
  })

  test('payrail sync stripe: an invoice whose lines cannot be read is counted failed, and the sync goes on', async () => {
    const customer = emulator.seedCustomer({ email: 'lines-fail@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100, description: `L${i}` })),
    })
    emulator.failNext({
      pathPrefix: `/v1/invoices/${String(invoice.id)}/lines`,
      status: 500,
      count: 10,
    })
    let outcome: unknown
    try {
      outcome = await backfillStripe(ctx.deps, ctx.scope)
    } catch (error) {
      outcome = error
    } finally {
      emulator.clearFaults()
    }
    // An object it cannot mirror is logged, counted failed, and the rest synced (the lines
    // were read outside the per-object guard, and the sync stopped).
    expect(outcome).not.toBeInstanceOf(Error)
    expect((outcome as { failed: number }).failed).toBeGreaterThan(0)
  })
})

describe('Stripe Billing sync: what Payrail cannot hold, and Stripe refusing', () => {
  /** How many `invoice.voided` events the invoice has. */
  async function voidedEvents(invoiceId: string) {
    const res = await ctx.get<{ items: unknown[] }>(
      `/v1/events?object_id=${invoiceId}&type=invoice.voided`,
    )
    return res.body.items.length
  }

  test('a metered line past what a Payrail line holds (3,000,000,000 free API calls) is one line naming its quantity, accepted', async () => {
    const customer = emulator.seedCustomer({ email: 'metered@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      status: 'open',
      lines: [
        { description: 'Base plan', amount: 2000, quantity: 1 },
        { description: 'API calls (free tier)', amount: 0, quantity: 3_000_000_000 },
      ],
    })
    const sent = emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    // Before, PostgreSQL refused the quantity (an integer): a 400 on every delivery.
    const attempts = emulator.deliveries.filter((d) => d.eventId === sent.id)
    expect(attempts.map((a) => a.status)).toEqual([200])
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect((mirrored as unknown as { lines: Record<string, unknown>[] }).lines).toMatchObject([
      { description: 'Base plan', quantity: 1, unit_amount: '20.00', amount: '20.00' },
      {
        description: 'API calls (free tier) (× 3000000000)',
        quantity: 1,
        unit_amount: '0.00',
        amount: '0.00',
      },
    ])
    expect(mirrored?.amount_due).toBe('20.00')
  })

  test('an older invoice event delivered after a newer one is recorded stale, and the newer replica kept', async () => {
    const customer = emulator.seedCustomer({ email: 'stale-invoice@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 4500,
      status: 'open',
    })
    emulator.setWebhookDelivery('manual')
    const older = emulator.sendEvent('invoice.finalized', { ...invoice, status: 'open' })
    ctx.clock.advance(5_000)
    const newer = emulator.sendEvent('invoice.updated', {
      ...invoice,
      status: 'open',
      description: 'newer',
    })
    await emulator.deliverOutbox({ order: 'reverse' })
    emulator.setWebhookDelivery('auto')
    const outcomes = await ctx.db
      .selectFrom('webhook_events')
      .select(['event_id', 'outcome'])
      .where('event_id', 'in', [String(older.id), String(newer.id)])
      .execute()
    // Before, an invoice's event read `synced` whether or not its replica was kept.
    expect(Object.fromEntries(outcomes.map((o) => [o.event_id, o.outcome]))).toEqual({
      [String(newer.id)]: 'synced',
      [String(older.id)]: 'stale',
    })
    const replica = await ctx.db
      .selectFrom('stripe_replicas')
      .select('data')
      .where('stripe_id', '=', String(invoice.id))
      .executeTakeFirstOrThrow()
    expect(replica.data).toMatchObject({ description: 'newer' })
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      invoice_status: 'FINALIZED',
      amount_due: '45.00',
    })
  })

  /**
   * `payrail sync stripe` with Stripe answering 429 to the next `refusals` price-list pages,
   * and an open invoice to sync after the prices: the sync's counts, its waits, the invoice.
   */
  async function syncWithPricesRefused(refusals: number, email: string, amountDue: number) {
    const customer = emulator.seedCustomer({ email })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue,
      status: 'open',
    })
    const waits: number[] = []
    emulator.failNext({ status: 429, count: refusals, pathPrefix: '/v1/prices', method: 'GET' })
    try {
      const counts = await backfillStripe(ctx.deps, ctx.scope, undefined, {
        sleep: async (ms) => {
          waits.push(ms)
        },
      })
      return { counts, waits, invoiceId: String(invoice.id) }
    } finally {
      emulator.clearFaults()
    }
  }

  test('payrail sync stripe asks again for a rate-limited list page (429), with backoff, and syncs all', async () => {
    const { counts, waits, invoiceId } = await syncWithPricesRefused(
      2,
      'after-429@example.com',
      2500,
    )
    // Before, the 429 stopped the sync at the prices: no invoice after them was synced.
    expect(waits).toEqual([1_000, 2_000])
    expect(counts.failed).toBe(0)
    expect(counts.price).toBe(emulator.state.prices.size)
    expect(await mirroredInvoice(ctx, invoiceId)).toMatchObject({ amount_due: '25.00' })
  })

  test('payrail sync stripe: a list Stripe keeps refusing is counted failed, and the next types are synced', async () => {
    const { counts, waits, invoiceId } = await syncWithPricesRefused(
      10,
      'prices-refused@example.com',
      2600,
    )
    // Three more attempts, then the prices are given up: one failure (the command exits 1).
    expect(waits).toEqual([1_000, 2_000, 4_000])
    expect(counts.failed).toBe(1)
    expect(counts.price).toBe(0)
    expect(counts.product).toBe(emulator.state.products.size)
    expect(await mirroredInvoice(ctx, invoiceId)).toMatchObject({ amount_due: '26.00' })
  })

  test('voiding or writing off a mirrored invoice in Payrail is 409: it is done in Stripe, and the mirror follows', async () => {
    const { invoice, mirrored } = await openMirrored('void-in-payrail@example.com')
    for (const action of ['void', 'mark_uncollectible']) {
      const res = await ctx.post<{
        error: { code: string; message: string; details: Record<string, unknown> }
      }>(`/v1/invoices/${mirrored.id}/${action}`, {})
      // Before, the void went through here while Stripe went on collecting the invoice.
      expect(res.status, res.text).toBe(409)
      expect(res.body.error).toMatchObject({
        code: 'conflict',
        details: { invoice_id: mirrored.id, stripe_invoice_id: String(invoice.id) },
      })
      expect(res.body.error.message).toMatch(/in Stripe/)
    }
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      invoice_status: 'FINALIZED',
      amount_remaining: '45.00',
    })
    expect(await voidedEvents(mirrored.id)).toBe(0)
    // Stripe's own void still voids the mirror.
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.waitForDeliveries()
    expect(await mirroredInvoice(ctx, String(invoice.id))).toMatchObject({
      invoice_status: 'VOIDED',
      amount_remaining: '0.00',
    })
    expect(await voidedEvents(mirrored.id)).toBe(1)
  })

  test('an invoice event whose lines Stripe refuses to list (key revoked: 401) is 502 gateway_error, for Stripe to send again', async () => {
    const customer = emulator.seedCustomer({ email: 'revoked-key@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100, description: `L${i}` })),
    })
    const connections = await ctx.get<{ items: { id: string; gateway: string }[] }>(
      '/v1/gateway_connections',
    )
    const stripe = connections.body.items.find((c) => c.gateway === 'stripe')
    const setKey = async (secretKey: string) => {
      const res = await ctx.patch(`/v1/gateway_connections/${stripe?.id}`, {
        credentials: { secret_key: secretKey, webhook_secret: emulator.webhookSecret },
      })
      expect(res.status, res.text).toBe(200)
    }
    await setKey('sk_test_revoked')
    const payload = JSON.stringify({
      id: 'evt_revoked_key_lines',
      object: 'event',
      api_version: '2024-06-20',
      created: Math.floor(ctx.clock.now().getTime() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type: 'invoice.finalized',
      data: { object: { ...invoice, status: 'open' } },
    })
    let res: Awaited<ReturnType<typeof ctx.app.inject>>
    try {
      res = await ctx.app.inject({
        method: 'POST',
        url: stripeWebhookPath(ctx),
        headers: {
          'content-type': 'application/json',
          'stripe-signature': signatureHeader(
            payload,
            emulator.webhookSecret,
            Math.floor(ctx.clock.now().getTime() / 1000),
          ),
        },
        payload,
      })
    } finally {
      await setKey(emulator.secretKey)
    }
    // Before, Stripe's 401 to Payrail was answered as the sender's 400 validation_error.
    expect(res.statusCode, res.body).toBe(502)
    expect(JSON.parse(res.body).error.code).toBe('gateway_error')
    expect(await mirroredInvoice(ctx, String(invoice.id))).toBeUndefined()
  })
})
