import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { adminAccess } from '../../src/core/principal.ts'
import { sandboxGateway } from '../../src/gateways/sandbox/sandbox.gateway.ts'
import {
  chargeDueInvoices,
  MAX_AUTOMATIC_ATTEMPTS,
  RETRY_AFTER_MS,
  UNKNOWN_OUTCOME_RETRY_AFTER_MS,
} from '../../src/jobs/tasks/charge-due-invoices.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import {
  OPEN_PAGE_GRACE_MS,
  payInvoiceAutomatically,
  retryAfterLateFailure,
} from '../../src/modules/payments/automatic.ts'
import { findPayment } from '../../src/modules/payments/repository.ts'
import { renewDueSubscriptions } from '../../src/modules/subscriptions/service.ts'
import {
  createCustomer,
  eventsOf,
  finalizedInvoice,
  type List,
  payInvoice,
  recurringPrice,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createSandboxLink,
  customerWithCard,
  getInvoice,
  getPayment,
  type PaymentBody,
  postSandboxWebhook,
  sandboxEventBody,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

/**
 * A fault of the database (a killed connection) under one step of the automatic charge,
 * before any payment exists: `findCustomerPaymentMethod` reads the customer's default card in
 * `payInvoiceAutomatically`. Off unless a test sets `dbFault.failNext`.
 */
const dbFault = vi.hoisted(() => ({ failNext: false }))
vi.mock('../../src/modules/payment-methods/service.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/modules/payment-methods/service.ts')>()
  return {
    ...real,
    findCustomerPaymentMethod: (...args: Parameters<typeof real.findCustomerPaymentMethod>) => {
      if (!dbFault.failNext) return real.findCustomerPaymentMethod(...args)
      dbFault.failNext = false
      // What pg throws when the connection is killed under a query.
      return Promise.reject(new Error('Connection terminated unexpectedly'))
    },
  }
})

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

const payments = async (invoiceId: string) =>
  (await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoiceId}&sort=created_at`))
    .body.items

describe('charge_due_invoices', () => {
  test('charges the default card of a queued invoice off-session', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      next_payment_attempt: null,
    })
    const [payment] = await payments(invoice.id)
    expect(payment).toMatchObject({
      payment_method_type: 'CARD',
      payment_status: 'SUCCEEDED',
      metadata: { automatic_charge: 'true' },
    })
    // Claimed once: running again charges nothing.
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
  })

  test("the automatic-charge mark is Payrail's: a request cannot set or remove it, so a forged one cannot stand in for the charge", async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`, {})
    // Before, a customer's unprocessed crypto payment marked so was taken by the job for its
    // own charge: the job opened its page and the card was never charged.
    const forged = await ctx.post<ErrorBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.id,
        currency: 'usd',
        amount: invoice.amount_due,
        payment_method_type: 'CRYPTO',
        payment_gateway: 'sandbox',
        process_payment: false,
        metadata: { automatic_charge: 'true' },
      },
      { key: token.body.token },
    )
    expect(forged.status, forged.text).toBe(400)
    expect(forged.body.error.details).toMatchObject({ field: 'metadata.automatic_charge' })
    expect(await payments(invoice.id)).toEqual([])
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    const [charge] = await payments(invoice.id)
    expect(charge).toMatchObject({ payment_method_type: 'CARD', payment_status: 'SUCCEEDED' })
    // Nor can the mark be taken off the job's charge (its attempts are counted by it).
    for (const metadata of [{ automatic_charge: '' }, { automatic_charge: 'false' }]) {
      const removed = await ctx.patch<ErrorBody>(`/v1/payments/${charge?.id}`, { metadata })
      expect(removed.status, removed.text).toBe(400)
    }
    expect((await getPayment(ctx, String(charge?.id))).metadata).toEqual({
      automatic_charge: 'true',
    })
  })

  test("the automatic charge that cannot run (its card's gateway disconnected) withdraws none of the customer's open pages", async () => {
    const other = await ctx.createTenantFixture('Disconnected default')
    const key = other.key
    const scope = { tenantId: other.tenant.id, environmentId: other.test.id }
    const connection = await ctx.post<{ id: string }>(
      '/v1/gateway_connections',
      {
        gateway: 'stripe',
        credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
        settings: { base_url: 'http://127.0.0.1:9' },
      },
      { key },
    )
    expect(connection.status).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'D', email: 'd@example.com', auto_pay: true },
      { key },
    )
    const method = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.body.id,
      gateway: 'stripe',
      gatewayPaymentMethodId: 'pm_stripe_1',
      last4: '4242',
    })
    expect(
      (
        await ctx.patch(
          `/v1/customers/${customer.body.id}`,
          { default_payment_method_id: method.id },
          { key },
        )
      ).status,
    ).toBe(200)
    expect(
      (await ctx.delete(`/v1/gateway_connections/${connection.body.id}`, { key })).status,
    ).toBe(200)
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        collection_method: 'charge_automatically',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      },
      { key },
    )
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })
    const link = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        currency: 'usd',
        amount: '10.00',
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'sandbox',
      },
      { key },
    )
    expect(link.body.payment_status).toBe('PENDING')
    ctx.clock.advance(OPEN_PAGE_GRACE_MS + 60_000)
    const outcome = await payInvoiceAutomatically(ctx.deps, adminAccess(scope), invoice.body.id, {
      cause: 'job',
      causeId: 'test',
    }).then(
      () => 'charged',
      (error: Error) => error.message,
    )
    // Before, the page was withdrawn (CANCELLED), then the charge failed: the invoice had neither.
    expect(outcome).toMatch(/stripe gateway is not connected/)
    const shown = await ctx.get<PaymentBody>(`/v1/payments/${link.body.id}`, { key })
    expect(shown.body.payment_status).toBe('PENDING')
    // So does a retry of an earlier automatic charge through that gateway (FAILED by an error,
    // asked again on the same payment), which withdrew the pages first too.
    await ctx.db
      .insertInto('payments')
      .values({
        ...(await ctx.db
          .selectFrom('payments')
          .selectAll()
          .where('id', '=', link.body.id)
          .executeTakeFirstOrThrow()),
        id: `pay_retry_${link.body.id}`,
        human_id: 'RETRY1',
        payment_method_type: 'CARD',
        payment_gateway: 'stripe',
        payment_method_id: method.id,
        payment_status: 'FAILED',
        status_code: 'api_error',
        gateway_tracking_id: null,
        gateway_payment_id: null,
        payment_url: null,
        metadata: JSON.stringify({ automatic_charge: 'true' }),
        created_at: ctx.clock.now(),
      })
      .execute()
    await ctx.db
      .insertInto('payment_allocations')
      .values({
        payment_id: `pay_retry_${link.body.id}`,
        invoice_id: invoice.body.id,
        position: 0,
        amount: 1000n,
      })
      .execute()
    const retried = await payInvoiceAutomatically(ctx.deps, adminAccess(scope), invoice.body.id, {
      cause: 'job',
      causeId: 'test',
    }).then(
      () => 'charged',
      (error: Error) => error.message,
    )
    expect(retried).toMatch(/stripe gateway is not connected/)
    expect(
      (await ctx.get<PaymentBody>(`/v1/payments/${link.body.id}`, { key })).body,
    ).toMatchObject({ payment_status: 'PENDING' })
  })

  test('a customer who turned automatic payment off since is not charged', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    expect((await ctx.patch(`/v1/customers/${customer.id}`, { auto_pay: false })).status).toBe(200)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect(await payments(invoice.id)).toEqual([])
    // Turned on again, the queued charge runs.
    expect((await ctx.patch(`/v1/customers/${customer.id}`, { auto_pay: true })).status).toBe(200)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
  })

  test('a declined card is retried three days later, up to the limit, then left to the customer', async () => {
    const customer = await customerWithCard(ctx, '4000000000000002')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    for (let attempt = 1; attempt <= MAX_AUTOMATIC_ATTEMPTS; attempt++) {
      expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
      const shown = await getInvoice(ctx, invoice.id)
      if (attempt < MAX_AUTOMATIC_ATTEMPTS) {
        expect(shown.next_payment_attempt).toBe(
          new Date(ctx.clock.now().getTime() + RETRY_AFTER_MS).toISOString(),
        )
        expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
        ctx.clock.advance(RETRY_AFTER_MS)
      } else {
        expect(shown.next_payment_attempt).toBeNull()
      }
    }
    const attempts = await payments(invoice.id)
    expect(attempts).toHaveLength(MAX_AUTOMATIC_ATTEMPTS)
    expect(
      attempts.every((p) => p.payment_status === 'FAILED' && p.status_code === 'card_declined'),
    ).toBe(true)
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('FAILED')
  })

  test('invoices not yet due, paid or voided are not charged', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const later = await finalizedInvoice(ctx, customer.id)
    await queueAutomaticPayment(ctx.db, later.id, new Date(ctx.clock.now().getTime() + 60_000))
    const voided = await finalizedInvoice(ctx, customer.id)
    await queueAutomaticPayment(ctx.db, voided.id, ctx.clock.now())
    await ctx.post(`/v1/invoices/${voided.id}/void`)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    ctx.clock.advance(60_000)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
  })

  /** A customer with a default card, an invoice of theirs charged automatically, and a sandbox link on it. */
  async function invoiceWithOpenLink(card: string | null = '4242424242424242') {
    const customer = card
      ? await customerWithCard(ctx, card)
      : await createCustomer(ctx, { auto_pay: true })
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    const link = (await createSandboxLink(ctx, invoice)).body
    expect(link.payment_status).toBe('PENDING')
    return { invoice, link }
  }

  /** A day later the charge runs and fails: the page is left open, the only payment. */
  async function expectNotChargedBeside(invoiceId: string, linkId: string) {
    ctx.clock.advance(OPEN_PAGE_GRACE_MS)
    await queueAutomaticPayment(ctx.db, invoiceId, ctx.clock.now())
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(await payments(invoiceId)).toEqual([
      expect.objectContaining({ id: linkId, payment_status: 'PENDING' }),
    ])
  }

  const inAnHour = () =>
    new Date(ctx.clock.now().getTime() + UNKNOWN_OUTCOME_RETRY_AFTER_MS).toISOString()

  test('a checkout page opened in the last day defers the charge an hour, not counted as an attempt: the customer may be paying', async () => {
    const { invoice, link } = await invoiceWithOpenLink()
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(await payments(invoice.id)).toEqual([
      expect.objectContaining({ id: link.id, payment_status: 'PENDING' }),
    ])
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(inAnHour())
    // The customer pays the page meanwhile: the next run has nothing to charge.
    expect((await submitCard(ctx, sessionOf(link), '4242424242424242')).statusCode).toBe(200)
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect(await payments(invoice.id)).toEqual([
      expect.objectContaining({ id: link.id, payment_status: 'SUCCEEDED' }),
    ])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('an older open checkout page is withdrawn before the card is charged: the invoice is paid once', async () => {
    const { invoice, link } = await invoiceWithOpenLink()
    ctx.clock.advance(OPEN_PAGE_GRACE_MS)
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(await getPayment(ctx, link.id)).toMatchObject({ payment_status: 'CANCELLED' })
    // The customer who comes back to the page cannot pay it any more.
    expect((await submitCard(ctx, sessionOf(link), '4242424242424242')).statusCode).toBe(409)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect((await payments(invoice.id)).map((p) => p.payment_status).sort()).toEqual([
      'CANCELLED',
      'SUCCEEDED',
    ])
  })

  test('an older page whose provider cannot be reached to withdraw it defers the charge an hour, not counted', async () => {
    const { invoice, link } = await invoiceWithOpenLink()
    const cancel = vi
      .spyOn(sandboxGateway, 'cancel')
      .mockRejectedValueOnce(new Error('socket hang up'))
    try {
      await expectNotChargedBeside(invoice.id, link.id)
    } finally {
      cancel.mockRestore()
    }
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(inAnHour())
    // Reached an hour later, the page is withdrawn and the card charged.
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(await getPayment(ctx, link.id)).toMatchObject({ payment_status: 'CANCELLED' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('without a default card the open page is left alone: the charge cannot run, and the customer can still pay', async () => {
    const { invoice, link } = await invoiceWithOpenLink(null)
    await expectNotChargedBeside(invoice.id, link.id)
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBeNull()
  })

  // docs/payments.md: "invoice no longer payable | unchanged, and no page withdrawn | none".
  // Before, the page was withdrawn (CANCELLED) first, and only then was the charge refused.
  test('an invoice past its payment window has its open page left alone: the charge cannot run', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
      payment_window_days: 2,
    })
    const link = await createSandboxLink(ctx, invoice)
    expect(link.status, link.text).toBe(201)
    ctx.clock.advance(3 * 24 * 60 * 60 * 1000)
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(await payments(invoice.id)).toEqual([
      expect.objectContaining({ id: link.body.id, payment_status: 'PENDING' }),
    ])
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBeNull()
  })

  // docs/payments.md: an unknown outcome, or a worker that died, is retried an hour later; only
  // a definitive answer (no default card, its gateway not connected, the invoice no longer
  // payable) ends the charges. Before, a fault thrown before any payment existed (a killed
  // database connection) was taken for one: `next_payment_attempt` was cleared, no attempt was
  // counted, and the invoice was never charged again.
  test('a database fault before the charge is made is retried an hour later, not counted as an attempt', async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id, {
      collection_method: 'charge_automatically',
    })
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    dbFault.failNext = true
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(await payments(invoice.id)).toEqual([])
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(inAnHour())
    // The database back, the next run charges the card.
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      next_payment_attempt: null,
    })
    expect(await payments(invoice.id)).toEqual([
      expect.objectContaining({ payment_status: 'SUCCEEDED', attempts: [expect.anything()] }),
    ])
  })

  test('an older page the customer has just paid keeps the card from being charged; its report pays the invoice, once', async () => {
    const { invoice, link } = await invoiceWithOpenLink()
    // Paid at the provider; its report is still on the way.
    await ctx.db
      .updateTable('sandbox_sessions')
      .set({ status: 'complete', amount_received: 10000n })
      .where('id', '=', sessionOf(link))
      .execute()
    await expectNotChargedBeside(invoice.id, link.id)
    // Left to the page: no further automatic attempt beside it.
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBeNull()
    const report = await postSandboxWebhook(
      ctx,
      sandboxEventBody(`sbevt_paid_${link.id}`, 'checkout.completed', {
        payment_id: link.id,
        session_id: sessionOf(link),
        amount: 10000,
        amount_received: 10000,
      }),
    )
    expect(report.statusCode, report.body).toBe(200)
    expect(await payments(invoice.id)).toEqual([
      expect.objectContaining({ id: link.id, payment_status: 'SUCCEEDED' }),
    ])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('events of the automatic charge', () => {
  /** A renewal of a 30.00/month subscription whose customer's card is declined, queued for the charge. */
  async function declinedRenewal() {
    const customer = await customerWithCard(ctx, '4000000000000002')
    const order = await ctx.post<{ invoice_id: string; subscription_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: await recurringPrice(ctx, '30.00'),
    })
    expect(order.status, order.text).toBe(201)
    await payInvoice(ctx, order.body.invoice_id, 3000n)
    const subscription = `/v1/subscriptions/${order.body.subscription_id}`
    const { current_period_end } = (await ctx.get<{ current_period_end: string }>(subscription))
      .body
    ctx.clock.set(new Date(current_period_end))
    await renewDueSubscriptions({ db: ctx.db, clock: ctx.clock, logger: ctx.deps.logger })
    const renewed = await ctx.get<{ latest_invoice_id: string }>(subscription)
    return { subscription, renewalId: renewed.body.latest_invoice_id }
  }

  /** The invoice's latest event is an `invoice.updated` carrying it as GET shows it. */
  async function expectLatestEventShows(invoiceId: string) {
    const shown = await getInvoice(ctx, invoiceId)
    const [latest] = await eventsOf(ctx, invoiceId)
    expect(latest?.type).toBe('invoice.updated')
    expect(latest?.data.object).toEqual(shown)
    return shown
  }

  // `next_payment_attempt` is "when the next automatic charge is due; null when none is
  // queued" (docs/billing.md). The job queued the retry, or stopped the charges, without an
  // event: the invoice's last event (invoice.updated, FAILED) showed the job's one-hour claim,
  // and a merchant mailing the customer from it announced a retry "in an hour", or one after
  // the last attempt that never comes.
  test('after each declined attempt the latest invoice event shows the real next attempt: three days later, then none', async () => {
    const { renewalId } = await declinedRenewal()
    for (let attempt = 1; attempt <= MAX_AUTOMATIC_ATTEMPTS; attempt++) {
      expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
      const shown = await expectLatestEventShows(renewalId)
      expect(shown.next_payment_attempt).toBe(
        attempt < MAX_AUTOMATIC_ATTEMPTS
          ? new Date(ctx.clock.now().getTime() + RETRY_AFTER_MS).toISOString()
          : null,
      )
      ctx.clock.advance(RETRY_AFTER_MS)
    }
  })

  test('cancelling the subscription clears the queued retry, and the latest invoice event says so', async () => {
    const { subscription, renewalId } = await declinedRenewal()
    // (Other tests' renewals may come due with it.)
    await chargeDueInvoices(ctx.deps)
    expect((await getInvoice(ctx, renewalId)).next_payment_attempt).toBe(
      new Date(ctx.clock.now().getTime() + RETRY_AFTER_MS).toISOString(),
    )
    expect((await ctx.post(`${subscription}/cancel`)).status).toBe(200)
    const shown = await expectLatestEventShows(renewalId)
    expect(shown).toMatchObject({ invoice_status: 'FINALIZED', next_payment_attempt: null })
  })

  // docs/billing.md: a cancelled subscription's invoices are no longer charged, and
  // `next_payment_attempt` is null on them. Before, a cancel made while the renewal's card was
  // being declined cleared it, then the job's decline handling queued a retry three days later
  // over it and announced it (`invoice.updated`): a charge the job would skip, shown for good.
  test('the subscription cancelled while its renewal is being declined: no retry is queued, and the latest event says so', async () => {
    const { subscription, renewalId } = await declinedRenewal()
    const charge = sandboxGateway.chargeSavedMethod?.bind(sandboxGateway)
    const spy = vi
      .spyOn(sandboxGateway, 'chargeSavedMethod')
      .mockImplementation(async (gatewayCtx, request, method) => {
        // The merchant cancels while the card is being charged (and declined).
        if (request.payment.destination_id === renewalId)
          expect((await ctx.post(`${subscription}/cancel`)).status).toBe(200)
        return charge!(gatewayCtx, request, method)
      })
    try {
      // (Other tests' renewals may come due with it.)
      await chargeDueInvoices(ctx.deps)
    } finally {
      spy.mockRestore()
    }
    expect((await ctx.get<{ status: string }>(subscription)).body.status).toBe('canceled')
    expect(await payments(renewalId)).toEqual([
      expect.objectContaining({ payment_status: 'FAILED', status_code: 'card_declined' }),
    ])
    const shown = await expectLatestEventShows(renewalId)
    expect(shown.next_payment_attempt).toBeNull()
    // Three days later nothing is charged.
    ctx.clock.advance(RETRY_AFTER_MS)
    await chargeDueInvoices(ctx.deps)
    expect(await payments(renewalId)).toHaveLength(1)
  })

  // The provider's report that an automatic charge failed late queues its retry
  // (`retryAfterLateFailure`): not on a cancelled subscription's invoice, whose charges ended.
  test("a late failure report of a cancelled subscription's charge queues no retry", async () => {
    const { subscription, renewalId } = await declinedRenewal()
    await chargeDueInvoices(ctx.deps)
    expect((await ctx.post(`${subscription}/cancel`)).status).toBe(200)
    const eventsBefore = await eventsOf(ctx, renewalId)
    const [declined] = await payments(renewalId)
    const failed = await findPayment(ctx.db, ctx.main.test.id, String(declined?.id))
    const access = adminAccess({ tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id })
    await retryAfterLateFailure(ctx.db, ctx.deps, access, failed!)
    expect((await getInvoice(ctx, renewalId)).next_payment_attempt).toBeNull()
    expect(await eventsOf(ctx, renewalId)).toEqual(eventsBefore)
  })
})

describe('automatic charge of the first invoice of a subscription the merchant ended', () => {
  // "invoice no longer payable | unchanged, and no page withdrawn" (docs/payments.md): an
  // incomplete subscription whose cancel at its period end has come, the renewal job behind,
  // has a first invoice nothing may pay. The charge withdrew the customer's page, then was
  // refused.
  test("the charge is refused, and the customer's open page is left alone", async () => {
    const customer = await customerWithCard(ctx, '4242424242424242')
    const order = await ctx.post<{ invoice_id: string; subscription_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: await recurringPrice(ctx, '20.00'),
    })
    expect(order.status, order.text).toBe(201)
    const patched = await ctx.patch<{ status: string; current_period_end: string }>(
      `/v1/subscriptions/${order.body.subscription_id}`,
      { cancel_at_period_end: true },
    )
    expect(patched.body.status).toBe('incomplete')
    const invoice = await getInvoice(ctx, order.body.invoice_id)
    const link = await createSandboxLink(ctx, invoice)
    expect(link.body.payment_status).toBe('PENDING')
    ctx.clock.set(new Date(new Date(patched.body.current_period_end).getTime() + 60_000))
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    const run = await chargeDueInvoices(ctx.deps)
    expect(run.charged).toBe(0)
    const { rows } = await ctx.pool.query<{ n: number }>(
      'select count(*)::int as n from payments where $1 = any(invoice_ids) and id <> $2',
      [invoice.id, link.body.id],
    )
    expect(rows[0]?.n).toBe(0)
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('PENDING')
  })
})
