import { expect } from 'vitest'
import { signWebhook } from '../src/core/webhook-signature.ts'
import {
  SANDBOX_SIGNATURE_HEADER,
  sandboxWebhookPath,
} from '../src/gateways/sandbox/sandbox-provider.ts'
import { savePaymentMethod } from '../src/modules/payment-methods/service.ts'
import { createCustomer, finalizedInvoice, type InvoiceBody } from './fixtures.ts'
import type { TestContext } from './harness.ts'

export interface PaymentBody {
  id: string
  human_id: string
  customer_id: string
  destination_type: string
  destination_id: string
  invoice_ids: string[]
  amount: string
  amount_paid: string
  amount_refunded: string
  currency: string
  payment_status: string
  current_state: string
  payment_method_type: string
  payment_method_id: string | null
  payment_gateway: string | null
  gateway_tracking_id: string | null
  gateway_payment_id: string | null
  payment_url: string | null
  status_code: string | null
  error_message: string | null
  active: boolean
  attempts: { status: string; error_code: string | null; error_message: string | null }[]
  [key: string]: unknown
}

/** A refund as the API shows it. */
export interface RefundBody {
  id: string
  object: string
  payment_id: string
  amount: string
  currency: string
  status: string
  reason: string | null
  metadata: Record<string, string>
  gateway_refund_id: string | null
  failure_code: string | null
  failure_message: string | null
  created_at: string
  updated_at: string
}

/** A customer with a finalized invoice of 100.00 usd (2 × 50.00). */
export async function invoiceToPay(
  ctx: TestContext,
  customerBody: Record<string, unknown> = {},
  invoiceBody: Record<string, unknown> = {},
) {
  const customer = await createCustomer(ctx, customerBody)
  const invoice = await finalizedInvoice(ctx, customer.id, invoiceBody)
  return { customer, invoice }
}

export async function createPayment(
  ctx: TestContext,
  body: Record<string, unknown>,
  options: { key?: string | null } = {},
) {
  return ctx.post<PaymentBody>(
    '/v1/payments',
    { destination_type: 'INVOICE', currency: 'usd', ...body },
    options,
  )
}

/** A sandbox CRYPTO payment of a new invoice of 100.00, its page open (PENDING). */
export async function openSandboxCrypto(ctx: TestContext) {
  const { invoice } = await invoiceToPay(ctx)
  const crypto = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'sandbox',
    amount: '100.00',
  })
  expect(crypto.status, crypto.text).toBe(201)
  expect(crypto.body.payment_status).toBe('PENDING')
  return { invoice, crypto }
}

/** An OFFLINE payment of `amount` of the invoice, which succeeds at once. */
export async function payOffline(ctx: TestContext, invoiceId: string, amount: string) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'OFFLINE',
    amount,
  })
  expect(res.status, res.text).toBe(201)
  expect(res.body.payment_status).toBe('SUCCEEDED')
  return res.body
}

/** A sandbox PAYMENT_LINK for `amount` of `invoice` (all that is due by default). */
export async function createSandboxLink(
  ctx: TestContext,
  invoice: { id: string; amount_due: string },
  amount = invoice.amount_due,
  extra: Record<string, unknown> = {},
) {
  return createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'sandbox',
    amount,
    ...extra,
  })
}

/** That the payment and its invoice are both paid, `amount` each (the invoice in full). */
export async function expectPaidInFull(
  ctx: TestContext,
  paymentId: string,
  invoiceId: string,
  amount: string,
) {
  expect(await getPayment(ctx, paymentId)).toMatchObject({
    payment_status: 'SUCCEEDED',
    amount_paid: amount,
  })
  expect(await getInvoice(ctx, invoiceId)).toMatchObject({
    payment_status: 'SUCCEEDED',
    amount_paid: amount,
  })
}

/** The session id at the end of a sandbox `payment_url`. */
export function sessionOf(payment: PaymentBody): string {
  expect(payment.payment_url).toMatch(/\/sandbox\/(checkout|crypto)\/sbs_/)
  return String(payment.payment_url?.split('/').pop())
}

/** Submits a test card on the sandbox hosted checkout page, as the customer's browser would. */
export async function submitCard(
  ctx: TestContext,
  session: string,
  number: string,
  month = '12',
  year = '2030',
) {
  return ctx.app.inject({
    method: 'POST',
    url: `/sandbox/checkout/${session}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({
      card_number: number,
      exp_month: month,
      exp_year: year,
      cvc: '123',
    }).toString(),
  })
}

/**
 * A customer whose sandbox card was saved as their default by paying a link with it (its
 * expiry `expiry`, else the submitter's default), and a second finalized invoice of theirs
 * (30.00 usd) for that card to pay.
 */
export async function customerWithSavedCard(
  ctx: TestContext,
  expiry?: { month: string; year: string },
) {
  const { customer, invoice } = await invoiceToPay(ctx)
  const link = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'sandbox',
    amount: '100.00',
    save_card_and_make_default: true,
  })
  const paid = await submitCard(
    ctx,
    sessionOf(link.body),
    '4242424242424242',
    expiry?.month,
    expiry?.year,
  )
  expect(paid.statusCode, paid.body).toBe(200)
  const next = await ctx.post<{ id: string }>('/v1/invoices', {
    customer_id: customer.id,
    currency: 'usd',
    lines: [{ description: 'Next month', quantity: 1, unit_amount: '30.00' }],
  })
  expect((await ctx.post(`/v1/invoices/${next.body.id}/finalize`)).status).toBe(200)
  return { customer, linkPaymentId: link.body.id, nextInvoiceId: next.body.id }
}

/** A customer with a saved default card and an INITIATED (not yet processed) CARD payment of their 30.00 invoice. */
export async function unprocessedCardPayment(ctx: TestContext) {
  const { nextInvoiceId } = await customerWithSavedCard(ctx)
  const created = await createPayment(ctx, {
    destination_id: nextInvoiceId,
    payment_method_type: 'CARD',
    payment_gateway: 'sandbox',
    amount: '30.00',
    process_payment: false,
  })
  expect(created.status, created.text).toBe(201)
  expect(created.body.payment_status).toBe('INITIATED')
  return { nextInvoiceId, payment: created.body }
}

/** An off-session CARD payment of all of `invoiceId` (30.00) with the customer's default card. */
export function chargeDefaultCard(ctx: TestContext, invoiceId: string) {
  return createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CARD',
    payment_gateway: 'sandbox',
    amount: '30.00',
  })
}

export async function pagePost(ctx: TestContext, url: string, action: string) {
  return ctx.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `action=${action}`,
  })
}

export async function getPayment(ctx: TestContext, id: string) {
  return (await ctx.get<PaymentBody>(`/v1/payments/${id}`)).body
}

export async function getInvoice(ctx: TestContext, id: string) {
  return (await ctx.get<InvoiceBody>(`/v1/invoices/${id}`)).body
}

/** Whether a Payrail backend is waiting on a row lock now. */
export async function payrailWaitsOnLock(ctx: TestContext): Promise<boolean> {
  return (await payrailLockWaits(ctx)) > 0
}

/** How many of Payrail's connections wait on a row lock. */
export async function payrailLockWaits(ctx: TestContext): Promise<number> {
  const { rows } = await ctx.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where application_name = 'payrail' and wait_event_type = 'Lock'`,
  )
  return rows[0]?.n ?? 0
}

/**
 * Runs `request` while another connection holds `paymentId` locked, and `meanwhile` on
 * that connection once the request waits for the lock; then commits it, releasing the
 * request: a change another transaction commits between the request's read and its lock.
 */
export async function whileLocked<T>(
  ctx: TestContext,
  paymentId: string,
  request: () => Promise<T>,
  meanwhile: (holder: {
    query: (text: string, values: unknown[]) => Promise<unknown>
  }) => Promise<void>,
): Promise<T> {
  const holder = await ctx.pool.connect()
  try {
    await holder.query('begin')
    await holder.query('select id from payments where id = $1 for update', [paymentId])
    const pending = request()
    let settled = false
    void pending.finally(() => {
      settled = true
    })
    while (!settled && !(await payrailWaitsOnLock(ctx))) await new Promise((r) => setTimeout(r, 5))
    expect(settled, 'the request went on without waiting for the lock').toBe(false)
    await meanwhile(holder)
    await holder.query('commit')
    return await pending
  } finally {
    holder.release()
  }
}

/**
 * Posts `body` to a sandbox webhook path (`to`: the main test environment's by default),
 * signed as the sandbox signs for the environment `signedFor` (the path's by default).
 */
export function postSandboxWebhook(
  ctx: TestContext,
  body: string,
  to: { tenantId: string; environmentId: string } = {
    tenantId: ctx.main.tenant.id,
    environmentId: ctx.main.test.id,
  },
  signedFor = to.environmentId,
) {
  const secret = ctx.deps.secretBox.derive(`sandbox-webhook:${signedFor}`)
  const signature = signWebhook(secret, body, Math.floor(ctx.clock.now().getTime() / 1000))
  return ctx.app.inject({
    method: 'POST',
    url: sandboxWebhookPath(to.tenantId, to.environmentId),
    headers: { 'content-type': 'application/json', [SANDBOX_SIGNATURE_HEADER]: signature },
    payload: body,
  })
}

/** A payment of 100.00 whose gateway did not answer its creation: 502, left INITIATED. Its id. */
export async function unansweredPayment(ctx: TestContext, body: Record<string, unknown>) {
  const res = await createPayment(ctx, { amount: '100.00', ...body })
  expect(res.status, res.text).toBe(502)
  const paymentId = String(
    (res.body as unknown as { error: { details: { payment_id: unknown } } }).error.details
      .payment_id,
  )
  expect((await getPayment(ctx, paymentId)).payment_status).toBe('INITIATED')
  return paymentId
}

/**
 * A sandbox event's JSON body for `postSandboxWebhook`: every data field present (as the
 * sandbox sends them), `data` overriding the empty ones.
 */
export function sandboxEventBody(id: string, type: string, data: Record<string, unknown>) {
  return JSON.stringify({
    id,
    type,
    created: 0,
    data: {
      payment_id: '',
      session_id: null,
      charge_id: null,
      amount: 0,
      amount_received: 0,
      currency: 'usd',
      card: null,
      error: null,
      refund_id: null,
      gateway_refund_id: null,
      ...data,
    },
  })
}

/**
 * A new invoice of 100.00 paid in full with an OFFLINE payment (recorded at once), its
 * customer made with `customerBody`.
 */
export async function offlinePayment(
  ctx: TestContext,
  amount = '100.00',
  customerBody: Record<string, unknown> = {},
) {
  const { customer, invoice } = await invoiceToPay(ctx, customerBody)
  return { customer, invoice, payment: await payOffline(ctx, invoice.id, amount) }
}

/**
 * A CARD payment of 100.00 through the sandbox, on a new invoice of a customer whose default
 * card is the test `number`, charged at once: its answer (201, or 402 for a decline).
 */
export async function sandboxCardCharge(ctx: TestContext, number: string) {
  const customer = await customerWithCard(ctx, number)
  const invoice = await finalizedInvoice(ctx, customer.id)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'CARD',
    payment_gateway: 'sandbox',
    amount: '100.00',
  })
  return { invoice, res }
}

/** A sandbox card of the test `number`, saved as one of the customer's payment methods. */
export async function savedSandboxCard(ctx: TestContext, customerId: string, number: string) {
  const card = await ctx.db
    .insertInto('sandbox_cards')
    .values({
      id: `sbcard_${customerId}_${number.slice(-4)}`,
      environment_id: ctx.main.test.id,
      customer_id: customerId,
      number,
      brand: 'visa',
      last4: number.slice(-4),
      exp_month: 12,
      exp_year: 2030,
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return savePaymentMethod(ctx.db, ctx.scope, {
    customerId,
    gateway: 'sandbox',
    gatewayPaymentMethodId: card.id,
    last4: card.last4,
  })
}

/** A customer with auto_pay whose default card, at the sandbox provider, is the test `number`. */
export async function customerWithCard(ctx: TestContext, number: string) {
  const customer = await createCustomer(ctx, { auto_pay: true })
  const method = await savedSandboxCard(ctx, customer.id, number)
  await ctx.patch(`/v1/customers/${customer.id}`, { default_payment_method_id: method.id })
  return customer
}
