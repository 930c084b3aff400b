/**
 * Stripe beyond the common path: a link's session asked again after its answer was lost, a
 * redelivered completion of an older link, a decline reported by webhook only, the
 * Billing mirror's late, draft and malformed snapshots, and refunds that fail after they
 * succeeded.
 */
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { syncDefaultPaymentMethod } from '../../src/jobs/tasks/sync-default-payment-method.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { signatureHeader } from '../emulators/stripe/signing.ts'
import { createCustomer, eventsOf, finalizedInvoice, type List } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  payOffline,
  type RefundBody,
} from '../payments-helpers.ts'
import {
  connectStripeEmulator,
  mirroredInvoice,
  openStripeLink,
  paidStripeLink,
  runDefaultMethodJob,
  saveStripeCard,
  stripeWebhookPath,
  unansweredStripeLink,
} from '../stripe-helpers.ts'

let ctx: TestContext
let emulator: StripeEmulator
let webhookPath: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  webhookPath = stripeWebhookPath(ctx)
  emulator = await connectStripeEmulator(ctx)
})
afterAll(async () => {
  await emulator?.close()
  await ctx.close()
})

const nowSeconds = () => Math.floor(ctx.clock.now().getTime() / 1000)

/** Posts a Stripe event signed with the connection's webhook secret, as Stripe would. */
async function deliver(event: Record<string, unknown>) {
  return deliverBody(JSON.stringify({ object: 'event', created: nowSeconds(), ...event }))
}

/** Posts `body` as it is, signed with the connection's webhook secret (a redelivery). */
function deliverBody(body: string) {
  return ctx.app.inject({
    method: 'POST',
    url: webhookPath,
    headers: {
      'content-type': 'application/json',
      'stripe-signature': signatureHeader(body, emulator.webhookSecret, nowSeconds()),
    },
    payload: body,
  })
}

describe('Stripe payment links', () => {
  test('a link whose session answer was lost, processed again a minute later, gets its session (the idempotent request is the same request)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    // Stripe creates the session; its answer is lost (stripe-node's own retries too).
    const paymentId = await unansweredStripeLink(ctx, emulator, invoice.id, {
      pathPrefix: '/v1/checkout/sessions',
    })
    // A retry comes later than the first call: the session's parameters hold no time, so the
    // key's request is the same (an expires_at of now + 24 h made Stripe refuse the key, 400
    // idempotency_error, on every retry for 24 hours).
    ctx.clock.advance(60_000)
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body.payment_status).toBe('PENDING')
    const sessions = [...emulator.state.checkoutSessions.values()].filter(
      (s) => s.metadata.payrail_payment_id === paymentId,
    )
    expect(sessions).toHaveLength(1)
    expect(retried.body.gateway_tracking_id).toBe(sessions[0]?.id)
  })

  test('the expiry of a Checkout Session made before a retry gave the payment another one does not fail the payment', async () => {
    const { invoice } = await invoiceToPay(ctx)
    // The session is created at Stripe, its answer lost: the payment stays INITIATED.
    const paymentId = await unansweredStripeLink(ctx, emulator, invoice.id, {
      pathPrefix: '/v1/checkout/sessions',
    })
    // Stripe prunes idempotency keys after 24 h: the retry makes a second session.
    emulator.forgetIdempotencyKeys()
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body.payment_status).toBe('PENDING')
    const sessions = [...emulator.state.checkoutSessions.values()].filter(
      (s) => s.metadata.payrail_payment_id === paymentId,
    )
    expect(sessions).toHaveLength(2)
    const tracked = String(retried.body.gateway_tracking_id)
    const orphan = sessions.find((s) => s.id !== tracked)
    expect(orphan).toBeDefined()
    // The first session, never shown to anyone, expires at Stripe.
    emulator.expireCheckoutSession(String(orphan?.id))
    await emulator.waitForDeliveries()
    // Before, it failed the payment (FAILED is final for Stripe), and the money the customer
    // then paid on the tracked page was refused and recorded nowhere.
    expect((await getPayment(ctx, paymentId)).payment_status).toBe('PENDING')
    // The customer pays on the page the payment gave them.
    emulator.completeCheckoutSession(tracked, { paymentMethod: 'pm_card_visa' })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })
})

describe('Stripe cards saved on the Checkout page', () => {
  test("a redelivered checkout.session.completed of an older link does not bring its card back as the customer's default at Stripe", async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const pay = async (invoiceId: string, card: 'pm_card_visa' | 'pm_card_mastercard') => {
      const res = await createPayment(ctx, {
        destination_id: invoiceId,
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'stripe',
        amount: '100.00',
        save_card_and_make_default: true,
      })
      expect(res.status, res.text).toBe(201)
      emulator.completeCheckoutSession(String(res.body.gateway_tracking_id), {
        paymentMethod: card,
      })
      await emulator.waitForDeliveries()
      return res.body
    }
    const first = await pay(invoice.id, 'pm_card_visa')
    const firstEvent = emulator
      .listEvents('checkout.session.completed')
      .find((e) => (e.data as { object: { id: string } }).object.id === first.gateway_tracking_id)
    expect(firstEvent).toBeDefined()
    const second = await finalizedInvoice(ctx, customer.id)
    await pay(second.id, 'pm_card_mastercard')
    const shown = await ctx.get<{
      default_payment_method_id: string
      gateway_customer_ids: Record<string, string>
    }>(`/v1/customers/${customer.id}`)
    const stripeCustomer = () =>
      emulator.state.customers.get(String(shown.body.gateway_customer_ids.stripe))
    // The job the saves queued (one per customer) makes Payrail's default Stripe's.
    expect(await runDefaultMethodJob(ctx, customer.id)).toBe('synced')
    const defaultAtStripe = stripeCustomer()?.defaultPaymentMethod
    const method = await ctx.db
      .selectFrom('payment_methods')
      .select('gateway_payment_method_id')
      .where('id', '=', shown.body.default_payment_method_id)
      .executeTakeFirstOrThrow()
    expect(defaultAtStripe).toBe(method.gateway_payment_method_id)
    // Stripe delivers at least once: the first link's event comes again.
    const res = await deliverBody(JSON.stringify(firstEvent))
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().events[0].outcome).toBe('duplicate')
    // Payrail's default is still the second card; Stripe's too, whenever the job runs again.
    await runDefaultMethodJob(ctx, customer.id)
    expect(stripeCustomer()?.defaultPaymentMethod).toBe(method.gateway_payment_method_id)
  })
})

describe("the customer's default card at Stripe", () => {
  test("a default set through Payrail's API becomes the default at Stripe", async () => {
    const { customer } = await invoiceToPay(ctx)
    const { paymentMethodId, stripeCustomerId } = await saveStripeCard(
      ctx,
      emulator,
      customer.id,
      'pm_card_visa',
    )
    expect(emulator.state.customers.get(stripeCustomerId)?.defaultPaymentMethod ?? null).toBe(null)
    const made = await ctx.post(
      `/v1/customers/${customer.id}/payment_methods/${paymentMethodId}/default`,
    )
    expect(made.status, made.text).toBe(200)
    expect(await runDefaultMethodJob(ctx, customer.id)).toBe('synced')
    const saved = await ctx.db
      .selectFrom('payment_methods')
      .select('gateway_payment_method_id')
      .where('id', '=', paymentMethodId)
      .executeTakeFirstOrThrow()
    expect(emulator.state.customers.get(stripeCustomerId)?.defaultPaymentMethod).toBe(
      saved.gateway_payment_method_id,
    )
  })
})

describe('the default card job, when Stripe refuses', () => {
  test('a customer deleted at Stripe ends the job (refused), rather than retrying it for days', async () => {
    const { customer } = await invoiceToPay(ctx)
    const { paymentMethodId } = await saveStripeCard(ctx, emulator, customer.id, 'pm_card_visa')
    await ctx.db
      .updateTable('customers')
      .set({ gateway_customer_ids: JSON.stringify({ stripe: 'cus_deleted_at_stripe' }) })
      .where('id', '=', customer.id)
      .execute()
    const made = await ctx.post(
      `/v1/customers/${customer.id}/payment_methods/${paymentMethodId}/default`,
    )
    expect(made.status, made.text).toBe(200)
    expect(await runDefaultMethodJob(ctx, customer.id)).toBe('refused')
  })
})

describe('the default card job, when Stripe is not connected', () => {
  test('a customer of an environment without a Stripe connection ends the job (not_connected)', async () => {
    // The live environment has no connection: the job has no one to tell.
    const live = { tenantId: ctx.main.tenant.id, environmentId: ctx.main.live.id }
    const stamp = Date.now()
    const customerId = `cus_live_${stamp}`
    await ctx.db
      .insertInto('customers')
      .values({
        id: customerId,
        tenant_id: live.tenantId,
        environment_id: live.environmentId,
        name: 'Live customer',
        gateway_customer_ids: JSON.stringify({ stripe: 'cus_stripe_live' }),
      })
      .execute()
    await ctx.db
      .insertInto('payment_methods')
      .values({
        id: `pm_live_${stamp}`,
        tenant_id: live.tenantId,
        environment_id: live.environmentId,
        customer_id: customerId,
        gateway: 'stripe',
        gateway_payment_method_id: 'pm_stripe_live',
      })
      .execute()
    await ctx.db
      .updateTable('customers')
      .set({ default_payment_method_id: `pm_live_${stamp}` })
      .where('id', '=', customerId)
      .execute()
    expect(await syncDefaultPaymentMethod(ctx.deps, { ...live, customerId })).toBe('not_connected')
  })
})

describe('Stripe saved-card charges', () => {
  test('retrying a charge whose decline came by webhook charges the card anew, not a replay of the old decline', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { paymentMethodId } = await saveStripeCard(
      ctx,
      emulator,
      customer.id,
      'pm_card_visa_chargeDeclined',
    )
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'stripe',
      payment_method_id: paymentMethodId,
      amount: '100.00',
      process_payment: false,
    })
    expect(created.status, created.text).toBe(201)
    const paymentId = created.body.id
    // The charge is declined at Stripe, but its answer is lost: PROCESSING…
    emulator.setWebhookDelivery('manual')
    emulator.timeoutNext({
      count: 3,
      mode: 'destroy',
      pathPrefix: '/v1/payment_intents',
      afterProcessing: true,
    })
    ctx.clock.advance(5_000)
    expect((await ctx.post(`/v1/payments/${paymentId}/process`)).status).toBe(502)
    emulator.clearFaults()
    // …until payment_intent.payment_failed makes it FAILED (a definitive decline).
    emulator.setWebhookDelivery('auto')
    await emulator.deliverOutbox()
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, paymentId)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'card_declined',
    })
    const intentsOf = () =>
      [...emulator.state.paymentIntents.values()].filter(
        (pi) => pi.metadata.payrail_payment_id === paymentId,
      )
    expect(intentsOf()).toHaveLength(1)
    // A retry after a decline is a new charge (a new key). With the old key Stripe only
    // replays the first decline: the card is never tried again.
    const before = emulator.requests.length
    await ctx.post(`/v1/payments/${paymentId}/process`)
    const charges = emulator.requests
      .slice(before)
      .filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents')
    expect(charges).toHaveLength(1)
    expect(intentsOf()).toHaveLength(2)
  })
})

describe('Stripe Billing mirror', () => {
  const line = (amount: number) => ({ amount, quantity: 1, description: 'Plan' })

  test('a stale invoice snapshot delivered late does not raise what the mirror asks the customer to pay', async () => {
    const now = nowSeconds()
    const open = {
      id: 'in_hunt_credit_note',
      object: 'invoice',
      customer: 'cus_hunt_credit_note',
      currency: 'usd',
      status: 'open',
      collection_method: 'send_invoice',
      subtotal: 4500,
      total: 4500,
      amount_paid: 0,
      lines: { object: 'list', data: [line(4500)] },
    }
    // A pre-payment credit note took 15.00 off: Stripe's latest view owes 30.00…
    const updated = await deliver({
      id: 'evt_hunt_cn_2',
      created: now,
      type: 'invoice.updated',
      data: { object: { ...open, amount_due: 3000, amount_remaining: 3000 } },
    })
    expect(updated.statusCode, updated.body).toBe(200)
    // …and invoice.finalized, made an hour earlier, is delivered only now (Stripe's retry).
    const finalized = await deliver({
      id: 'evt_hunt_cn_1',
      created: now - 3600,
      type: 'invoice.finalized',
      data: { object: { ...open, amount_due: 4500, amount_remaining: 4500 } },
    })
    expect(finalized.statusCode, finalized.body).toBe(200)
    const mirrored = await mirroredInvoice(ctx, 'in_hunt_credit_note')
    expect(mirrored).toMatchObject({ amount_due: '30.00', amount_remaining: '30.00' })
  })

  test("a mirrored invoice first seen as Stripe's draft takes the finalized invoice's total and lines", async () => {
    const draft = {
      id: 'in_hunt_draft',
      object: 'invoice',
      customer: 'cus_hunt_draft',
      currency: 'usd',
      collection_method: 'send_invoice',
      amount_paid: 0,
    }
    // invoice.created: a one-off invoice is created empty, its items added afterwards.
    const created = await deliver({
      id: 'evt_hunt_draft_1',
      created: nowSeconds() - 60,
      type: 'invoice.created',
      data: {
        object: {
          ...draft,
          status: 'draft',
          subtotal: 0,
          total: 0,
          amount_due: 0,
          amount_remaining: 0,
          lines: { object: 'list', data: [] },
        },
      },
    })
    expect(created.statusCode, created.body).toBe(200)
    const finalized = await deliver({
      id: 'evt_hunt_draft_2',
      type: 'invoice.finalized',
      data: {
        object: {
          ...draft,
          status: 'open',
          subtotal: 4500,
          total: 4500,
          amount_due: 4500,
          amount_remaining: 4500,
          lines: { object: 'list', data: [line(4500)] },
        },
      },
    })
    expect(finalized.statusCode, finalized.body).toBe(200)
    const mirrored = await mirroredInvoice(ctx, 'in_hunt_draft')
    expect(mirrored).toMatchObject({
      invoice_status: 'FINALIZED',
      amount_due: '45.00',
      subtotal: '45.00',
      total: '45.00',
    })
    expect(mirrored?.lines).toHaveLength(1)
  })

  test('a Stripe invoice line with a fractional quantity is kept as a replica (or refused 400), never a 500', async () => {
    const res = await deliver({
      id: 'evt_hunt_qty',
      type: 'invoice.finalized',
      data: {
        object: {
          id: 'in_hunt_qty',
          object: 'invoice',
          customer: 'cus_hunt_qty',
          currency: 'usd',
          status: 'open',
          subtotal: 1000,
          total: 1000,
          amount_due: 1000,
          amount_paid: 0,
          amount_remaining: 1000,
          lines: { object: 'list', data: [{ amount: 1000, quantity: 2.5, description: 'Seats' }] },
        },
      },
    })
    expect(res.statusCode, res.body).toBeLessThan(500)
  })
})

/** The events Payrail sent about `paymentId`, of one type. */
async function paymentEvents(paymentId: string, type: string) {
  const res = await ctx.get<{
    items: { data: { object: { payment_method_id: string | null } } }[]
  }>(`/v1/events?object_id=${paymentId}&type=${type}`)
  return res.body.items
}

describe('a paid link, reported twice (payment_intent.succeeded and checkout.session.completed)', () => {
  test.each([
    ["in Stripe's order (payment_intent.succeeded first)", 'fifo'],
    ['completion first', 'reverse'],
  ] as const)(
    '%s: one succeeded attempt, and payment.succeeded names the card the link saved',
    async (_, order) => {
      const { invoice } = await invoiceToPay(ctx)
      const payment = await openStripeLink(ctx, invoice.id, { save_card_and_make_default: true })
      emulator.setWebhookDelivery('manual')
      emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
        paymentMethod: 'pm_card_visa',
      })
      const reports = emulator.outbox
        .map((d) => d.type)
        .filter(
          (type) => type === 'payment_intent.succeeded' || type === 'checkout.session.completed',
        )
      expect(reports).toEqual(['payment_intent.succeeded', 'checkout.session.completed'])
      await emulator.deliverOutbox({ order })
      emulator.setWebhookDelivery('auto')
      await emulator.waitForDeliveries()
      const paid = await getPayment(ctx, payment.id)
      expect(paid.payment_status).toBe('SUCCEEDED')
      expect(paid.gateway_payment_id).toMatch(/^pi_/)
      expect(paid.payment_method_id).toBeTruthy()
      // Whichever report is handled first records the success, naming the PaymentIntent; the
      // other is a repeat.
      expect(paid.attempts).toMatchObject([
        { status: 'pending' },
        { status: 'succeeded', gateway_payment_id: paid.gateway_payment_id },
      ])
      // The card is saved before the move, so the one payment.succeeded names it.
      const succeeded = await paymentEvents(payment.id, 'payment.succeeded')
      expect(succeeded).toHaveLength(1)
      expect(succeeded[0]?.data.object.payment_method_id).toBe(paid.payment_method_id)
    },
  )
})

describe('a link whose card was declined on the page, then whose session expired', () => {
  /** A link whose customer tried a declined card: the session stays open, its PaymentIntent waiting for another card. */
  async function declinedLink() {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await openStripeLink(ctx, invoice.id)
    const declined = emulator.completeCheckoutSession(String(payment.gateway_tracking_id), {
      paymentMethod: 'pm_card_visa_chargeDeclined',
    })
    expect(declined.error).not.toBeNull()
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('PENDING')
    return payment
  }

  test('expired by Stripe on its own (expires_at) is FAILED (expired), as any expired session is', async () => {
    const payment = await declinedLink()
    // Stripe cancels the PaymentIntent (payment_intent.canceled), then reports the expiry:
    // no API request asked for either.
    emulator.expireCheckoutSession(String(payment.gateway_tracking_id))
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'expired',
    })
    expect(await paymentEvents(payment.id, 'payment.failed')).toHaveLength(1)
    expect(await paymentEvents(payment.id, 'payment.cancelled')).toHaveLength(0)
  })

  test('cancelled through Payrail (POST /cancel), its reports delivered after, stays CANCELLED', async () => {
    const payment = await declinedLink()
    emulator.setWebhookDelivery('manual')
    const cancelled = await ctx.post<PaymentBody>(`/v1/payments/${payment.id}/cancel`)
    expect(cancelled.status, cancelled.text).toBe(200)
    expect(cancelled.body.payment_status).toBe('CANCELLED')
    await emulator.deliverOutbox()
    emulator.setWebhookDelivery('auto')
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('CANCELLED')
    expect(await paymentEvents(payment.id, 'payment.cancelled')).toHaveLength(1)
    expect(await paymentEvents(payment.id, 'payment.failed')).toHaveLength(0)
  })

  test("expired through Stripe's API (the merchant at Stripe), its reports handled first, is CANCELLED", async () => {
    const payment = await declinedLink()
    const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
    await stripe.checkout.sessions.expire(String(payment.gateway_tracking_id))
    await emulator.waitForDeliveries()
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('CANCELLED')
    expect(await paymentEvents(payment.id, 'payment.cancelled')).toHaveLength(1)
    expect(await paymentEvents(payment.id, 'payment.failed')).toHaveLength(0)
  })
})

describe("the Stripe customer's creation answer lost, then the customer edited", () => {
  /**
   * A link whose Stripe customer was created but whose answer was lost (stripe-node's own
   * retries too): the payment stays INITIATED, and Stripe keeps the key
   * `payrail-customer-<id>` with the customer's first email. The customer's email is then
   * edited, and a minute passes.
   */
  async function lostCustomerThenEdited() {
    const { customer, invoice } = await invoiceToPay(ctx)
    const paymentId = await unansweredStripeLink(ctx, emulator, invoice.id, {
      pathPrefix: '/v1/customers',
      method: 'POST',
    })
    const made = stripeCustomersOf(customer.id)
    expect(made).toHaveLength(1)
    const edited = await ctx.patch(`/v1/customers/${customer.id}`, {
      email: 'new-address@example.com',
    })
    expect(edited.status, edited.text).toBe(200)
    ctx.clock.advance(60_000)
    return { customerId: customer.id, paymentId, first: String(made[0]?.id) }
  }

  /** The live Stripe customers made for Payrail's customer `customerId`. */
  const stripeCustomersOf = (customerId: string) =>
    [...emulator.state.customers.values()].filter(
      (c) => !c.deleted && c.metadata.payrail_customer_id === customerId,
    )

  /** Processes the payment again: its page opens (the same key with the new email was Stripe's 400 idempotency_error for a day). */
  async function processAgain(paymentId: string) {
    const opened = await ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`)
    expect(opened.status, opened.text).toBe(200)
    expect(opened.body.payment_status).toBe('PENDING')
    expect(opened.body.payment_url).toBeTruthy()
    return opened.body
  }

  const storedStripeId = async (customerId: string) =>
    (await ctx.get<{ gateway_customer_ids: Record<string, string> }>(`/v1/customers/${customerId}`))
      .body.gateway_customer_ids.stripe

  test('processing the link again opens it with the Stripe customer the lost call made', async () => {
    const { customerId, paymentId, first } = await lostCustomerThenEdited()
    const opened = await processAgain(paymentId)
    expect(stripeCustomersOf(customerId).map((c) => c.id)).toEqual([first])
    expect(await storedStripeId(customerId)).toBe(first)
    expect(emulator.state.checkoutSessions.get(String(opened.gateway_tracking_id))?.customer).toBe(
      first,
    )
  })

  test('if that Stripe customer was deleted since, processing again makes one with the current email', async () => {
    const { customerId, paymentId, first } = await lostCustomerThenEdited()
    const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
    await stripe.customers.del(first)
    const opened = await processAgain(paymentId)
    const made = stripeCustomersOf(customerId)
    expect(made).toHaveLength(1)
    expect(made[0]?.id).not.toBe(first)
    expect(made[0]?.email).toBe('new-address@example.com')
    expect(await storedStripeId(customerId)).toBe(made[0]?.id)
    expect(emulator.state.checkoutSessions.get(String(opened.gateway_tracking_id))?.customer).toBe(
      made[0]?.id,
    )
  })
})

describe('Stripe refunds that fail after they succeeded', () => {
  // Stripe's refund to a card account closed since fails days after it succeeded: the money
  // goes back to the merchant's Stripe balance (https://docs.stripe.com/refunds#failed-refunds).
  // Before, Payrail found its refund already succeeded and answered `repeat`: the payment kept
  // the amount as refunded, for good, though the customer got nothing back.

  /** A 100.00 invoice paid with a Stripe link of `amount`. */
  async function paidLink(amount = '100.00') {
    const { customer, invoice } = await invoiceToPay(ctx)
    return {
      customer,
      invoice,
      payment: await paidStripeLink(ctx, emulator, invoice.id, { amount }),
    }
  }

  async function refund(paymentId: string, body: Record<string, unknown> = {}) {
    const res = await ctx.post<RefundBody>(`/v1/payments/${paymentId}/refunds`, body)
    expect(res.status, res.text).toBe(201)
    expect(res.body.status).toBe('succeeded')
    await emulator.waitForDeliveries()
    return res.body
  }

  /** Stripe fails the refund Payrail made as `refundId` (its webhooks delivered). */
  async function stripeFails(refundId: string) {
    const made = (await ctx.get<RefundBody>(`/v1/refunds/${refundId}`)).body
    emulator.failRefund(String(made.gateway_refund_id))
    await emulator.waitForDeliveries()
    return (await ctx.get<RefundBody>(`/v1/refunds/${refundId}`)).body
  }

  const transitionsOf = async (paymentId: string) =>
    (await eventsOf(ctx, paymentId)).map((e) => e.type).reverse()

  test('a refund.failed for a refund Stripe had reported succeeded fails it, with its reason; sent again, it changes nothing', async () => {
    const { invoice, payment } = await paidLink()
    const made = await refund(payment.id, { amount: '40.00' })
    const event = {
      id: `evt_refund_failed_${made.id}`,
      type: 'refund.failed',
      data: {
        object: {
          id: made.gateway_refund_id,
          object: 'refund',
          amount: 4000,
          currency: 'usd',
          status: 'failed',
          failure_reason: 'expired_or_canceled_card',
          payment_intent: payment.gateway_payment_id,
          metadata: { payrail_refund_id: made.id, payrail_payment_id: payment.id },
        },
      },
    }
    const res = await deliver(event)
    expect(res.statusCode, res.body).toBe(200)
    expect((await ctx.get<RefundBody>(`/v1/refunds/${made.id}`)).body).toMatchObject({
      status: 'failed',
      failure_code: 'expired_or_canceled_card',
      failure_message: "The customer's card has expired or was canceled",
    })
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUND_FAILED',
      amount_refunded: '0.00',
      refunded_at: null,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_refunded: '0.00',
      amount_remaining: '0.00',
    })
    // The same failure again (a new event id: not a duplicate delivery) is a repeat.
    const before = (await eventsOf(ctx, payment.id)).length
    expect((await deliver({ ...event, id: `${event.id}_again` })).statusCode).toBe(200)
    expect(await eventsOf(ctx, payment.id)).toHaveLength(before)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('0.00')
  })

  test('the only refund of a payment refunded in part fails: REFUND_FAILED, the invoice paid again, and all of it refundable again', async () => {
    const { invoice, payment } = await paidLink()
    const made = await refund(payment.id, { amount: '40.00' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '40.00',
    })
    const failed = await stripeFails(made.id)
    expect(failed).toMatchObject({ status: 'failed', failure_code: 'expired_or_canceled_card' })
    // Through the state machine: PARTIALLY_REFUNDED cannot become REFUND_FAILED directly.
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUND_FAILED',
      amount_refunded: '0.00',
      refunded_at: null,
    })
    expect(await transitionsOf(payment.id)).toEqual([
      'payment.created',
      'payment.pending',
      'payment.succeeded',
      'payment.pending_refund',
      'payment.partially_refunded',
      'payment.pending_refund',
      'payment.refund_failed',
    ])
    expect((await eventsOf(ctx, made.id)).map((e) => e.type).reverse()).toEqual([
      'refund.created',
      'refund.succeeded',
      'refund.failed',
    ])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_refunded: '0.00',
      amount_remaining: '0.00',
    })
    expect((await eventsOf(ctx, invoice.id, 'invoice.updated')).length).toBeGreaterThan(0)
    // What Stripe gave back to the merchant can be refunded again, all of it.
    const again = await refund(payment.id)
    expect(again.amount).toBe('100.00')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('REFUNDED')
  })

  test('one of two refunds fails: the payment stays PARTIALLY_REFUNDED with the other, and payment.updated says so', async () => {
    const { invoice, payment } = await paidLink()
    const first = await refund(payment.id, { amount: '30.00' })
    await refund(payment.id, { amount: '20.00' })
    await stripeFails(first.id)
    const after = await getPayment(ctx, payment.id)
    expect(after).toMatchObject({ payment_status: 'PARTIALLY_REFUNDED', amount_refunded: '20.00' })
    const updated = await eventsOf(ctx, payment.id, 'payment.updated')
    expect(updated).toHaveLength(1)
    expect(updated[0]?.data.object).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '20.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '20.00',
    })
    // Refundable: all but the refund that stands.
    expect((await refund(payment.id)).amount).toBe('80.00')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  test("a full refund fails: REFUNDED is final and stays, a new refund is 422 saying why, and one made in Stripe's dashboard is recorded", async () => {
    const { invoice, payment } = await paidLink()
    const made = await refund(payment.id)
    await stripeFails(made.id)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '0.00',
    })
    expect(await eventsOf(ctx, payment.id, 'payment.updated')).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_refunded: '0.00',
    })
    const refused = await ctx.post<ErrorBody>(`/v1/payments/${payment.id}/refunds`, {})
    expect(refused.status).toBe(422)
    expect(refused.body.error.code).toBe('invalid_state_transition')
    expect(refused.body.error.message).toMatch(/REFUNDED, which is final.*dashboard/)
    // The merchant refunds it in Stripe's dashboard: recorded as every dashboard refund is.
    const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
    await stripe.refunds.create({ payment_intent: String(payment.gateway_payment_id) })
    await emulator.waitForDeliveries()
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_refunded).toBe('100.00')
  })

  test('an invoice that what the failed refund gave back pays in full becomes paid (invoice.paid)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const part = await paidStripeLink(ctx, emulator, invoice.id, { amount: '40.00' })
    await refund(part.id)
    // Paid in full only with the refunded 40.00: owed again, then given back by Stripe.
    await payOffline(ctx, invoice.id, '60.00')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_remaining: '40.00',
      paid_at: null,
    })
    const [made] = (await ctx.get<List<RefundBody>>(`/v1/refunds?payment_id=${part.id}`)).body.items
    await stripeFails(String(made?.id))
    const paid = await getInvoice(ctx, invoice.id)
    expect(paid).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_refunded: '0.00',
      amount_remaining: '0.00',
    })
    expect(paid.paid_at).not.toBeNull()
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
  })

  test('a credit top-up: the credit the refund took back is not given back, and refunding again takes back only what was missed', async () => {
    const customer = await createCustomer(ctx)
    const order = await ctx.post<{ id: string; invoice_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '100.00',
      currency: 'usd',
    })
    expect(order.status, order.text).toBe(201)
    const payment = await paidStripeLink(ctx, emulator, order.body.invoice_id)
    const adjust = (amount: string) =>
      ctx.post(`/v1/customers/${customer.id}/balance_transactions`, { amount, currency: 'usd' })
    const ledger = async () =>
      (
        await ctx.get<List<{ type: string; amount: string }>>(
          `/v1/customers/${customer.id}/balance_transactions`,
        )
      ).body.items.map((t) => [t.type, t.amount])
    // 70.00 of the credit is spent: a refund of 50.00 can take back only the 30.00 left.
    expect((await adjust('-70.00')).status).toBe(201)
    const made = await refund(payment.id, { amount: '50.00' })
    await stripeFails(made.id)
    expect(await ledger()).toEqual([
      ['refund', '-30.00'],
      ['adjustment', '-70.00'],
      ['top_up', '100.00'],
    ])
    // 20.00 of credit comes later; the merchant refunds the 50.00 again: the 20.00 the first
    // refund missed is taken back, the 30.00 it took is not taken twice. (Its ledger entry
    // was named by the invoice's amount_refunded, 50.00 again: a duplicate, 409.)
    expect((await adjust('20.00')).status).toBe(201)
    await refund(payment.id, { amount: '50.00' })
    expect(await ledger()).toEqual([
      ['refund', '-20.00'],
      ['adjustment', '20.00'],
      ['refund', '-30.00'],
      ['adjustment', '-70.00'],
      ['top_up', '100.00'],
    ])
  })
})
