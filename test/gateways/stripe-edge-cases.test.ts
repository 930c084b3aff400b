/**
 * Stripe beyond the common path: a link's session asked again after its answer was lost, a
 * redelivered completion of an older link, a decline reported by webhook only, and the
 * Billing mirror's late, draft and malformed snapshots.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { syncDefaultPaymentMethod } from '../../src/jobs/tasks/sync-default-payment-method.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { signatureHeader } from '../emulators/stripe/signing.ts'
import { finalizedInvoice } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  unansweredPayment,
} from '../payments-helpers.ts'
import {
  connectStripeEmulator,
  mirroredInvoice,
  runDefaultMethodJob,
  saveStripeCard,
  stripeWebhookPath,
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
    emulator.timeoutNext({
      count: 3,
      mode: 'destroy',
      pathPrefix: '/v1/checkout/sessions',
      afterProcessing: true,
    })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'stripe',
    })
    emulator.clearFaults()
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
    emulator.timeoutNext({
      count: 3,
      mode: 'destroy',
      pathPrefix: '/v1/checkout/sessions',
      afterProcessing: true,
    })
    const paymentId = await unansweredPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'stripe',
    })
    emulator.clearFaults()
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
