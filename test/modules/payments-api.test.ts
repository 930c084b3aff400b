import { createHmac, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { inTransaction } from '../../src/db/transaction.ts'
import { findCustomer } from '../../src/modules/customers/repository.ts'
import { forgetInvoiceLines, lockInvoice } from '../../src/modules/invoices/repository.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import { lockPayment, lockPaymentByTracking } from '../../src/modules/payments/repository.ts'
import {
  createCustomer,
  createInvoice,
  eventsOf,
  finalizedInvoice,
  type List,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  sandboxCardCharge,
  savedSandboxCard,
  sessionOf,
  submitCard,
  unprocessedCardPayment,
  whileLocked,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

/** Every key DESIGN.md lists for the payment object; each must be present, `null` when empty. */
const PAYMENT_KEYS = [
  'id',
  'human_id',
  'customer_id',
  'destination_type',
  'destination_id',
  'subject',
  'amount',
  'amount_paid',
  'amount_reserved',
  'amount_refunded',
  'currency',
  'payment_status',
  'current_state',
  'payment_method_type',
  'payment_method_id',
  'payment_gateway',
  'gateway_payment_id',
  'gateway_tracking_id',
  'payment_url',
  'active',
  'payment_date',
  'billing_address',
  'description',
  'metadata',
  'status_code',
  'error_message',
  'success_url',
  'cancel_url',
  'save_card_and_make_default',
  'attempts',
  'created_at',
  'updated_at',
  'succeeded_at',
  'failed_at',
  'refunded_at',
  'cancelled_at',
  'tenant_id',
  'idempotency_key',
  'invoice_number',
  'gateway_metadata',
  'track_attempts',
  'created_by',
  'updated_by',
] as const

const HUMAN_ID = /^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$/
const DECIMAL = /^\d+\.\d{2}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/
const EXTERNAL_SECRET = 'whsec_x'
const MINUTE = 60_000

/** `POST /v1/payments` with a body taken as is (no defaults added), answered as an error or a payment. */
function postPayment<T = ErrorBody>(body: Record<string, unknown>, key?: string) {
  return ctx.post<T>('/v1/payments', body, key === undefined ? {} : { key })
}

/** What a Flexprice client sends, field for field. */
function flexpriceBody(invoiceId: string, overrides: Record<string, unknown> = {}) {
  return {
    destination_type: 'INVOICE',
    destination_id: invoiceId,
    payment_method_type: 'PAYMENT_LINK',
    payment_gateway: 'sandbox',
    amount: '100.00',
    currency: 'USD',
    process_payment: true,
    success_url: 'https://merchant.example/success',
    cancel_url: 'https://merchant.example/cancel',
    metadata: { flexprice_invoice: 'in_123', source: 'flexprice' },
    idempotency_key: `flex-${randomUUID()}`,
    ...overrides,
  }
}

async function paymentRowsFor(destinationId: string) {
  return ctx.db
    .selectFrom('payments')
    .select(['id', 'payment_status'])
    .where('destination_id', '=', destinationId)
    .execute()
}

async function paymentCount() {
  const rows = await ctx.db
    .selectFrom('payments')
    .select(['id'])
    .where('environment_id', '=', ctx.main.test.id)
    .execute()
  return rows.length
}

async function fundBalance(customerId: string, amount: string, currency = 'usd') {
  const res = await ctx.post(`/v1/customers/${customerId}/balance_transactions`, {
    amount,
    currency,
  })
  expect(res.status).toBe(201)
}

async function balanceOf(customerId: string, currency = 'usd') {
  const res = await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customerId}`)
  expect(res.status).toBe(200)
  return res.body.balances[currency] ?? '0.00'
}

async function offlinePayment(
  invoiceId: string,
  amount: string,
  extra: Record<string, unknown> = {},
) {
  const res = await createPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'OFFLINE',
    amount,
    ...extra,
  })
  expect(res.status).toBe(201)
  return res.body
}

async function linkPayment(invoiceId: string, amount = '100.00', key?: string) {
  const res = await createPayment(
    ctx,
    {
      destination_id: invoiceId,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount,
    },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body
}

let externalConnected = false
async function connectExternal() {
  if (externalConnected) return
  const res = await ctx.post('/v1/gateway_connections', {
    gateway: 'external',
    credentials: { webhook_secret: EXTERNAL_SECRET },
  })
  expect(res.status).toBe(201)
  externalConnected = true
}

/** Posts an external system's report as it would: the raw JSON and its hex HMAC-SHA256. */
async function externalWebhook(report: Record<string, unknown>, signature?: string) {
  const raw = JSON.stringify(report)
  const response = await ctx.app.inject({
    method: 'POST',
    url: `/v1/webhooks/external/${ctx.main.tenant.id}/${ctx.main.test.id}`,
    headers: {
      'content-type': 'application/json',
      'x-signature': signature ?? createHmac('sha256', EXTERNAL_SECRET).update(raw).digest('hex'),
    },
    payload: raw,
  })
  return { status: response.statusCode, body: JSON.parse(response.body) as unknown }
}

/** The external system's report that `paymentId` is now `status`, as a new event. */
function reportExternal(paymentId: string, status: string) {
  return externalWebhook({ event_id: `ext_evt_${randomUUID()}`, payment_id: paymentId, status })
}

async function customerToken(customerId: string) {
  const res = await ctx.post<{ token: string; customer_id: string }>(
    `/v1/customers/${customerId}/tokens`,
    {},
  )
  expect(res.status).toBe(201)
  return res.body.token
}

function expectError(
  res: { status: number; body: unknown },
  status: number,
  code: string,
): ErrorBody['error'] {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  const body = res.body as ErrorBody
  expect(Object.keys(body)).toEqual(['error'])
  expect(body.error.code).toBe(code)
  expect(typeof body.error.message).toBe('string')
  expect(body.error.message.length).toBeGreaterThan(0)
  expect(typeof body.error.details).toBe('object')
  expect(body.error.details).not.toBeNull()
  return body.error
}

describe('POST /v1/payments: Flexprice compatibility', () => {
  test('a Flexprice request (PAYMENT_LINK, amount as a string, currency uppercase) is 201 with every payment key', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id)
    const res = await postPayment<PaymentBody>(body)
    expect(res.status, res.text).toBe(201)
    const payment = res.body
    for (const key of PAYMENT_KEYS) expect(payment, `missing key ${key}`).toHaveProperty(key)
    expect(payment.id).toMatch(/^pay_/)
    expect(payment.human_id).toMatch(HUMAN_ID)
    expect(payment).toMatchObject({
      customer_id: customer.id,
      destination_type: 'INVOICE',
      destination_id: invoice.id,
      subject: invoice.id,
      amount: '100.00',
      amount_paid: '0.00',
      amount_reserved: '0.00',
      amount_refunded: '0.00',
      currency: 'usd',
      payment_status: 'PENDING',
      current_state: 'pending',
      payment_method_type: 'PAYMENT_LINK',
      payment_method_id: null,
      payment_gateway: 'sandbox',
      gateway_payment_id: null,
      active: true,
      payment_date: null,
      billing_address: null,
      description: null,
      metadata: { flexprice_invoice: 'in_123', source: 'flexprice' },
      status_code: null,
      error_message: null,
      success_url: 'https://merchant.example/success',
      cancel_url: 'https://merchant.example/cancel',
      save_card_and_make_default: false,
      succeeded_at: null,
      failed_at: null,
      refunded_at: null,
      cancelled_at: null,
      tenant_id: ctx.main.tenant.id,
      idempotency_key: body.idempotency_key,
      invoice_number: invoice.number,
      gateway_metadata: {},
    })
    expect(payment.payment_url).toMatch(/\/sandbox\/checkout\/sbs_/)
    expect(payment.gateway_tracking_id).toBe(sessionOf(payment))
    expect(payment.created_at).toMatch(ISO)
    expect(payment.updated_at).toMatch(ISO)
    expect(typeof payment.track_attempts).toBe('boolean')
    expect(payment.created_by === null || typeof payment.created_by === 'string').toBe(true)
    expect(payment.updated_by === null || typeof payment.updated_by === 'string').toBe(true)
    expect(Array.isArray(payment.attempts)).toBe(true)
    // The same keys on a read.
    const read = await ctx.get<PaymentBody>(`/v1/payments/${payment.id}`)
    expect(read.status).toBe(200)
    for (const key of PAYMENT_KEYS) expect(read.body).toHaveProperty(key)
    expect(read.body).toEqual(payment)
  })

  test('every key is present in a list item too', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await offlinePayment(invoice.id, '100.00')
    const list = await ctx.get<List<PaymentBody>>(`/v1/payments?customer_id=${customer.id}`)
    expect(list.status).toBe(200)
    expect(list.body.items).toHaveLength(1)
    for (const key of PAYMENT_KEYS) expect(list.body.items[0]).toHaveProperty(key)
  })

  test('the amount may be a JSON number, as Flexprice clients send it', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await postPayment<PaymentBody>(
      flexpriceBody(invoice.id, {
        payment_method_type: 'OFFLINE',
        payment_gateway: undefined,
        amount: 100,
      }),
    )
    expect(res.status, res.text).toBe(201)
    expect(res.body).toMatchObject({
      amount: '100.00',
      amount_paid: '100.00',
      currency: 'usd',
      payment_status: 'SUCCEEDED',
      current_state: 'succeeded',
      payment_gateway: 'offline',
    })
    for (const key of PAYMENT_KEYS) expect(res.body).toHaveProperty(key)
    expect(res.body.succeeded_at).toMatch(ISO)
  })

  test('a fractional number amount keeps its cents: 40.5 is "40.50"', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await postPayment<PaymentBody>(
      flexpriceBody(invoice.id, {
        payment_method_type: 'OFFLINE',
        payment_gateway: undefined,
        amount: 40.5,
      }),
    )
    expect(res.status, res.text).toBe(201)
    expect(res.body.amount).toBe('40.50')
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('59.50')
  })

  test('amounts are decimal strings in the response', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await offlinePayment(invoice.id, '12.5')
    for (const field of ['amount', 'amount_paid', 'amount_reserved', 'amount_refunded'] as const)
      expect(payment[field]).toMatch(DECIMAL)
    expect(payment.amount).toBe('12.50')
  })
})

describe('POST /v1/payments: validation refuses and writes nothing', () => {
  test("a CARD payment naming another gateway than its card's is refused before anything is written", async () => {
    const other = await ctx.createTenantFixture('Card gateways')
    const key = other.key
    const scope = { tenantId: other.tenant.id, environmentId: other.test.id }
    expect(
      (
        await ctx.post(
          '/v1/gateway_connections',
          {
            gateway: 'stripe',
            credentials: { secret_key: 'sk_test_x', webhook_secret: 'whsec_x' },
            settings: { base_url: 'http://127.0.0.1:9' },
          },
          { key },
        )
      ).status,
    ).toBe(201)
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'C', email: 'c@example.com' },
      { key },
    )
    const method = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.body.id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: `sbcard_${customer.body.id}`,
      last4: '4242',
    })
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      },
      { key },
    )
    await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key })
    /** A stripe CARD payment of the invoice with `cardId`. */
    const cardPayment = (cardId: string, extra: Record<string, unknown> = {}) =>
      ctx.post<PaymentBody>(
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: invoice.body.id,
          currency: 'usd',
          amount: '10.00',
          payment_method_type: 'CARD',
          payment_gateway: 'stripe',
          payment_method_id: cardId,
          ...extra,
        },
        { key },
      )
    const res = await cardPayment(method.id)
    // Before, the payment was written, then refused when its card was charged.
    expectError(res, 400, 'validation_error')
    const left = await ctx.get<List<PaymentBody>>(
      `/v1/payments?destination_id=${invoice.body.id}`,
      { key },
    )
    expect(
      left.body.items.map((p) => [p.payment_status, p.payment_gateway, p.payment_method_id]),
    ).toEqual([])
    // Nor can PATCH give a payment a card its gateway cannot charge.
    const stripeCard = await savePaymentMethod(ctx.db, scope, {
      customerId: customer.body.id,
      gateway: 'stripe',
      gatewayPaymentMethodId: `pm_${customer.body.id}`,
      last4: '4242',
    })
    const initiated = await cardPayment(stripeCard.id, { process_payment: false })
    expect(initiated.status, initiated.text).toBe(201)
    const patched = await ctx.patch(
      `/v1/payments/${initiated.body.id}`,
      { payment_method_id: method.id },
      { key },
    )
    expectError(patched, 400, 'validation_error')
    expect(
      (await ctx.get<PaymentBody>(`/v1/payments/${initiated.body.id}`, { key })).body,
    ).toMatchObject({
      payment_method_id: stripeCard.id,
    })
  })

  test.each([
    { name: 'amount 0', overrides: { amount: '0' }, status: 400, code: 'validation_error' },
    {
      name: 'amount 0 as a number',
      overrides: { amount: 0 },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'a negative amount',
      overrides: { amount: '-10.00' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'more than amount_remaining',
      overrides: { amount: '100.01' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'too many decimals',
      overrides: { amount: '10.001' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'an amount that is not a number',
      overrides: { amount: 'ten' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: "a currency that is not the invoice's",
      overrides: { currency: 'EUR' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'an unknown gateway',
      overrides: { payment_gateway: 'paypal' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'PAYMENT_LINK without payment_gateway',
      overrides: { payment_method_type: 'PAYMENT_LINK', payment_gateway: undefined },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'OFFLINE with the sandbox gateway',
      overrides: { payment_method_type: 'OFFLINE', payment_gateway: 'sandbox' },
      status: 422,
      code: 'not_supported',
    },
    {
      name: 'CREDITS with the sandbox gateway',
      overrides: { payment_method_type: 'CREDITS', payment_gateway: 'sandbox' },
      status: 422,
      code: 'not_supported',
    },
    {
      name: 'an unknown payment_method_type',
      overrides: { payment_method_type: 'CHEQUE' },
      status: 400,
      code: 'validation_error',
    },
    {
      name: 'destination_type other than INVOICE',
      overrides: { destination_type: 'ORDER' },
      status: 400,
      code: 'validation_error',
    },
  ])('$name → $status $code', async ({ overrides, status, code }) => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await postPayment(
      flexpriceBody(invoice.id, {
        payment_method_type: 'OFFLINE',
        payment_gateway: undefined,
        ...overrides,
      }),
    )
    expectError(res, status, code)
    expect(await paymentRowsFor(invoice.id)).toEqual([])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '0.00',
      amount_remaining: '100.00',
    })
  })

  test('more than what is left after an earlier payment is refused', async () => {
    const { invoice } = await invoiceToPay(ctx)
    await offlinePayment(invoice.id, '70.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '30.01',
    })
    const error = expectError(res, 400, 'validation_error')
    expect(error.details).toMatchObject({ field: 'amount' })
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
  })

  test('a paid invoice is 409 conflict', async () => {
    const { invoice } = await invoiceToPay(ctx)
    await offlinePayment(invoice.id, '100.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '1.00',
    })
    expectError(res, 409, 'conflict')
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
  })

  test('a voided invoice is 422 invalid_state_transition', async () => {
    const { invoice } = await invoiceToPay(ctx)
    expect((await ctx.post(`/v1/invoices/${invoice.id}/void`)).status).toBe(200)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '10.00',
    })
    expectError(res, 422, 'invalid_state_transition')
    expect(await paymentRowsFor(invoice.id)).toEqual([])
  })

  test('an invoice whose link is open cannot be voided (422) until the link is cancelled: a payment made on it would have nowhere to go', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    expect(link.payment_status).toBe('PENDING')
    const refused = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/void`)
    expectError(refused, 422, 'invalid_state_transition')
    expect(refused.body.error.details).toMatchObject({
      payment_id: link.id,
      payment_status: 'PENDING',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ invoice_status: 'FINALIZED' })

    // Still payable: the customer's card settles the payment and pays the invoice.
    const paid = await submitCard(ctx, sessionOf(link), '4242424242424242')
    expect(paid.statusCode).toBe(200)
    expect((await getPayment(ctx, link.id)).payment_status).toBe('SUCCEEDED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })

  test('an invoice can be voided once its open payment is cancelled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    expect((await ctx.post(`/v1/payments/${link.id}/cancel`)).status).toBe(200)
    const voided = await ctx.post<{ invoice_status: string }>(`/v1/invoices/${invoice.id}/void`)
    expect(voided.status, voided.text).toBe(200)
    expect(voided.body.invoice_status).toBe('VOIDED')
  })

  test('a draft invoice is 422 invalid_state_transition', async () => {
    const customer = await createCustomer(ctx)
    const draft = await createInvoice(ctx, customer.id)
    expect(draft.invoice_status).toBe('DRAFT')
    const res = await createPayment(ctx, {
      destination_id: draft.id,
      payment_method_type: 'OFFLINE',
      amount: '10.00',
    })
    expectError(res, 422, 'invalid_state_transition')
    expect(await paymentRowsFor(draft.id)).toEqual([])
  })

  test('an invoice past its payment window is 422', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id, { payment_window_days: 1 })
    expect(invoice.payment_window_ends_at).not.toBeNull()
    const before = await ctx.get<{ payable: boolean }>(`/v1/invoices/${invoice.id}/pay_options`)
    expect(before.body.payable).toBe(true)
    ctx.clock.advance(2 * 24 * 60 * MINUTE)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '10.00',
    })
    expectError(res, 422, 'invalid_state_transition')
    expect(await paymentRowsFor(invoice.id)).toEqual([])
  })

  test('an unknown invoice is 404 not_found', async () => {
    const res = await createPayment(ctx, {
      destination_id: 'inv_01jzzzzzzzzzzzzzzzzzzzzzzz',
      payment_method_type: 'OFFLINE',
      amount: '10.00',
    })
    expectError(res, 404, 'not_found')
    expect(await paymentRowsFor('inv_01jzzzzzzzzzzzzzzzzzzzzzzz')).toEqual([])
  })

  test.each(['destination_type', 'destination_id', 'payment_method_type', 'amount', 'currency'])(
    'a request without %s is 400 validation_error naming the field',
    async (field) => {
      const { invoice } = await invoiceToPay(ctx)
      const before = await paymentCount()
      const full = flexpriceBody(invoice.id, {
        payment_method_type: 'OFFLINE',
        payment_gateway: undefined,
      })
      const body = Object.fromEntries(Object.entries(full).filter(([name]) => name !== field))
      const res = await postPayment(body)
      const error = expectError(res, 400, 'validation_error')
      expect(JSON.stringify(error)).toContain(field)
      expect(await paymentCount()).toBe(before)
    },
  )

  test('an empty body is 400', async () => {
    const before = await paymentCount()
    expectError(await postPayment({}), 400, 'validation_error')
    expect(await paymentCount()).toBe(before)
  })
})

describe('rails', () => {
  test('OFFLINE succeeds at once and reconciles the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await offlinePayment(invoice.id, '100.00')
    expect(payment).toMatchObject({
      payment_status: 'SUCCEEDED',
      current_state: 'succeeded',
      payment_gateway: 'offline',
      amount_paid: '100.00',
      payment_url: null,
    })
    expect(payment.succeeded_at).toMatch(ISO)
    expect(payment.invoice_ids).toEqual([invoice.id])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
  })

  test('CREDITS debits the balance through the ledger and succeeds', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fundBalance(customer.id, '150.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '100.00',
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_gateway: 'platform',
      amount_paid: '100.00',
    })
    expect(await balanceOf(customer.id)).toBe('50.00')
    const ledger = await ctx.get<
      List<{ type: string; amount: string; balance_after: string; source_id: string | null }>
    >(`/v1/customers/${customer.id}/balance_transactions?type=payment`)
    expect(ledger.body.items).toHaveLength(1)
    expect(ledger.body.items[0]).toMatchObject({
      type: 'payment',
      amount: '-100.00',
      balance_after: '50.00',
      source_id: res.body.id,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
    })
  })

  test('CREDITS with too little balance is 402 insufficient_funds: payment FAILED, balance unchanged', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fundBalance(customer.id, '30.00')
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '100.00',
    })
    const error = expectError(res, 402, 'insufficient_funds')
    const rows = await paymentRowsFor(invoice.id)
    expect(rows).toHaveLength(1)
    const id = rows[0]?.id ?? ''
    expect(error.details).toMatchObject({ payment_id: id })
    const payment = await getPayment(ctx, id)
    expect(payment).toMatchObject({
      payment_status: 'FAILED',
      current_state: 'failed',
      status_code: 'insufficient_funds',
      amount_paid: '0.00',
    })
    expect(payment.error_message).toEqual(expect.any(String))
    expect(payment.failed_at).toMatch(ISO)
    expect(payment.attempts.at(-1)).toMatchObject({
      status: 'failed',
      error_code: 'insufficient_funds',
    })
    expect(await balanceOf(customer.id)).toBe('30.00')
    const ledger = await ctx.get<List<unknown>>(
      `/v1/customers/${customer.id}/balance_transactions?type=payment`,
    )
    expect(ledger.body.items).toHaveLength(0)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'FAILED',
      amount_remaining: '100.00',
    })
  })

  test('partial payments: 40.00 CREDITS + 60.00 OFFLINE pay an invoice of 100.00', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fundBalance(customer.id, '40.00')
    const credits = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '40.00',
    })
    expect(credits.status, credits.text).toBe(201)
    expect(credits.body.payment_status).toBe('SUCCEEDED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '40.00',
      amount_remaining: '60.00',
    })
    const offline = await offlinePayment(invoice.id, '60.00')
    expect(offline.payment_status).toBe('SUCCEEDED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    expect(await balanceOf(customer.id)).toBe('0.00')
  })

  test('EXTERNAL without a gateway connection is refused and leaves no payment behind', async () => {
    const other = await ctx.createTenantFixture('No external connection')
    const customer = await createCustomer(ctx, {}, other.key)
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.id,
        currency: 'usd',
        lines: [{ description: 'Consulting', quantity: 1, unit_amount: '100.00' }],
      },
      { key: other.key },
    )
    expect(
      (await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key: other.key })).status,
    ).toBe(200)
    const res = await postPayment(
      {
        destination_type: 'INVOICE',
        destination_id: invoice.body.id,
        payment_method_type: 'EXTERNAL',
        amount: '100.00',
        currency: 'usd',
      },
      other.key,
    )
    expect(res.status).toBeGreaterThanOrEqual(400)
    expect(res.status).toBeLessThan(500)
    expect(res.body.error.details).toMatchObject({ payment_gateway: 'external' })
    // A refused request must not leave an INITIATED payment nobody was told about.
    expect(await paymentRowsFor(invoice.body.id)).toEqual([])
  })

  test('EXTERNAL waits PENDING; a signed webhook makes it SUCCEEDED and pays the invoice', async () => {
    await connectExternal()
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '100.00',
    })
    expect(created.status, created.text).toBe(201)
    expect(created.body).toMatchObject({
      payment_status: 'PENDING',
      current_state: 'pending',
      payment_gateway: 'external',
      payment_url: null,
      amount_paid: '0.00',
    })
    const eventId = `ext_evt_${randomUUID()}`
    const delivered = await externalWebhook({
      event_id: eventId,
      payment_id: created.body.id,
      status: 'succeeded',
    })
    expect(delivered.status).toBe(200)
    expect(delivered.body).toEqual({
      received: true,
      events: [{ id: eventId, type: 'payment.succeeded', outcome: 'applied' }],
    })
    expect(await getPayment(ctx, created.body.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
    })
    // The same delivery again changes nothing.
    const again = await externalWebhook({
      event_id: eventId,
      payment_id: created.body.id,
      status: 'succeeded',
    })
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ events: [{ id: eventId, outcome: 'duplicate' }] })
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['to_status', 'cause', 'cause_id'])
      .where('payment_id', '=', created.body.id)
      .where('to_status', '=', 'SUCCEEDED')
      .execute()
    expect(history).toEqual([{ to_status: 'SUCCEEDED', cause: 'webhook', cause_id: eventId }])
  })

  test('an EXTERNAL payment in flight that its system reports cancelled has failed: its invoice can be paid another way', async () => {
    await connectExternal()
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '100.00',
    })
    const report = (status: string) => reportExternal(created.body.id, status)
    expect((await report('processing')).status).toBe(200)
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('PROCESSING')
    expect((await report('cancelled')).status).toBe(200)
    // Before, PROCESSING → CANCELLED was refused and the payment stayed in flight, holding
    // its invoice until the system reported something else.
    expect(await getPayment(ctx, created.body.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'cancelled',
    })
    expect((await offlinePayment(invoice.id, '100.00')).payment_status).toBe('SUCCEEDED')
  })

  test('an external webhook with a bad signature is 400 and changes nothing', async () => {
    await connectExternal()
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '100.00',
    })
    expect(created.status, created.text).toBe(201)
    const eventId = `ext_evt_${randomUUID()}`
    const report = { event_id: eventId, payment_id: created.body.id, status: 'succeeded' }
    const wrongSecret = createHmac('sha256', 'whsec_wrong')
      .update(JSON.stringify(report))
      .digest('hex')
    for (const signature of [wrongSecret, 'not-hex', '']) {
      const res = await externalWebhook(report, signature)
      expectError(res, 400, 'validation_error')
    }
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('PENDING')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_remaining: '100.00' })
    const recorded = await ctx.db
      .selectFrom('webhook_events')
      .select(['id'])
      .where('event_id', '=', eventId)
      .execute()
    expect(recorded).toEqual([])
    // The correctly signed report is still accepted afterwards: the refusals recorded nothing.
    const good = await externalWebhook(report)
    expect(good.status).toBe(200)
    expect((await getPayment(ctx, created.body.id)).payment_status).toBe('SUCCEEDED')
  })

  test('an external report about a payment of another rail is not applied', async () => {
    await connectExternal()
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    const res = await reportExternal(link.id, 'succeeded')
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ events: [{ outcome: 'unknown_payment' }] })
    expect((await getPayment(ctx, link.id)).payment_status).toBe('PENDING')
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
  })

  test('an external failure report makes the payment FAILED with its code', async () => {
    await connectExternal()
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'EXTERNAL',
      amount: '100.00',
    })
    const res = await externalWebhook({
      event_id: `ext_evt_${randomUUID()}`,
      payment_id: created.body.id,
      status: 'failed',
      error_code: 'bank_rejected',
      error_message: 'The bank rejected the transfer',
    })
    expect(res.status).toBe(200)
    expect(await getPayment(ctx, created.body.id)).toMatchObject({
      payment_status: 'FAILED',
      status_code: 'bank_rejected',
      error_message: 'The bank rejected the transfer',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_remaining: '100.00' })
  })
})

describe('idempotency', () => {
  test('the same idempotency_key and body returns the same payment; no second payment', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id, {
      payment_method_type: 'OFFLINE',
      payment_gateway: undefined,
      amount: '40.00',
    })
    const first = await postPayment<PaymentBody>(body)
    expect(first.status, first.text).toBe(201)
    const second = await postPayment<PaymentBody>(body)
    expect(second.status, second.text).toBe(201)
    expect(second.body.id).toBe(first.body.id)
    expect(second.body.payment_status).toBe('SUCCEEDED')
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '40.00',
      amount_remaining: '60.00',
    })
  })

  test("the same idempotency_key naming another card is 422 idempotency_mismatch; the first request's card is not charged", async () => {
    const customer = await createCustomer(ctx)
    const declining = await savedSandboxCard(ctx, customer.id, '4000000000000002')
    const good = await savedSandboxCard(ctx, customer.id, '4242424242424242')
    const invoice = await finalizedInvoice(ctx, customer.id)
    const base = flexpriceBody(invoice.id, {
      payment_method_type: 'CARD',
      payment_gateway: 'sandbox',
      amount: '100.00',
    })
    const first = await postPayment<PaymentBody>({
      ...base,
      payment_method_id: declining.id,
      process_payment: false,
    })
    expect(first.status, first.text).toBe(201)
    expect(first.body.payment_status).toBe('INITIATED')
    // Another request (another card, processed now) under the same key: replayed, it would
    // have charged the first request's card.
    const second = await postPayment<ErrorBody>({ ...base, payment_method_id: good.id })
    expect(second.status, second.text).toBe(422)
    expect(second.body.error.code).toBe('idempotency_mismatch')
    expect((await getPayment(ctx, first.body.id)).payment_status).toBe('INITIATED')
    // The same request again is the same payment.
    const again = await postPayment<PaymentBody>({
      ...base,
      payment_method_id: declining.id,
      process_payment: false,
    })
    expect(again.status, again.text).toBe(201)
    expect(again.body.id).toBe(first.body.id)
  })

  test('requests sent at once with one idempotency_key make one payment, and pay the invoice once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id, {
      payment_method_type: 'OFFLINE',
      payment_gateway: undefined,
      amount: '40.00',
    })
    // All pass the first look-up together; the losers fail on the key when their payment is
    // written (with the commit) and answer with the winner's payment.
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => postPayment<PaymentBody>(body)),
    )
    for (const answer of answers) expect(answer.status, answer.text).toBe(201)
    const ids = new Set(answers.map((a) => a.body.id))
    expect(ids.size).toBe(1)
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '40.00',
      amount_remaining: '60.00',
    })
  })

  test.each(['100.00', '60.00'])(
    'requests sent at once with one idempotency_key for %s of 100.00: the later ones get the payment, not "already paid"',
    async (amount) => {
      const { invoice } = await invoiceToPay(ctx)
      const body = flexpriceBody(invoice.id, {
        payment_method_type: 'OFFLINE',
        payment_gateway: undefined,
        amount,
      })
      // The later requests wait on the invoice's lock while the first pays it: once they hold
      // it, what is left no longer takes their amount, and the key answers them.
      const answers = await Promise.all(
        Array.from({ length: 3 }, () => postPayment<PaymentBody>(body)),
      )
      for (const answer of answers) expect(answer.status, answer.text).toBe(201)
      expect(new Set(answers.map((a) => a.body.id)).size).toBe(1)
      expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
      expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe(amount)
    },
  )

  test('a payment link made earlier under the key is not opened once its invoice was paid meanwhile', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id)
    const made = await postPayment<PaymentBody>({ ...body, process_payment: false })
    expect(made.status, made.text).toBe(201)
    expect(made.body.payment_status).toBe('INITIATED')
    const offline = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(offline.status, offline.text).toBe(201)
    // The client sends its request again, now to be processed: no page to pay twice.
    const again = await postPayment(body)
    expectError(again, 409, 'conflict')
    expect((await getPayment(ctx, made.body.id)).payment_status).toBe('INITIATED')
    const sessions = await ctx.db
      .selectFrom('sandbox_sessions')
      .select('id')
      .where('payment_id', '=', made.body.id)
      .execute()
    expect(sessions).toEqual([])
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test('the same idempotency_key with another amount is 422 idempotency_mismatch', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id, {
      payment_method_type: 'OFFLINE',
      payment_gateway: undefined,
      amount: '40.00',
    })
    const first = await postPayment<PaymentBody>(body)
    expect(first.status).toBe(201)
    const res = await postPayment({ ...body, amount: '50.00' })
    const error = expectError(res, 422, 'idempotency_mismatch')
    expect(error.details).toMatchObject({ payment_id: first.body.id })
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('40.00')
  })

  test('the same idempotency_key for another invoice is 422 idempotency_mismatch', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { invoice: otherInvoice } = await invoiceToPay(ctx)
    const body = flexpriceBody(invoice.id, {
      payment_method_type: 'OFFLINE',
      payment_gateway: undefined,
      process_payment: false,
    })
    expect((await postPayment(body)).status).toBe(201)
    expectError(
      await postPayment({ ...body, destination_id: otherInvoice.id }),
      422,
      'idempotency_mismatch',
    )
    expect(await paymentRowsFor(otherInvoice.id)).toEqual([])
  })

  test('the Idempotency-Key header replays the first response', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const key = `idem-${randomUUID()}`
    const body = {
      destination_type: 'INVOICE',
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '25.00',
      currency: 'usd',
    }
    const first = await ctx.post<PaymentBody>('/v1/payments', body, { idempotencyKey: key })
    expect(first.status, first.text).toBe(201)
    const replay = await ctx.post<PaymentBody>('/v1/payments', body, { idempotencyKey: key })
    expect(replay.status).toBe(201)
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(replay.body.id).toBe(first.body.id)
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('25.00')
    const mismatch = await ctx.post(
      '/v1/payments',
      { ...body, amount: '26.00' },
      { idempotencyKey: key },
    )
    expectError(mismatch, 422, 'idempotency_mismatch')
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
  })
})

describe('process_payment and POST /v1/payments/:id/process', () => {
  test('process_payment:false leaves INITIATED; /process then processes; again is 422', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '100.00', { process_payment: false })
    expect(created).toMatchObject({
      payment_status: 'INITIATED',
      current_state: 'created',
      amount_paid: '0.00',
    })
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('100.00')
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/process`)
    expect(processed.status, processed.text).toBe(200)
    expect(processed.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
    const again = await ctx.post(`/v1/payments/${created.id}/process`)
    expectError(again, 422, 'invalid_state_transition')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('100.00')
  })

  test('a PAYMENT_LINK with process_payment:false has no link until processed', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
      process_payment: false,
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ payment_status: 'INITIATED', payment_url: null })
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${created.body.id}/process`)
    expect(processed.status).toBe(200)
    expect(processed.body.payment_status).toBe('PENDING')
    sessionOf(processed.body)
  })

  test('processing a PENDING payment is 422', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    expectError(await ctx.post(`/v1/payments/${link.id}/process`), 422, 'invalid_state_transition')
  })

  test('a FAILED CREDITS payment is retried by /process once the balance covers it', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const failed = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '100.00',
    })
    expect(failed.status).toBe(402)
    const [row] = await paymentRowsFor(invoice.id)
    await fundBalance(customer.id, '100.00')
    const retried = await ctx.post<PaymentBody>(`/v1/payments/${row?.id}/process`)
    expect(retried.status, retried.text).toBe(200)
    expect(retried.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      status_code: null,
      error_message: null,
    })
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['from_status', 'to_status'])
      .where('payment_id', '=', row?.id ?? '')
      .orderBy('id')
      .execute()
    expect(history.map((h) => `${h.from_status}→${h.to_status}`)).toEqual([
      'null→INITIATED',
      'INITIATED→FAILED',
      'FAILED→ON_RETRY',
      'ON_RETRY→PROCESSING',
      'PROCESSING→SUCCEEDED',
    ])
  })

  test('a link payment whose checkout expired (FAILED) is not reopened; a new payment pays the invoice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    // The customer cancels on the hosted page: the sandbox reports the checkout expired.
    const cancelled = await ctx.app.inject({
      method: 'POST',
      url: `/sandbox/checkout/${sessionOf(link)}/cancel`,
    })
    expect(cancelled.statusCode).toBe(200)
    expect((await getPayment(ctx, link.id)).payment_status).toBe('FAILED')
    // Only PROCESSING may follow ON_RETRY, never a new page: processing it again is refused and changes nothing.
    const retried = await ctx.post<ErrorBody>(`/v1/payments/${link.id}/process`)
    expect(retried.status, retried.text).toBe(422)
    expect(retried.body.error.code).toBe('invalid_state_transition')
    expect((await getPayment(ctx, link.id)).payment_status).toBe('FAILED')
    const fresh = await linkPayment(invoice.id)
    const paid = await submitCard(ctx, sessionOf(fresh), '4242424242424242')
    expect(paid.statusCode).toBe(200)
    expect((await getPayment(ctx, fresh.id)).payment_status).toBe('SUCCEEDED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
  })
})

describe('POST /v1/payments/:id/process', () => {
  test('a saved card is charged what the payment says under its lock, not what was read before it', async () => {
    const { payment } = await unprocessedCardPayment(ctx)
    const id = payment.id
    const processed = await whileLocked(
      ctx,
      id,
      () => ctx.post<PaymentBody>(`/v1/payments/${id}/process`),
      // A change committed while the charge waits for the lock (as a discount would be).
      async (holder) => {
        await holder.query('update payments set amount = 2500 where id = $1', [id])
        await holder.query('update payment_allocations set amount = 2500 where payment_id = $1', [
          id,
        ])
      },
    )
    expect(processed.status, processed.text).toBe(200)
    // Charged 30.00, it would be OVERPAID (the sandbox reports what it took).
    expect(processed.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount: '25.00',
      amount_paid: '25.00',
    })
  })

  // As Stripe refuses an unknown parameter: the route takes no body field, so an `amount`
  // is refused by name, not ignored while the payment is taken in full.
  test('a body field it does not take is 400 naming it, and nothing is taken', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '100.00', { process_payment: false })
    const res = await ctx.post<ErrorBody>(`/v1/payments/${created.id}/process`, {
      amount: '10.00',
    })
    expectError(res, 400, 'validation_error')
    expect(res.body.error.details).toEqual({
      errors: [{ field: 'body.amount', message: 'must NOT have additional properties' }],
    })
    expect((await getPayment(ctx, created.id)).payment_status).toBe('INITIATED')
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
    // `{}` is no field at all: the payment is processed.
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/process`, {})
    expect(processed.status, processed.text).toBe(200)
    expect(processed.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_paid: '100.00' })
  })
})

describe('POST /v1/payments/:id/cancel', () => {
  test('a PENDING sandbox link payment is CANCELLED and its page then refuses a card (409)', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    const session = sessionOf(link)
    const res = await ctx.post<PaymentBody>(`/v1/payments/${link.id}/cancel`)
    expect(res.status, res.text).toBe(200)
    expect(res.body).toMatchObject({ payment_status: 'CANCELLED', current_state: 'cancelled' })
    expect(res.body.cancelled_at).toMatch(ISO)
    const refused = await submitCard(ctx, session, '4242424242424242')
    expect(refused.statusCode).toBe(409)
    const after = await getPayment(ctx, link.id)
    expect(after.payment_status).toBe('CANCELLED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_remaining: '100.00' })
  })

  test('an INITIATED payment can be cancelled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    const res = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/cancel`)
    expect(res.status).toBe(200)
    expect(res.body.payment_status).toBe('CANCELLED')
    // A cancelled payment can no longer be processed.
    expectError(
      await ctx.post(`/v1/payments/${created.id}/process`),
      422,
      'invalid_state_transition',
    )
  })

  test('cancelling a SUCCEEDED payment is 422 and changes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const paid = await offlinePayment(invoice.id, '100.00')
    expectError(await ctx.post(`/v1/payments/${paid.id}/cancel`), 422, 'invalid_state_transition')
    expect((await getPayment(ctx, paid.id)).payment_status).toBe('SUCCEEDED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('SUCCEEDED')
  })

  test('a body field it does not take is 400 naming it, and the payment is not cancelled', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await linkPayment(invoice.id)
    const res = await ctx.post<ErrorBody>(`/v1/payments/${link.id}/cancel`, {
      cancellation_reason: 'duplicate',
    })
    expectError(res, 400, 'validation_error')
    expect(res.body.error.details).toEqual({
      errors: [
        { field: 'body.cancellation_reason', message: 'must NOT have additional properties' },
      ],
    })
    expect((await getPayment(ctx, link.id)).payment_status).toBe('PENDING')
    expect(await eventsOf(ctx, link.id, 'payment.cancelled')).toEqual([])
  })
})

describe('DELETE /v1/payments/:id', () => {
  test('an INITIATED payment is deactivated and hidden from the list unless include_inactive=true', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    const res = await ctx.delete<PaymentBody>(`/v1/payments/${created.id}`)
    expect(res.status, res.text).toBe(200)
    expect(res.body).toMatchObject({ id: created.id, active: false, payment_status: 'INITIATED' })
    const hidden = await ctx.get<List<PaymentBody>>(`/v1/payments?customer_id=${customer.id}`)
    expect(hidden.body.items).toEqual([])
    expect(hidden.body.pagination.total).toBe(0)
    const shown = await ctx.get<List<PaymentBody>>(
      `/v1/payments?customer_id=${customer.id}&include_inactive=true`,
    )
    expect(shown.body.items.map((p) => p.id)).toEqual([created.id])
    expect(shown.body.items[0]?.active).toBe(false)
    // Still retrievable by id.
    expect((await getPayment(ctx, created.id)).active).toBe(false)
  })

  test('a FAILED payment can be deleted', async () => {
    const { invoice } = await invoiceToPay(ctx)
    expect(
      (
        await createPayment(ctx, {
          destination_id: invoice.id,
          payment_method_type: 'CREDITS',
          amount: '100.00',
        })
      ).status,
    ).toBe(402)
    const [row] = await paymentRowsFor(invoice.id)
    const res = await ctx.delete<PaymentBody>(`/v1/payments/${row?.id}`)
    expect(res.status).toBe(200)
    expect(res.body.active).toBe(false)
    // Deleted, it takes no money: processing it again is refused, and it stays as it was.
    const again = await ctx.post(`/v1/payments/${row?.id}/process`)
    expectError(again, 422, 'invalid_state_transition')
    expect(await getPayment(ctx, String(row?.id))).toMatchObject({
      payment_status: 'FAILED',
      active: false,
    })
  })

  test.each([
    ['SUCCEEDED', 'offline'],
    ['PENDING', 'link'],
  ] as const)('a %s payment cannot be deleted (422)', async (_status, kind) => {
    const { invoice } = await invoiceToPay(ctx)
    const payment =
      kind === 'offline'
        ? await offlinePayment(invoice.id, '100.00')
        : await linkPayment(invoice.id)
    expectError(await ctx.delete(`/v1/payments/${payment.id}`), 422, 'invalid_state_transition')
    expect((await getPayment(ctx, payment.id)).active).toBe(true)
  })

  test('a body field it does not take is 400 naming it, and the payment stays active', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    const res = await ctx.request<ErrorBody>('DELETE', `/v1/payments/${created.id}`, {
      reason: 'duplicate',
    })
    expectError(res, 400, 'validation_error')
    expect(res.body.error.details).toEqual({
      errors: [{ field: 'body.reason', message: 'must NOT have additional properties' }],
    })
    expect((await getPayment(ctx, created.id)).active).toBe(true)
  })
})

describe('a deleted payment the provider reports on', () => {
  /** An EXTERNAL payment handed to the merchant's system (INITIATED), then deleted. */
  async function deletedExternal() {
    await connectExternal()
    const { customer, invoice } = await invoiceToPay(ctx)
    const put = await ctx.put<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'EXTERNAL',
      some_data: { ref: 'x' },
    })
    expect(put.status, put.text).toBe(201)
    expect(put.body.payment_status).toBe('INITIATED')
    expect((await ctx.delete(`/v1/payments/${put.body.id}`)).status).toBe(200)
    return { customer, invoice, payment: put.body }
  }

  test('reported paid after its invoice was voided, it is shown again with the money, not hidden', async () => {
    const { customer, invoice, payment } = await deletedExternal()
    // A deleted payment no longer holds its invoice open: it can be voided.
    expect((await ctx.post(`/v1/invoices/${invoice.id}/void`)).status).toBe(200)
    const report = await reportExternal(payment.id, 'succeeded')
    expect(report.status).toBe(200)
    // Before, it was SUCCEEDED and still hidden (active: false): money in no list.
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      active: true,
    })
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?customer_id=${customer.id}`)
    expect(listed.body.items.map((p) => p.id)).toContain(payment.id)
    // Recorded on the voided invoice, for the merchant to refund, as money a voided invoice
    // receives from a payment in flight is.
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      invoice_status: 'VOIDED',
      amount_paid: '100.00',
    })
  })

  test('reported processing, it is shown again, in flight: the invoice is not paid a second way beside it', async () => {
    const { invoice, payment } = await deletedExternal()
    const report = await reportExternal(payment.id, 'processing')
    expect(report.status).toBe(200)
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'PROCESSING',
      active: true,
    })
    const offline = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expectError(offline, 409, 'conflict')
  })
})

describe('PUT and PATCH /v1/payments/:id', () => {
  // Only a CARD payment charges a saved card: a link's card is the one entered on its page,
  // saved and made the default when the payment asks, which a card named here would hide.
  test('payment_method_id on a PAYMENT_LINK payment is 400', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const card = await savedSandboxCard(ctx, customer.id, '4242424242424242')
    const link = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
      process_payment: false,
      save_card_and_make_default: true,
    })
    expect(link.status, link.text).toBe(201)
    const res = await ctx.patch<ErrorBody>(`/v1/payments/${link.body.id}`, {
      payment_method_id: card.id,
    })
    expectError(res, 400, 'validation_error')
    expect((await getPayment(ctx, link.body.id)).payment_method_id).toBeNull()
  })

  test("another customer's card, or null with no default, is refused and the payment keeps its card", async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const own = await savedSandboxCard(ctx, customer.id, '4242424242424242')
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_method_id: own.id,
      amount: '100.00',
      process_payment: false,
    })
    expect(created.status, created.text).toBe(201)
    const { customer: other } = await invoiceToPay(ctx)
    const theirs = await savedSandboxCard(ctx, other.id, '4242424242424242')
    expectError(
      await ctx.patch(`/v1/payments/${created.body.id}`, { payment_method_id: theirs.id }),
      404,
      'not_found',
    )
    // The customer has no default (the card was saved without one): null names nothing.
    await ctx.patch(`/v1/customers/${customer.id}`, { default_payment_method_id: null })
    expectError(
      await ctx.patch(`/v1/payments/${created.body.id}`, { payment_method_id: null }),
      402,
      'no_default_payment_method',
    )
    expect((await getPayment(ctx, created.body.id)).payment_method_id).toBe(own.id)
  })

  // DESIGN: CARD uses payment_method_id or the customer's default. Cleared, it names the
  // default again, as at creation; processing it then charged nothing (402) for good.
  test("payment_method_id: null on a CARD payment names the customer's default, which processing then charges", async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const first = await savedSandboxCard(ctx, customer.id, '4242424242424242')
    const created = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_method_id: first.id,
      amount: '100.00',
      process_payment: false,
    })
    expect(created.status, created.text).toBe(201)
    const other = await savedSandboxCard(ctx, customer.id, '5555555555554444')
    await ctx.patch(`/v1/customers/${customer.id}`, { default_payment_method_id: other.id })
    const patched = await ctx.patch<PaymentBody>(`/v1/payments/${created.body.id}`, {
      payment_method_id: null,
    })
    expect(patched.status, patched.text).toBe(200)
    expect(patched.body.payment_method_id).toBe(other.id)
    const processed = await ctx.post<PaymentBody>(`/v1/payments/${created.body.id}/process`)
    expect(processed.status, processed.text).toBe(200)
    expect(processed.body).toMatchObject({
      payment_status: 'SUCCEEDED',
      payment_method_id: other.id,
    })
  })

  test.each(['PATCH', 'PUT'] as const)(
    '%s changes description and success_url and merges metadata',
    async (method) => {
      const { invoice } = await invoiceToPay(ctx)
      const created = await offlinePayment(invoice.id, '10.00', {
        process_payment: false,
        metadata: { keep: 'yes', drop: 'x', change: 'old' },
      })
      const res = await ctx.request<PaymentBody>(method, `/v1/payments/${created.id}`, {
        description: 'Wire transfer from ACME',
        success_url: 'https://merchant.example/paid',
        metadata: { drop: '', change: 'new', add: '1' },
      })
      expect(res.status, res.text).toBe(200)
      expect(res.body).toMatchObject({
        description: 'Wire transfer from ACME',
        success_url: 'https://merchant.example/paid',
        metadata: { keep: 'yes', change: 'new', add: '1' },
        payment_status: 'INITIATED',
      })
      expect(res.body.metadata).not.toHaveProperty('drop')
      expect(await getPayment(ctx, created.id)).toMatchObject({
        description: 'Wire transfer from ACME',
        metadata: { keep: 'yes', change: 'new', add: '1' },
      })
    },
  )

  test('description and metadata may change after the payment succeeded', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const paid = await offlinePayment(invoice.id, '100.00')
    const res = await ctx.patch<PaymentBody>(`/v1/payments/${paid.id}`, {
      description: 'Cheque #123',
      metadata: { reference: 'CHQ-123' },
    })
    expect(res.status, res.text).toBe(200)
    expect(res.body).toMatchObject({
      description: 'Cheque #123',
      metadata: { reference: 'CHQ-123' },
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
  })

  test.each(['PATCH', 'PUT'] as const)(
    '%s of payment_method_id after processing is 422',
    async (method) => {
      const { invoice } = await invoiceToPay(ctx)
      const paid = await offlinePayment(invoice.id, '100.00')
      const res = await ctx.request(method, `/v1/payments/${paid.id}`, {
        payment_method_id: 'pm_01jzzzzzzzzzzzzzzzzzzzzzzz',
      })
      expectError(res, 422, 'invalid_state_transition')
      expect((await getPayment(ctx, paid.id)).payment_method_id).toBeNull()
    },
  )

  test('an unknown payment_method_id before processing is 404', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const card = await savedSandboxCard(ctx, customer.id, '4242424242424242')
    const created = (
      await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'CARD',
        payment_method_id: card.id,
        amount: '10.00',
        process_payment: false,
      })
    ).body
    expectError(
      await ctx.patch(`/v1/payments/${created.id}`, {
        payment_method_id: 'pm_01jzzzzzzzzzzzzzzzzzzzzzzz',
      }),
      404,
      'not_found',
    )
  })

  // As Stripe refuses an unknown parameter: a field the update does not take is named, and
  // nothing of the request is applied (not the editable part either).
  test('fields that are not editable (amount, status, customer) are refused by name, and nothing changes', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    for (const [field, value] of [
      ['amount', '1.00'],
      ['payment_status', 'SUCCEEDED'],
      ['customer_id', 'cus_01jzzzzzzzzzzzzzzzzzzzzzzz'],
    ] as const) {
      for (const send of [ctx.patch.bind(ctx), ctx.put.bind(ctx)]) {
        const res = await send<ErrorBody>(`/v1/payments/${created.id}`, {
          [field]: value,
          description: 'not this either',
        })
        expectError(res, 400, 'validation_error')
        expect(res.body.error.details).toEqual({
          errors: [{ field: `body.${field}`, message: 'must NOT have additional properties' }],
        })
      }
    }
    expect(await getPayment(ctx, created.id)).toMatchObject({
      amount: '10.00',
      payment_status: 'INITIATED',
      customer_id: created.customer_id,
      description: created.description,
    })
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
  })

  test('a bad value for an editable field is 400 and changes nothing', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    expectError(
      await ctx.patch(`/v1/payments/${created.id}`, { success_url: 'not a url' }),
      400,
      'validation_error',
    )
    expectError(
      await ctx.patch(`/v1/payments/${created.id}`, { metadata: { key: 42 } }),
      400,
      'validation_error',
    )
    expect((await getPayment(ctx, created.id)).success_url).toBeNull()
  })
})

describe('GET /v1/payments filters, dates, pagination and sort', () => {
  test('every filter, both pagination styles and sort=-amount', async () => {
    const customer = await createCustomer(ctx)
    const usd = await finalizedInvoice(ctx, customer.id)
    const eur = await finalizedInvoice(ctx, customer.id, {
      currency: 'eur',
      lines: [{ description: 'EU consulting', quantity: 1, unit_amount: '50.00' }],
    })
    ctx.clock.advance(MINUTE)
    const t1 = ctx.clock.now()
    const p1 = await offlinePayment(usd.id, '10.00', { process_payment: false })
    ctx.clock.advance(MINUTE)
    const t2 = ctx.clock.now()
    const p2 = await linkPayment(usd.id, '20.00')
    ctx.clock.advance(MINUTE)
    const t3 = ctx.clock.now()
    const p3 = await offlinePayment(usd.id, '30.00')
    ctx.clock.advance(MINUTE)
    const p4 = (
      await createPayment(ctx, {
        destination_id: eur.id,
        payment_method_type: 'OFFLINE',
        amount: '50.00',
        currency: 'eur',
        process_payment: false,
      })
    ).body
    expect(p4.currency).toBe('eur')
    expect(t1 < t2 && t2 < t3).toBe(true)

    const ids = async (query: string) => {
      const res = await ctx.get<List<PaymentBody>>(
        `/v1/payments?customer_id=${customer.id}${query ? `&${query}` : ''}`,
      )
      expect(res.status, `${query}: ${res.text}`).toBe(200)
      return res.body.items.map((p) => p.id)
    }
    // Newest first by default.
    expect(await ids('')).toEqual([p4.id, p3.id, p2.id, p1.id])
    expect(await ids('status=SUCCEEDED')).toEqual([p3.id])
    expect(await ids('payment_status=INITIATED')).toEqual([p4.id, p1.id])
    expect(await ids('payment_status=PENDING')).toEqual([p2.id])
    expect(await ids('payment_method_type=PAYMENT_LINK')).toEqual([p2.id])
    expect(await ids('payment_method_type=OFFLINE')).toEqual([p4.id, p3.id, p1.id])
    expect(await ids('payment_gateway=sandbox')).toEqual([p2.id])
    expect(await ids('payment_gateway=offline')).toEqual([p4.id, p3.id, p1.id])
    expect(await ids(`destination_id=${eur.id}`)).toEqual([p4.id])
    expect(await ids(`destination_id=${usd.id}`)).toEqual([p3.id, p2.id, p1.id])
    expect(await ids('currency=eur')).toEqual([p4.id])
    expect(await ids('currency=EUR')).toEqual([p4.id])
    expect(await ids('currency=usd')).toEqual([p3.id, p2.id, p1.id])
    // Dates: ISO 8601 and unix seconds, both bounds inclusive.
    expect(await ids(`from_date=${t3.toISOString()}`)).toEqual([p4.id, p3.id])
    expect(await ids(`to_date=${Math.floor(t2.getTime() / 1000)}`)).toEqual([p2.id, p1.id])
    expect(
      await ids(`from_date=${Math.floor(t2.getTime() / 1000)}&to_date=${t3.toISOString()}`),
    ).toEqual([p3.id, p2.id])
    // Sort.
    expect(await ids('sort=-amount')).toEqual([p4.id, p3.id, p2.id, p1.id])
    expect(await ids('sort=amount')).toEqual([p1.id, p2.id, p3.id, p4.id])
    expect(await ids('sort=created_at')).toEqual([p1.id, p2.id, p3.id, p4.id])
    // Filters combine.
    expect(await ids('payment_method_type=OFFLINE&payment_status=INITIATED&currency=usd')).toEqual([
      p1.id,
    ])

    // limit + offset
    const byOffset = await ctx.get<List<PaymentBody>>(
      `/v1/payments?customer_id=${customer.id}&limit=2&offset=1`,
    )
    expect(byOffset.status).toBe(200)
    expect(byOffset.body.items.map((p) => p.id)).toEqual([p3.id, p2.id])
    expect(byOffset.body.pagination).toEqual({ total: 4, limit: 2, offset: 1 })
    // size + page (0-based)
    const byPage = await ctx.get<List<PaymentBody>>(
      `/v1/payments?customer_id=${customer.id}&size=3&page=1`,
    )
    expect(byPage.status).toBe(200)
    expect(byPage.body.items.map((p) => p.id)).toEqual([p1.id])
    expect(byPage.body.pagination).toEqual({ total: 4, limit: 3, offset: 3 })
    const firstPage = await ctx.get<List<PaymentBody>>(
      `/v1/payments?customer_id=${customer.id}&size=3&page=0&sort=-amount`,
    )
    expect(firstPage.body.items.map((p) => p.id)).toEqual([p4.id, p3.id, p2.id])
    expect(firstPage.body.pagination).toEqual({ total: 4, limit: 3, offset: 0 })
  })

  test.each([
    ['status=NOPE'],
    ['payment_method_type=CHEQUE'],
    ['sort=-nope'],
    ['from_date=yesterday'],
    ['offset=1&page=1'],
    ['limit=0'],
    ['limit=1001'],
  ])('a bad query (%s) is 400 validation_error', async (query) => {
    expectError(await ctx.get(`/v1/payments?${query}`), 400, 'validation_error')
  })
})

describe('events and history', () => {
  test('an offline payment writes payment.created then payment.succeeded, and its history', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await offlinePayment(invoice.id, '100.00')
    const events = await ctx.get<
      List<{ type: string; object_type: string; object_id: string; data: { object: PaymentBody } }>
    >(`/v1/events?object_id=${payment.id}&sort=created_at`)
    expect(events.status).toBe(200)
    expect(events.body.items.map((e) => e.type)).toEqual(['payment.created', 'payment.succeeded'])
    for (const event of events.body.items) {
      expect(event.object_type).toBe('payment')
      expect(event.object_id).toBe(payment.id)
    }
    expect(events.body.items[0]?.data.object.payment_status).toBe('INITIATED')
    expect(events.body.items[1]?.data.object).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['from_status', 'to_status', 'cause'])
      .where('payment_id', '=', payment.id)
      .orderBy('id')
      .execute()
    expect(history).toEqual([
      { from_status: null, to_status: 'INITIATED', cause: 'api' },
      { from_status: 'INITIATED', to_status: 'SUCCEEDED', cause: 'api' },
    ])
  })

  test('a sandbox link is written once, PENDING with its session, and keeps its whole history', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    expect(link.status, link.text).toBe(201)
    expect(link.body).toMatchObject({ payment_status: 'PENDING', status_code: null })
    const session = await ctx.db
      .selectFrom('sandbox_sessions')
      .selectAll()
      .where('payment_id', '=', link.body.id)
      .executeTakeFirstOrThrow()
    expect(session).toMatchObject({
      id: link.body.gateway_tracking_id,
      status: 'open',
      amount: 10000n,
      customer_id: link.body.customer_id,
    })
    expect(link.body.payment_url).toContain(`/sandbox/checkout/${session.id}`)
    expect(link.body.attempts.map((a) => a.status)).toEqual(['pending'])
    expect(link.body.gateway_tracking_id).toBe(session.id)
    const events = await ctx.get<List<{ type: string; data: { object: PaymentBody } }>>(
      `/v1/events?object_id=${link.body.id}&sort=created_at`,
    )
    expect(events.body.items.map((e) => [e.type, e.data.object.payment_status])).toEqual([
      ['payment.created', 'INITIATED'],
      ['payment.pending', 'PENDING'],
    ])
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['from_status', 'to_status'])
      .where('payment_id', '=', link.body.id)
      .orderBy('id')
      .execute()
    expect(history).toEqual([
      { from_status: null, to_status: 'INITIATED' },
      { from_status: 'INITIATED', to_status: 'PENDING' },
    ])
    expect(await getPayment(ctx, link.body.id)).toEqual(link.body)
  })

  test('cancelling writes payment.cancelled and an INITIATED→CANCELLED history entry', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const created = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    await ctx.post(`/v1/payments/${created.id}/cancel`)
    const events = await ctx.get<List<{ type: string }>>(
      `/v1/events?object_id=${created.id}&sort=created_at`,
    )
    expect(events.body.items.map((e) => e.type)).toEqual(['payment.created', 'payment.cancelled'])
    const history = await ctx.db
      .selectFrom('payment_transitions')
      .select(['from_status', 'to_status', 'cause'])
      .where('payment_id', '=', created.id)
      .orderBy('id')
      .execute()
    expect(history.at(-1)).toEqual({
      from_status: 'INITIATED',
      to_status: 'CANCELLED',
      cause: 'api',
    })
  })
})

describe('security', () => {
  test('no key is 401 on every payment route', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    const calls = [
      ctx.get('/v1/payments', { key: null }),
      ctx.get(`/v1/payments/${payment.id}`, { key: null }),
      ctx.post(
        '/v1/payments',
        flexpriceBody(invoice.id, { payment_method_type: 'OFFLINE', payment_gateway: undefined }),
        { key: null },
      ),
      ctx.patch(`/v1/payments/${payment.id}`, { description: 'x' }, { key: null }),
      ctx.put(`/v1/payments/${payment.id}`, { description: 'x' }, { key: null }),
      ctx.delete(`/v1/payments/${payment.id}`, { key: null }),
      ctx.post(`/v1/payments/${payment.id}/process`, {}, { key: null }),
      ctx.post(`/v1/payments/${payment.id}/cancel`, {}, { key: null }),
      ctx.post(`/v1/payments/${payment.id}/refunds`, {}, { key: null }),
    ]
    for (const res of await Promise.all(calls)) expectError(res, 401, 'unauthorized')
    expect(await getPayment(ctx, payment.id)).toMatchObject({
      payment_status: 'INITIATED',
      description: null,
      active: true,
    })
    expect(await paymentRowsFor(invoice.id)).toHaveLength(1)
  })

  test('another tenant cannot pay an invoice whose lines the process has not read (they come with the lock)', async () => {
    const other = await ctx.createTenantFixture('Other tenant, cold lines')
    const { invoice } = await invoiceToPay(ctx)
    forgetInvoiceLines()
    expectError(
      await postPayment(
        flexpriceBody(invoice.id, { payment_method_type: 'OFFLINE', payment_gateway: undefined }),
        other.key,
      ),
      404,
      'not_found',
    )
    forgetInvoiceLines()
    expectError(
      await ctx.post(
        '/v1/payments',
        {
          destination_type: 'INVOICE',
          destination_id: invoice.id,
          amount: '100.00',
          currency: 'usd',
          payment_method_type: 'OFFLINE',
        },
        { key: ctx.main.liveKey },
      ),
      404,
      'not_found',
    )
    const listed = await ctx.get<List<PaymentBody>>(`/v1/payments?destination_id=${invoice.id}`)
    expect(listed.body.items).toEqual([])
    // The lock itself finds nothing from another environment, and keeps no lines for it.
    for (const environmentId of [other.test.id, ctx.main.live.id]) {
      forgetInvoiceLines()
      const locked = await inTransaction(ctx.db, (trx) =>
        lockInvoice(trx, environmentId, invoice.id),
      )
      expect(locked).toBeUndefined()
    }
    // The owner's payment, on the same cold path, still pays it with its lines.
    forgetInvoiceLines()
    const own = await offlinePayment(invoice.id, '100.00')
    expect(own.payment_status).toBe('SUCCEEDED')
    const paid = await eventsOf(ctx, invoice.id, 'invoice.paid')
    expect(paid[0]?.data.object.lines).toEqual(expect.arrayContaining([expect.anything()]))
  })

  // Each of these statements is built once and reused (StatementCache): the environment stays in every one.
  test('the cached locks and reads find nothing from another environment, and the owner still finds it', async () => {
    const other = await ctx.createTenantFixture('Other tenant')
    const { customer, invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, '10.00')
    expect(link.status).toBe(201)
    const tracking = sessionOf(link.body)
    const own = ctx.main.test.id
    const findAll = (environmentId: string) =>
      inTransaction(ctx.db, async (trx) => ({
        // The lines are cached by now (this process wrote them): the lock without lines.
        invoice: await lockInvoice(trx, environmentId, invoice.id),
        payment: await lockPayment(trx, environmentId, link.body.id),
        tracked: await lockPaymentByTracking(trx, environmentId, 'sandbox', tracking),
        customer: await findCustomer(trx, environmentId, customer.id),
      }))
    for (const environmentId of [other.test.id, ctx.main.live.id]) {
      expect(await findAll(environmentId)).toEqual({
        invoice: undefined,
        payment: undefined,
        tracked: undefined,
        customer: undefined,
      })
    }
    const found = await findAll(own)
    expect(found.invoice?.id).toBe(invoice.id)
    expect(found.payment?.id).toBe(link.body.id)
    expect(found.tracked?.id).toBe(link.body.id)
    expect(found.customer?.id).toBe(customer.id)
  })

  test("another tenant's payment is 404 on GET, PATCH, PUT, DELETE, process, cancel and refunds", async () => {
    const other = await ctx.createTenantFixture('Other tenant')
    const { invoice } = await invoiceToPay(ctx)
    const initiated = await offlinePayment(invoice.id, '10.00', { process_payment: false })
    const { invoice: paidInvoice } = await invoiceToPay(ctx)
    const paid = await offlinePayment(paidInvoice.id, '100.00')
    const key = other.key
    expectError(await ctx.get(`/v1/payments/${initiated.id}`, { key }), 404, 'not_found')
    expectError(
      await ctx.patch(`/v1/payments/${initiated.id}`, { description: 'x' }, { key }),
      404,
      'not_found',
    )
    expectError(
      await ctx.put(`/v1/payments/${initiated.id}`, { description: 'x' }, { key }),
      404,
      'not_found',
    )
    expectError(await ctx.delete(`/v1/payments/${initiated.id}`, { key }), 404, 'not_found')
    expectError(
      await ctx.post(`/v1/payments/${initiated.id}/process`, {}, { key }),
      404,
      'not_found',
    )
    expectError(
      await ctx.post(`/v1/payments/${initiated.id}/cancel`, {}, { key }),
      404,
      'not_found',
    )
    expectError(await ctx.post(`/v1/payments/${paid.id}/refunds`, {}, { key }), 404, 'not_found')
    // Its live key does not see the test environment's payment either.
    expectError(
      await ctx.get(`/v1/payments/${initiated.id}`, { key: ctx.main.liveKey }),
      404,
      'not_found',
    )
    // Nor does its list, nor can it pay the invoice.
    const list = await ctx.get<List<PaymentBody>>('/v1/payments', { key })
    expect(list.body.items).toEqual([])
    expectError(
      await postPayment(
        flexpriceBody(invoice.id, { payment_method_type: 'OFFLINE', payment_gateway: undefined }),
        key,
      ),
      404,
      'not_found',
    )
    expect(await getPayment(ctx, initiated.id)).toMatchObject({
      payment_status: 'INITIATED',
      description: null,
      active: true,
    })
    expect(await getPayment(ctx, paid.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_refunded: '0.00',
    })
  })

  test('a customer token pays and reads only its own payments', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const { customer: stranger, invoice: strangerInvoice } = await invoiceToPay(ctx, {
      name: 'Grace Hopper',
      email: 'grace@example.com',
    })
    const strangerPayment = await offlinePayment(strangerInvoice.id, '10.00', {
      process_payment: false,
    })
    const token = await customerToken(customer.id)

    const link = await linkPayment(invoice.id, '100.00', token)
    expect(link).toMatchObject({ customer_id: customer.id, payment_status: 'PENDING' })
    sessionOf(link)

    const own = await ctx.get<PaymentBody>(`/v1/payments/${link.id}`, { key: token })
    expect(own.status).toBe(200)
    expect(own.body.id).toBe(link.id)
    const list = await ctx.get<List<PaymentBody>>('/v1/payments', { key: token })
    expect(list.status).toBe(200)
    expect(list.body.items.map((p) => p.id)).toEqual([link.id])
    const asked = await ctx.get<List<PaymentBody>>(`/v1/payments?customer_id=${stranger.id}`, {
      key: token,
    })
    expect(asked.body.items).toEqual([])

    expectError(
      await ctx.get(`/v1/payments/${strangerPayment.id}`, { key: token }),
      404,
      'not_found',
    )
    expectError(
      await ctx.patch(`/v1/payments/${strangerPayment.id}`, { description: 'x' }, { key: token }),
      404,
      'not_found',
    )
    expectError(
      await ctx.post(`/v1/payments/${strangerPayment.id}/process`, {}, { key: token }),
      404,
      'not_found',
    )
    // Paying another customer's invoice: that invoice does not exist for this token.
    expectError(
      await createPayment(
        ctx,
        {
          destination_id: strangerInvoice.id,
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
          amount: '10.00',
        },
        { key: token },
      ),
      404,
      'not_found',
    )
    expect(await paymentRowsFor(strangerInvoice.id)).toHaveLength(1)
    expect((await getPayment(ctx, strangerPayment.id)).payment_status).toBe('INITIATED')
  })

  test('a customer token cannot record offline money by processing an INITIATED OFFLINE payment (403)', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const token = await customerToken(customer.id)
    // The merchant prepares an offline payment but has not received the money yet.
    const prepared = await offlinePayment(invoice.id, '100.00', { process_payment: false })
    const res = await ctx.post(`/v1/payments/${prepared.id}/process`, {}, { key: token })
    expectError(res, 403, 'forbidden')
    expect((await getPayment(ctx, prepared.id)).payment_status).toBe('INITIATED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_remaining: '100.00',
    })
  })

  test("a customer token cannot reach another customer's payment through its idempotency_key", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const { customer: intruder, invoice: intruderInvoice } = await invoiceToPay(ctx, {
      name: 'Mallory',
      email: 'mallory@example.com',
    })
    const body = flexpriceBody(invoice.id)
    const first = await postPayment<PaymentBody>(body)
    expect(first.status, first.text).toBe(201)
    const token = await customerToken(intruder.id)
    // The exact request the merchant sent, from another customer's token.
    const replay = await postPayment(body, token)
    expectError(replay, 404, 'not_found')
    expect(replay.text).not.toContain(first.body.id)
    expect(replay.text).not.toContain(String(first.body.payment_url))
    // The same key for the intruder's own invoice does not reveal the other payment either.
    const reused = await postPayment(
      flexpriceBody(intruderInvoice.id, { idempotency_key: body.idempotency_key }),
      token,
    )
    expect(reused.status).toBeGreaterThanOrEqual(400)
    expect(reused.text).not.toContain(first.body.id)
  })

  test('a customer token may update the editable fields of its own payment', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const token = await customerToken(customer.id)
    const link = await linkPayment(invoice.id, '100.00', token)
    const res = await ctx.patch<PaymentBody>(
      `/v1/payments/${link.id}`,
      { description: 'Paid by the customer', metadata: { note: 'hi' } },
      { key: token },
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body).toMatchObject({
      description: 'Paid by the customer',
      metadata: { note: 'hi' },
    })
  })

  test('a customer token cannot create OFFLINE payments, nor refund, cancel or delete (403)', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const token = await customerToken(customer.id)
    const offline = await createPayment(
      ctx,
      { destination_id: invoice.id, payment_method_type: 'OFFLINE', amount: '100.00' },
      { key: token },
    )
    expectError(offline, 403, 'forbidden')
    expect(await paymentRowsFor(invoice.id)).toEqual([])

    const link = await linkPayment(invoice.id, '50.00', token)
    const initiated = (
      await createPayment(
        ctx,
        {
          destination_id: invoice.id,
          payment_method_type: 'PAYMENT_LINK',
          payment_gateway: 'sandbox',
          amount: '10.00',
          process_payment: false,
        },
        { key: token },
      )
    ).body
    expect(initiated.payment_status).toBe('INITIATED')
    const paid = await offlinePayment(invoice.id, '40.00')

    expectError(
      await ctx.post(`/v1/payments/${paid.id}/refunds`, {}, { key: token }),
      403,
      'forbidden',
    )
    expectError(
      await ctx.post(`/v1/payments/${link.id}/cancel`, {}, { key: token }),
      403,
      'forbidden',
    )
    expectError(await ctx.delete(`/v1/payments/${initiated.id}`, { key: token }), 403, 'forbidden')

    expect((await getPayment(ctx, paid.id)).amount_refunded).toBe('0.00')
    expect((await getPayment(ctx, link.id)).payment_status).toBe('PENDING')
    expect((await getPayment(ctx, initiated.id)).active).toBe(true)
  })
})

describe('a sandbox card charge names its charge', () => {
  // DESIGN: "The payment's `gateway_tracking_id` is the provider's object id (Checkout
  // Session, BitPay invoice, CoinPayments `txn_id`, Checkout.com session or payment)."
  test("a sandbox CARD charge that succeeded names the provider's charge in gateway_tracking_id", async () => {
    const { res } = await sandboxCardCharge(ctx, '4242424242424242')
    expect(res.status, res.text).toBe(201)
    expect(res.body.payment_status).toBe('SUCCEEDED')
    const charge = res.body.attempts[0] as unknown as { gateway_tracking_id: string | null }
    // The provider's object exists: the charge, named by the attempt and gateway_payment_id.
    expect(charge.gateway_tracking_id).toMatch(/^sbch_/)
    expect(res.body.gateway_payment_id).toBe(charge.gateway_tracking_id)
    // The payment itself names it too, in the response and when read again.
    expect(res.body.gateway_tracking_id).toBe(charge.gateway_tracking_id)
    expect((await getPayment(ctx, res.body.id)).gateway_tracking_id).toBe(
      charge.gateway_tracking_id,
    )
  })

  // Same DESIGN line: a declined charge is a provider object too (its attempt names it).
  test("a sandbox CARD charge that was declined names the provider's charge in gateway_tracking_id", async () => {
    const { res } = await sandboxCardCharge(ctx, '4000000000000002')
    expect(res.status, res.text).toBe(402)
    const paymentId = String(
      (res.body as unknown as { error: { details: { payment_id: string } } }).error.details
        .payment_id,
    )
    const payment = await getPayment(ctx, paymentId)
    expect(payment.payment_status).toBe('FAILED')
    const charge = payment.attempts.at(-1)
    expect(charge?.status).toBe('failed')
    const chargeId = (charge as unknown as { gateway_tracking_id: string | null })
      .gateway_tracking_id
    expect(chargeId).toMatch(/^sbch_/)
    expect(payment.gateway_payment_id).toBe(chargeId)
    expect(payment.gateway_tracking_id).toBe(chargeId)
  })
})
