import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest'
import { adminAccess } from '../../src/core/principal.ts'
import type { Payment } from '../../src/db/database.ts'
import { stripeGateway } from '../../src/gateways/stripe/stripe.gateway.ts'
import {
  CHARGE_DUE_INVOICES,
  chargeDueInvoices,
  MAX_AUTOMATIC_ATTEMPTS,
  RETRY_AFTER_MS,
  UNKNOWN_OUTCOME_RETRY_AFTER_MS,
} from '../../src/jobs/tasks/charge-due-invoices.ts'
import {
  RESOLVE_LOST_CHARGES,
  resolveLostCharges,
} from '../../src/jobs/tasks/resolve-lost-charges.ts'
import { claimDueAutomaticCharges } from '../../src/modules/invoices/repository.ts'
import { queueAutomaticPayment } from '../../src/modules/invoices/service.ts'
import { payInvoiceAutomatically } from '../../src/modules/payments/automatic.ts'
import { findPayment } from '../../src/modules/payments/repository.ts'
import {
  processPayment,
  UNKNOWN_OUTCOME_RETRY_WINDOW_MS,
} from '../../src/modules/payments/service.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import type { TestCardAlias } from '../emulators/stripe/test-cards.ts'
import { createCustomer, finalizedInvoice, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { getInvoice, getPayment, type PaymentBody } from '../payments-helpers.ts'
import { connectStripeEmulator, saveStripeCard } from '../stripe-helpers.ts'

/**
 * Automatic charges through the Stripe SDK and the emulator, with the faults a real
 * network has: an answer lost after Stripe took the money, a 5xx before it did, a
 * worker that dies mid-charge. Whatever happens, the customer is charged at most once.
 */

let ctx: TestContext
let emulator: StripeEmulator

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  emulator = await connectStripeEmulator(ctx)
})
afterEach(async () => {
  emulator.clearFaults()
  emulator.setWebhookDelivery('auto')
  await emulator.deliverOutbox()
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

/** An `auto_pay` customer whose default card is a Stripe test card, and a due 100.00 usd invoice of theirs. */
async function dueInvoice(card: TestCardAlias) {
  const customer = await createCustomer(ctx, { auto_pay: true })
  const { paymentMethodId, stripeCustomerId } = await saveStripeCard(
    ctx,
    emulator,
    customer.id,
    card,
    'auto@example.com',
  )
  const patched = await ctx.patch(`/v1/customers/${customer.id}`, {
    default_payment_method_id: paymentMethodId,
  })
  expect(patched.status, patched.text).toBe(200)
  const invoice = await finalizedInvoice(ctx, customer.id, {
    collection_method: 'charge_automatically',
  })
  await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
  return { invoice, stripeCustomerId }
}

/** What Stripe actually took from the customer: their succeeded charges. */
const chargesTaken = (stripeCustomerId: string) =>
  [...emulator.state.charges.values()].filter(
    (charge) => charge.customer === stripeCustomerId && charge.status === 'succeeded',
  )

const paymentsOf = async (invoiceId: string) =>
  (await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoiceId}&sort=created_at`))
    .body.items

const inMs = (ms: number) => new Date(ctx.clock.now().getTime() + ms).toISOString()

/** A manual Stripe CARD payment of the whole 100.00 of an invoice. */
function cardPayment(invoiceId: string) {
  return ctx.post<{ error: { code: string; details: { payment_id: string; retryable: boolean } } }>(
    '/v1/payments',
    {
      destination_type: 'INVOICE',
      destination_id: invoiceId,
      amount: '100.00',
      currency: 'usd',
      payment_method_type: 'CARD',
      payment_gateway: 'stripe',
    },
  )
}

/** The automatic charge of an invoice, as the job runs it, whose call gets no answer. */
async function expectChargeUnanswered(invoiceId: string) {
  await expect(
    payInvoiceAutomatically(
      ctx.deps,
      adminAccess({ tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id }),
      invoiceId,
      { cause: 'job', causeId: CHARGE_DUE_INVOICES },
    ),
  ).rejects.toMatchObject({ code: 'gateway_error' })
}

/** Stripe confirms the PaymentIntent, but every answer is lost (stripe-node's own retries too). */
function loseEveryAnswer() {
  emulator.timeoutNext({
    count: 3,
    mode: 'destroy',
    pathPrefix: '/v1/payment_intents',
    afterProcessing: true,
  })
}

describe('charge_due_invoices when the outcome of a charge is unknown', () => {
  test('Stripe took the money but the answer was lost: the retry replays that charge, never takes a second', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    // Not dropped: asked again soon, well inside the time Stripe keeps the idempotency key.
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    const [pending] = await paymentsOf(invoice.id)
    expect(pending).toMatchObject({ payment_status: 'PROCESSING', amount_paid: '0.00' })

    emulator.clearFaults()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })

    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    const payments = await paymentsOf(invoice.id)
    expect(payments).toHaveLength(1)
    expect(payments[0]).toMatchObject({
      id: pending?.id,
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
      next_payment_attempt: null,
    })
    // The webhooks of that one charge arrive late and change nothing.
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('while the outcome is unknown, the invoice takes no other payment that could pay it twice', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    const [pending] = await paymentsOf(invoice.id)
    expect(pending?.payment_status).toBe('PROCESSING')

    for (const method of [
      { payment_method_type: 'PAYMENT_LINK', payment_gateway: 'sandbox' },
      { payment_method_type: 'OFFLINE' },
    ]) {
      const res = await ctx.post<{ error: { code: string; details: Record<string, unknown> } }>(
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: invoice.id,
          amount: '100.00',
          currency: 'usd',
          ...method,
        },
      )
      expect(res.status, res.text).toBe(409)
      expect(res.body.error.code).toBe('conflict')
      expect(res.body.error.details).toMatchObject({ invoice_id: invoice.id, still_owed: '0.00' })
    }
    // Refused before anything was written: the charge in flight is the invoice's only payment.
    expect((await paymentsOf(invoice.id)).map((p) => p.id)).toEqual([pending?.id])

    emulator.clearFaults()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('an invoice queued again while the outcome is unknown still gets one charge', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    emulator.clearFaults()
    // An operator (or any other path) queues the invoice again right away.
    await queueAutomaticPayment(ctx.db, invoice.id, ctx.clock.now())
    await chargeDueInvoices(ctx.deps)
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await paymentsOf(invoice.id)).toHaveLength(1)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test("Stripe's late webhook settles the charge: the invoice is paid once and no further attempt is made", async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    emulator.clearFaults()
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      next_payment_attempt: null,
    })
    const requestsBefore = emulator.requests.length
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect(emulator.requests.length).toBe(requestsBefore)
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    const payments = await paymentsOf(invoice.id)
    expect(payments).toHaveLength(1)
    expect(payments[0]).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
  })

  test('the worker dies after Stripe took the money: the claim expires, and the next run replays the charge', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    // The job's first step, as it runs it: the claim holds the invoice for a while, it does not forget it.
    const claimed = await claimDueAutomaticCharges(
      ctx.db,
      ctx.clock.now(),
      50,
      new Date(ctx.clock.now().getTime() + UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    expect(claimed.map((c) => c.id)).toContain(invoice.id)
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    // The charge goes through at Stripe; the worker never hears back and never gets to requeue.
    loseEveryAnswer()
    await expectChargeUnanswered(invoice.id)
    emulator.clearFaults()
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)

    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await paymentsOf(invoice.id)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('a 5xx before Stripe charged anything: the retry charges once and pays the invoice', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.failNext({ status: 500, count: 3, pathPrefix: '/v1/payment_intents' })
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(0)
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    emulator.clearFaults()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    const payments = await paymentsOf(invoice.id)
    expect(payments).toHaveLength(1)
    expect(payments[0]?.attempts.map((a) => a.status)).toEqual(['failed', 'succeeded'])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      next_payment_attempt: null,
    })
  })
})

describe('charge_due_invoices attempt counting', () => {
  test('errors and declines each count as one attempt; declines follow the schedule and stop at the limit', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa_chargeDeclined')
    // Attempt 1: Stripe answers 5xx, nothing is charged; asked again soon on the same payment.
    emulator.failNext({ status: 500, count: 3, pathPrefix: '/v1/payment_intents' })
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    emulator.clearFaults()
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    // Attempts 2 to 4: declines, three days apart, each on a payment of its own after the first.
    for (let attempt = 2; attempt <= MAX_AUTOMATIC_ATTEMPTS; attempt++) {
      expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
      const next = (await getInvoice(ctx, invoice.id)).next_payment_attempt
      if (attempt < MAX_AUTOMATIC_ATTEMPTS) {
        expect(next).toBe(inMs(RETRY_AFTER_MS))
        ctx.clock.advance(RETRY_AFTER_MS - 1)
        expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
        ctx.clock.advance(1)
      } else {
        expect(next).toBeNull()
      }
    }
    const payments = await paymentsOf(invoice.id)
    expect(payments).toHaveLength(MAX_AUTOMATIC_ATTEMPTS - 1)
    expect(payments.map((p) => p.attempts.map((a) => a.error_code))).toEqual([
      ['StripeAPIError', 'card_declined'],
      ['card_declined'],
      ['card_declined'],
    ])
    expect(payments.every((p) => p.payment_status === 'FAILED')).toBe(true)
    expect(chargesTaken(stripeCustomerId)).toHaveLength(0)
    // Done: later runs leave the invoice to the customer.
    ctx.clock.advance(RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('FAILED')
  })

  test('answers lost on every attempt stop at the limit, and the charge Stripe took is still one', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    for (let attempt = 1; attempt <= MAX_AUTOMATIC_ATTEMPTS; attempt++) {
      loseEveryAnswer()
      expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
      emulator.clearFaults()
      const next = (await getInvoice(ctx, invoice.id)).next_payment_attempt
      expect(next).toBe(
        attempt < MAX_AUTOMATIC_ATTEMPTS ? inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS) : null,
      )
      ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    }
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    const payments = await paymentsOf(invoice.id)
    expect(payments).toHaveLength(1)
    expect(payments[0]?.attempts).toHaveLength(MAX_AUTOMATIC_ATTEMPTS)
    // Left PROCESSING, not FAILED: Stripe's report of the charge still settles it.
    expect(payments[0]?.payment_status).toBe('PROCESSING')
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('POST /v1/payments/:id/process on a card charge whose outcome is unknown', () => {
  /** A manual card payment of a due invoice whose every answer was lost: PROCESSING, 502. */
  async function lostManualCharge() {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(502)
    expect(res.body.error.details.retryable).toBe(true)
    const [pending] = await paymentsOf(invoice.id)
    expect(pending?.payment_status).toBe('PROCESSING')
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    emulator.clearFaults()
    return { invoice, stripeCustomerId, paymentId: pending?.id ?? '' }
  }

  test('within 12 hours of the charge, it is asked again with the same key: Stripe replays the one charge', async () => {
    const { invoice, stripeCustomerId, paymentId } = await lostManualCharge()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS - 60_000)
    const again = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('later, Stripe is not sent the charge again (it may have forgotten the key) but asked what it holds: the charge it took settles the payment', async () => {
    const { invoice, stripeCustomerId, paymentId } = await lostManualCharge()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const calls = emulator.requests.length
    const again = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      gateway_payment_id: expect.stringMatching(/^pi_/),
      status_code: null,
    })
    // A read, never a create: the key may be forgotten, and a create would charge again.
    const asked = emulator.requests.slice(calls)
    expect(asked.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/payment_intents'])
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    // Stripe's own report of that charge comes late and changes nothing.
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('later, a charge that never reached Stripe: FAILED charge_not_found, no money taken, and the invoice can be paid again', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    // The connection drops before Stripe reads the request, every time.
    emulator.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/payment_intents' })
    const res = await cardPayment(invoice.id)
    expect(res.status, res.text).toBe(502)
    emulator.clearFaults()
    const paymentId = res.body.error.details.payment_id
    expect((await ctx.get<PaymentBody>(`/v1/payments/${paymentId}`)).body.payment_status).toBe(
      'PROCESSING',
    )
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const again = await ctx.post<{ error: { code: string; details: Record<string, unknown> } }>(
      `/v1/payments/${paymentId}/process`,
    )
    expect(again.status, again.text).toBe(502)
    expect(again.body.error).toMatchObject({
      code: 'gateway_error',
      details: { payment_status: 'FAILED', retryable: false },
    })
    const failed = (await ctx.get<PaymentBody>(`/v1/payments/${paymentId}`)).body
    expect(failed).toMatchObject({ payment_status: 'FAILED', status_code: 'charge_not_found' })
    expect(failed.attempts.at(-1)).toMatchObject({
      status: 'failed',
      error_code: 'charge_not_found',
    })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(0)
    // Nothing in flight any more: the invoice takes a payment for its whole amount.
    const offline = await ctx.post<PaymentBody>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: invoice.id,
      amount: '100.00',
      currency: 'usd',
      payment_method_type: 'OFFLINE',
    })
    expect(offline.status, offline.text).toBe(201)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_paid: '100.00' })
  })

  test('later, while Stripe cannot be asked: 502 retryable, the payment still PROCESSING and nothing recorded', async () => {
    const { paymentId } = await lostManualCharge()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const before = (await ctx.get<PaymentBody>(`/v1/payments/${paymentId}`)).body
    emulator.failNext({ status: 503, count: 3, pathPrefix: '/v1/payment_intents' })
    const again = await ctx.post<{ error: { code: string; details: Record<string, unknown> } }>(
      `/v1/payments/${paymentId}/process`,
    )
    expect(again.status, again.text).toBe(502)
    expect(again.body.error).toMatchObject({
      code: 'gateway_error',
      details: { payment_status: 'PROCESSING', retryable: true },
    })
    expect((await ctx.get<PaymentBody>(`/v1/payments/${paymentId}`)).body).toEqual(before)
    // Once Stripe answers, the next ask settles it.
    emulator.clearFaults()
    const settled = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(settled.status, settled.text).toBe(200)
    expect(settled.body.payment_status).toBe('SUCCEEDED')
  })

  test("a declined earlier charge of the same payment is not taken for the lost one's answer", async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa_chargeDeclined')
    const declined = await cardPayment(invoice.id)
    expect(declined.status, declined.text).toBe(402)
    const paymentId = declined.body.error.details.payment_id
    // Processed again, its new charge never reaches Stripe.
    emulator.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/payment_intents' })
    const retried = await ctx.post(`/v1/payments/${paymentId}/process`)
    expect(retried.status, retried.text).toBe(502)
    emulator.clearFaults()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const again = await ctx.post(`/v1/payments/${paymentId}/process`)
    expect(again.status, again.text).toBe(502)
    // Stripe holds the first, declined intent of this payment: that was answered already.
    expect(
      [...emulator.state.paymentIntents.values()].filter(
        (intent) => intent.customer === stripeCustomerId,
      ),
    ).toHaveLength(1)
    const payment = (await ctx.get<PaymentBody>(`/v1/payments/${paymentId}`)).body
    expect(payment).toMatchObject({ payment_status: 'FAILED', status_code: 'charge_not_found' })
    expect(payment.attempts.map((a) => a.error_code)).toEqual([
      'card_declined',
      expect.any(String),
      'charge_not_found',
    ])
  })
})

/** Earlier tests' invoices and charges out of the way: only this test's are due or stale. */
async function asideEarlierTests() {
  await ctx.db.updateTable('invoices').set({ next_payment_attempt: null }).execute()
  await ctx.db
    .updateTable('payments')
    .set({ active: false })
    .where('payment_status', '=', 'PROCESSING')
    .execute()
}

describe('charge_due_invoices after a lost charge Stripe never received', () => {
  beforeEach(asideEarlierTests)

  test('found missing past 12 hours, the charge is made again an hour later, and taken once', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    emulator.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/payment_intents' })
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    emulator.clearFaults()
    // The worker is down for the night; the next run finds the charge past its key's window.
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    const [lost] = await paymentsOf(invoice.id)
    expect(lost).toMatchObject({ payment_status: 'FAILED', status_code: 'charge_not_found' })
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(
      inMs(UNKNOWN_OUTCOME_RETRY_AFTER_MS),
    )
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await paymentsOf(invoice.id)).toEqual([
      expect.objectContaining({ id: lost?.id, payment_status: 'SUCCEEDED', amount_paid: '100.00' }),
    ])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })
})

describe('resolve_lost_charges', () => {
  beforeEach(asideEarlierTests)

  test('charges whose answers were lost are settled from what Stripe holds, once Stripe may have forgotten their keys', async () => {
    const took = await dueInvoice('pm_card_visa')
    const never = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    // The first invoice's charge reaches Stripe and its answer is lost; the second's never arrives.
    for (const [{ invoice }, reached] of [
      [took, true],
      [never, false],
    ] as const) {
      emulator.timeoutNext({
        count: 3,
        mode: 'destroy',
        pathPrefix: '/v1/payment_intents',
        afterProcessing: reached,
      })
      await expectChargeUnanswered(invoice.id)
      emulator.clearFaults()
    }
    const [tookPayment] = await paymentsOf(took.invoice.id)
    const [neverPayment] = await paymentsOf(never.invoice.id)
    expect([tookPayment?.payment_status, neverPayment?.payment_status]).toEqual([
      'PROCESSING',
      'PROCESSING',
    ])
    // Not yet: Stripe still keeps the keys, and asking again replays.
    expect(await resolveLostCharges(ctx.deps)).toEqual({ resolved: 0, left: 0 })

    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const calls = emulator.requests.length
    // One at a time, oldest first: Stripe cannot be asked about the first, which is left for
    // the next run, and the second is settled.
    emulator.failNext({ status: 500, count: 3, method: 'GET', pathPrefix: '/v1/payment_intents' })
    expect(await resolveLostCharges(ctx.deps, 1)).toEqual({ resolved: 1, left: 1 })
    emulator.clearFaults()
    expect((await getPayment(ctx, String(tookPayment?.id))).payment_status).toBe('PROCESSING')
    expect(await resolveLostCharges(ctx.deps, 1)).toEqual({ resolved: 1, left: 0 })
    expect(
      emulator.requests.slice(calls).every((r) => r.method === 'GET'),
      'no charge is sent again',
    ).toBe(true)
    expect(await getPayment(ctx, String(tookPayment?.id))).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, took.invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(chargesTaken(took.stripeCustomerId)).toHaveLength(1)
    expect(await getPayment(ctx, String(neverPayment?.id))).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'charge_not_found',
    })
    expect(chargesTaken(never.stripeCustomerId)).toHaveLength(0)
    // Nothing was taken: the invoice gets its next automatic attempt, as a report would give it.
    expect(await getInvoice(ctx, never.invoice.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_remaining: '100.00',
      next_payment_attempt: inMs(RETRY_AFTER_MS),
    })
    // Done: a later run finds nothing left.
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    expect(await resolveLostCharges(ctx.deps)).toEqual({ resolved: 0, left: 0 })
  })

  // Both jobs run hourly on several workers, and meet on the same lost charge. Before, when
  // resolve_lost_charges recorded it first (FAILED `charge_not_found`) and queued the retry,
  // the charge job's own lookup got its 409 `conflict` (the payment had moved) and took it for
  // a definitive failure: it wrote `next_payment_attempt: null` over that retry, and the
  // invoice, owing its whole amount after one attempt of four, was never charged again.
  test('the charge job looking up the charge resolve_lost_charges settles at once leaves the retry it queued', async () => {
    const { invoice, stripeCustomerId } = await dueInvoice('pm_card_visa')
    // The charge never reaches Stripe, and its answer is lost.
    emulator.timeoutNext({ count: 3, mode: 'destroy', pathPrefix: '/v1/payment_intents' })
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    emulator.clearFaults()
    // Workers down for the night: the charge is past its key's window, and its retry is due.
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    // While the charge job asks Stripe, resolve_lost_charges (another worker) asks too and
    // records the answer first.
    const findCharge = stripeGateway.findCharge?.bind(stripeGateway)
    let resolvedBeside = false
    const spy = vi.spyOn(stripeGateway, 'findCharge').mockImplementation(async (...args) => {
      if (!resolvedBeside) {
        resolvedBeside = true
        expect(await resolveLostCharges(ctx.deps)).toEqual({ resolved: 1, left: 0 })
      }
      return findCharge!(...args)
    })
    try {
      expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 0, failed: 1 })
    } finally {
      spy.mockRestore()
    }
    expect(resolvedBeside).toBe(true)
    const [lost] = await paymentsOf(invoice.id)
    expect(lost).toMatchObject({ payment_status: 'FAILED', status_code: 'charge_not_found' })
    expect((await getInvoice(ctx, invoice.id)).next_payment_attempt).toBe(inMs(RETRY_AFTER_MS))
    ctx.clock.advance(RETRY_AFTER_MS)
    expect(await chargeDueInvoices(ctx.deps)).toEqual({ charged: 1, failed: 0 })
    expect(chargesTaken(stripeCustomerId)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      next_payment_attempt: null,
    })
  })

  test('a lookup started from a payment that moved meanwhile records nothing', async () => {
    const { invoice } = await dueInvoice('pm_card_visa')
    emulator.setWebhookDelivery('manual')
    loseEveryAnswer()
    await expectChargeUnanswered(invoice.id)
    emulator.clearFaults()
    ctx.clock.advance(UNKNOWN_OUTCOME_RETRY_WINDOW_MS + 60_000)
    const [lost] = await paymentsOf(invoice.id)
    const access = adminAccess({ tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id })
    const stale = await findPayment(ctx.db, ctx.main.test.id, String(lost?.id))
    // Stripe's report settles the payment after the job read it, before its lookup is recorded.
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    const settled = await getPayment(ctx, String(lost?.id))
    expect(settled.payment_status).toBe('SUCCEEDED')
    await expect(
      processPayment(ctx.deps, access, stale as Payment, {
        cause: 'job',
        causeId: RESOLVE_LOST_CHARGES,
      }),
    ).rejects.toMatchObject({ code: 'conflict' })
    expect(await getPayment(ctx, String(lost?.id))).toEqual(settled)
  })
})
