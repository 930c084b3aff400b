import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { assertPayable } from '../../src/modules/invoices/service.ts'
import { applyInvoiceRefund } from '../../src/modules/settlement/service.ts'
import {
  createCustomer,
  createInvoice,
  createProduct,
  eventsOf,
  finalizedInvoice,
  type InvoiceBody,
  type List,
  payInvoice,
} from '../fixtures.ts'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'
import { createPayment, createSandboxLink } from '../payments-helpers.ts'

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other')
})
afterAll(() => ctx.close())

const pay = (invoiceId: string, amount: bigint) => payInvoice(ctx, invoiceId, amount)
const refund = (invoiceId: string, amount: bigint) =>
  ctx.db
    .transaction()
    .execute((trx) => applyInvoiceRefund(trx, ctx.scope, invoiceId, amount, ctx.clock))
const getInvoice = async (id: string) => (await ctx.get<InvoiceBody>(`/v1/invoices/${id}`)).body

describe('creating invoices', () => {
  test('a DRAFT with amounts from its lines, every key present', async () => {
    const customer = await createCustomer(ctx)
    const res = await ctx.post<Record<string, unknown>>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'EUR',
      lines: [
        { description: 'Seats', quantity: 3, unit_amount: '10.00' },
        { description: 'Setup', quantity: 1, unit_amount: 4.5 },
      ],
      collection_method: 'send_invoice',
      payment_window_days: 14,
      metadata: { po: 'PO-1' },
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      object: 'invoice',
      number: null,
      customer_id: customer.id,
      currency: 'eur',
      invoice_status: 'DRAFT',
      payment_status: 'PENDING',
      collection_method: 'send_invoice',
      billing_reason: 'manual',
      subtotal: '34.50',
      total_discount: '0.00',
      total: '34.50',
      amount_due: '34.50',
      amount_paid: '0.00',
      amount_refunded: '0.00',
      amount_remaining: '34.50',
      payment_window_days: 14,
      payment_window_ends_at: null,
      source: 'native',
      metadata: { po: 'PO-1' },
    })
    expect(res.body.lines).toEqual([
      expect.objectContaining({
        description: 'Seats',
        quantity: 3,
        unit_amount: '10.00',
        amount: '30.00',
      }),
      expect.objectContaining({
        description: 'Setup',
        quantity: 1,
        unit_amount: '4.50',
        amount: '4.50',
      }),
    ])
    for (const key of [
      'due_date',
      'discount_code',
      'order_id',
      'subscription_id',
      'stripe_invoice_id',
      'paid_at',
      'voided_at',
    ]) {
      expect(res.body).toHaveProperty(key, null)
    }
  })

  test.each([
    [{ lines: [] }, 'body.lines'],
    [{ lines: [{ description: 'x', quantity: 0, unit_amount: '1' }] }, 'body.lines.0.quantity'],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: '-1' }] }, 'lines[0].unit_amount'],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: '1.005' }] }, 'lines[0].unit_amount'],
    [{ currency: 'ABC' }, 'currency'],
    [{ due_date: '2000-01-01T00:00:00Z' }, 'due_date'],
    [{ collection_method: 'by_carrier_pigeon' }, 'body.collection_method'],
    [{ payment_window_days: 0 }, 'body.payment_window_days'],
  ])('%j is 400 naming %s', async (body, field) => {
    const customer = await createCustomer(ctx)
    const res = await ctx.post<ErrorBody>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Consulting', quantity: 1, unit_amount: '1.00' }],
      ...body,
    })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message).toContain(field)
  })

  test("an unknown or another tenant's customer is 404 and nothing is written", async () => {
    const foreign = await createCustomer(ctx, {}, other.key)
    const before = await ctx.db.selectFrom('invoices').select('id').execute()
    for (const customerId of ['cus_missing', foreign.id]) {
      const res = await ctx.post<ErrorBody>('/v1/invoices', {
        customer_id: customerId,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '1' }],
      })
      expect(res.status).toBe(404)
    }
    expect(await ctx.db.selectFrom('invoices').select('id').execute()).toHaveLength(before.length)
  })
})

describe('invoice lifecycle', () => {
  test('finalize numbers invoices in sequence per environment and opens the payment window', async () => {
    const customer = await createCustomer(ctx)
    const liveCustomer = await createCustomer(ctx, {}, ctx.main.liveKey)
    const first = await finalizedInvoice(ctx, customer.id, { payment_window_days: 7 })
    const second = await finalizedInvoice(ctx, customer.id)
    const live = await ctx.post<InvoiceBody>(
      '/v1/invoices',
      {
        customer_id: liveCustomer.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '1' }],
      },
      { key: ctx.main.liveKey },
    )
    const liveFinal = await ctx.post<InvoiceBody>(
      `/v1/invoices/${live.body.id}/finalize`,
      {},
      { key: ctx.main.liveKey },
    )
    const n = (inv: InvoiceBody) => Number(inv.number?.replace('INV-', ''))
    expect(first.number).toMatch(/^INV-\d{6}$/)
    expect(n(second)).toBe(n(first) + 1)
    expect(liveFinal.body.number).toBe('INV-000001')
    expect(first.invoice_status).toBe('FINALIZED')
    expect(first.payment_window_ends_at).toBe(
      new Date(ctx.clock.now().getTime() + 7 * 86_400_000).toISOString(),
    )
  })

  test('20 invoices finalized at once get 20 distinct numbers with no gaps', async () => {
    const customer = await createCustomer(ctx)
    const drafts = await Promise.all(
      Array.from({ length: 20 }, () => createInvoice(ctx, customer.id)),
    )
    const results = await Promise.all(
      drafts.map((d) => ctx.post<InvoiceBody>(`/v1/invoices/${d.id}/finalize`)),
    )
    const numbers = results
      .map((r) => Number(r.body.number?.replace('INV-', '')))
      .sort((a, b) => a - b)
    expect(new Set(numbers).size).toBe(20)
    expect(numbers.at(-1)! - numbers[0]!).toBe(19)
  })

  test.each([
    [['finalize'], 'finalize'],
    [['finalize', 'mark_uncollectible'], 'finalize'],
    [['finalize', 'void'], 'finalize'],
    [['finalize', 'void'], 'mark_uncollectible'],
    [['finalize', 'mark_uncollectible'], 'mark_uncollectible'],
    [[], 'void'],
    [[], 'mark_uncollectible'],
  ])('after %j, %s is 422 invalid_state_transition', async (before, action) => {
    const customer = await createCustomer(ctx)
    const invoice = await createInvoice(ctx, customer.id)
    for (const step of before)
      expect((await ctx.post(`/v1/invoices/${invoice.id}/${step}`)).status).toBe(200)
    const res = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/${action}`)
    expect(res.status).toBe(422)
    expect(res.body.error.code).toBe('invalid_state_transition')
  })

  test('void and mark uncollectible', async () => {
    const customer = await createCustomer(ctx)
    const a = await finalizedInvoice(ctx, customer.id)
    const voided = await ctx.post<InvoiceBody & { voided_at: string }>(`/v1/invoices/${a.id}/void`)
    expect(voided.body).toMatchObject({ invoice_status: 'VOIDED', amount_remaining: '0.00' })
    expect(voided.body.voided_at).toBe(ctx.clock.now().toISOString())
    const b = await finalizedInvoice(ctx, customer.id)
    const written = await ctx.post<InvoiceBody>(`/v1/invoices/${b.id}/mark_uncollectible`)
    expect(written.body.invoice_status).toBe('UNCOLLECTIBLE')
    expect((await ctx.post<InvoiceBody>(`/v1/invoices/${b.id}/void`)).body.invoice_status).toBe(
      'VOIDED',
    )
  })

  test('an invoice with a payment cannot be voided', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    await pay(invoice.id, 1000n)
    const res = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/void`)
    expect(res.status).toBe(422)
    expect((await getInvoice(invoice.id)).invoice_status).toBe('FINALIZED')
  })

  test('an invoice with a payment cannot be voided: its amount paid named as a decimal string', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    await pay(invoice.id, 1000n)
    const res = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/void`)
    expect(res.body.error.details).toMatchObject({ amount_paid: '10.00' })
  })

  // Until it is first paid in full, a refund gives the money back and the invoice owes it
  // again (docs/billing.md): refunded in full, it keeps nothing a void would lose.
  test('an invoice whose partial payments were all refunded can be voided, as the refusal advises', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    await pay(invoice.id, 4000n)
    const kept = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/void`)
    expect(kept.status, kept.text).toBe(422)
    expect(kept.body.error.message).toContain('refund them instead')
    await refund(invoice.id, 1000n)
    // Part of it still kept: refused, with what was paid and refunded.
    const partly = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/void`)
    expect(partly.status, partly.text).toBe(422)
    expect(partly.body.error.details).toMatchObject({
      amount_paid: '40.00',
      amount_refunded: '10.00',
    })
    await refund(invoice.id, 3000n)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '40.00',
      amount_refunded: '40.00',
      amount_remaining: '100.00',
    })
    const voided = await ctx.post<InvoiceBody>(`/v1/invoices/${invoice.id}/void`)
    expect(voided.status, voided.text).toBe(200)
    expect(voided.body).toMatchObject({ invoice_status: 'VOIDED', amount_remaining: '0.00' })
  })

  test('cancelling an incomplete subscription whose first payment was refunded voids its first invoice: it cannot be paid for later', async () => {
    const customer = await createCustomer(ctx)
    const product = await createProduct(ctx, {
      name: 'Pro',
      type: 'recurring',
      prices: [{ amount: '25.00', currency: 'usd', interval: 'month' }],
    })
    const order = await ctx.post<{ id: string; invoice_id: string; subscription_id: string }>(
      '/v1/orders',
      { customer_id: customer.id, type: 'SUBSCRIPTION', price_id: product.prices[0]?.id },
    )
    expect(order.status, order.text).toBe(201)
    await pay(order.body.invoice_id, 1000n)
    await refund(order.body.invoice_id, 1000n)
    const cancelled = await ctx.post<{ status: string }>(
      `/v1/subscriptions/${order.body.subscription_id}/cancel`,
    )
    expect(cancelled.body.status).toBe('canceled')
    expect((await getInvoice(order.body.invoice_id)).invoice_status).toBe('VOIDED')
    expect((await ctx.get<{ status: string }>(`/v1/orders/${order.body.id}`)).body.status).toBe(
      'CANCELLED',
    )
    const late = await createPayment(ctx, {
      destination_id: order.body.invoice_id,
      payment_method_type: 'OFFLINE',
      amount: '25.00',
    })
    expect(late.status, late.text).toBe(422)
    expect((await ctx.get<{ status: string }>(`/v1/orders/${order.body.id}`)).body.status).toBe(
      'CANCELLED',
    )
  })

  test('an invoice paid with nothing to pay (zero total, 100% code) cannot be voided: what it paid for stands', async () => {
    const customer = await createCustomer(ctx)
    const zero = await ctx.post<InvoiceBody>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'Free seat', quantity: 1, unit_amount: '0.00' }],
    })
    expect(zero.status, zero.text).toBe(201)
    const finalized = await ctx.post<InvoiceBody>(`/v1/invoices/${zero.body.id}/finalize`)
    expect(finalized.body.payment_status).toBe('SUCCEEDED')
    const voided = await ctx.post<ErrorBody>(`/v1/invoices/${zero.body.id}/void`)
    expect(voided.status, voided.text).toBe(422)
    expect(voided.body.error.code).toBe('invalid_state_transition')

    // A credit top-up bought with a 100% code: paid, its credit granted.
    const code = `FREE${Date.now()}`
    expect((await ctx.post('/v1/discounts', { code, percent_off: 100 })).status).toBe(201)
    const product = await createProduct(ctx, {
      name: 'Credits',
      type: 'credit_top_up',
      prices: [{ amount: '50.00', currency: 'usd' }],
    })
    const order = await ctx.post<{ invoice_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      price_id: product.prices[0]?.id,
      discount_code: code,
    })
    expect(order.status, order.text).toBe(201)
    const paid = await getInvoice(order.body.invoice_id)
    expect(paid).toMatchObject({ invoice_status: 'FINALIZED', payment_status: 'SUCCEEDED' })
    const refused = await ctx.post<ErrorBody>(`/v1/invoices/${paid.id}/void`)
    expect(refused.status, refused.text).toBe(422)
    expect(await getInvoice(paid.id)).toMatchObject({
      invoice_status: 'FINALIZED',
      payment_status: 'SUCCEEDED',
    })
    const shown = await ctx.get<{ balances: Record<string, string> }>(
      `/v1/customers/${customer.id}`,
    )
    expect(shown.body.balances).toEqual({ usd: '50.00' })
  })

  test('an invoice with a page open on it cannot be voided or written off: paid, the money would land on neither', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    const page = await createSandboxLink(ctx, invoice)
    expect(page.status, page.text).toBe(201)
    for (const action of ['void', 'mark_uncollectible']) {
      const res = await ctx.post<ErrorBody>(`/v1/invoices/${invoice.id}/${action}`)
      expect(res.status, res.text).toBe(422)
      expect(res.body.error.details).toMatchObject({ payment_id: page.body.id })
    }
    expect((await getInvoice(invoice.id)).invoice_status).toBe('FINALIZED')
    // Once the page is cancelled, the invoice can be written off.
    expect((await ctx.post(`/v1/payments/${page.body.id}/cancel`)).status).toBe(200)
    const written = await ctx.post<InvoiceBody>(`/v1/invoices/${invoice.id}/mark_uncollectible`)
    expect(written.status, written.text).toBe(200)
    expect(written.body.invoice_status).toBe('UNCOLLECTIBLE')
  })

  test('a zero-total invoice is paid when finalized', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'Free tier', quantity: 1, unit_amount: '0' }],
    })
    expect(invoice).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_remaining: '0.00',
      paid_at: ctx.clock.now().toISOString(),
    })
  })
})

describe('invoice numbers', () => {
  // A Stripe invoice mirrored with its own number (an account whose prefix is `INV`) may hold
  // a number the sequence has not reached: given again, it failed every finalization of the
  // environment on the unique number, the counter rolled back with it each time.
  test('a number another invoice already holds is passed over: finalizing goes on', async () => {
    const customer = await createCustomer(ctx)
    const first = await ctx.post<InvoiceBody>(
      `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
    )
    expect(first.status, first.text).toBe(200)
    const last = Number(first.body.number?.slice('INV-'.length))
    const held = (n: number) => `INV-${String(n).padStart(6, '0')}`
    for (const [i, n] of [last + 1, last + 2].entries()) {
      await ctx.pool.query(
        `insert into invoices (id, tenant_id, environment_id, customer_id, number, currency, invoice_status,
           payment_status, collection_method, billing_reason, subtotal, total, amount_due, amount_remaining,
           finalized_at, source)
         select $1, tenant_id, environment_id, customer_id, $2, currency, invoice_status, payment_status,
           collection_method, billing_reason, subtotal, total, amount_due, amount_remaining, finalized_at, 'stripe'
         from invoices where id = $3`,
        [`${first.body.id}_mirror${i}`, held(n), first.body.id],
      )
    }
    const next = await ctx.post<InvoiceBody>(
      `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
    )
    expect(next.status, next.text).toBe(200)
    expect(next.body.number).toBe(held(last + 3))
    const after = await ctx.post<InvoiceBody>(
      `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
    )
    expect(after.body.number).toBe(held(last + 4))
  })

  test('past INV-999999 the number grows a digit, and the check for a held one reads it the same way', async () => {
    const customer = await createCustomer(ctx)
    const env = ctx.main.test.id
    await ctx.pool.query(
      'update invoice_sequences set last_number = 999998 where environment_id = $1',
      [env],
    )
    const numbers: (string | null)[] = []
    for (let k = 0; k < 2; k++) {
      const res = await ctx.post<InvoiceBody>(
        `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
      )
      expect(res.status, res.text).toBe(200)
      numbers.push(res.body.number)
    }
    expect(numbers).toEqual(['INV-999999', 'INV-1000000'])
    const held = await ctx.post<InvoiceBody>(
      `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
    )
    await ctx.pool.query(`update invoices set number = 'INV-1000002' where id = $1`, [held.body.id])
    const next = await ctx.post<InvoiceBody>(
      `/v1/invoices/${(await createInvoice(ctx, customer.id)).id}/finalize`,
    )
    expect(next.body.number).toBe('INV-1000003')
  })

  test('sort=number orders the numbers numerically past INV-999999, drafts last', async () => {
    // An environment of its own, that has issued 999,998 invoices already.
    const t = await ctx.createTenantFixture('Many invoices')
    await ctx.db
      .insertInto('invoice_sequences')
      .values({ environment_id: t.test.id, last_number: 999_998n })
      .execute()
    const customer = await createCustomer(ctx, {}, t.key)
    const create = async () => {
      ctx.clock.advance(1000)
      const res = await ctx.post<InvoiceBody>(
        '/v1/invoices',
        {
          customer_id: customer.id,
          currency: 'usd',
          lines: [{ description: 'Consulting', quantity: 1, unit_amount: '10.00' }],
        },
        { key: t.key },
      )
      expect(res.status, res.text).toBe(201)
      return res.body
    }
    const numbers: (string | null)[] = []
    for (let i = 0; i < 3; i++) {
      const res = await ctx.post<InvoiceBody>(
        `/v1/invoices/${(await create()).id}/finalize`,
        {},
        { key: t.key },
      )
      expect(res.status, res.text).toBe(200)
      numbers.push(res.body.number)
    }
    expect(numbers).toEqual(['INV-999999', 'INV-1000000', 'INV-1000001'])
    const draft = await create()
    const list = async (sort: string) => {
      const res = await ctx.get<List<InvoiceBody>>(`/v1/invoices?sort=${sort}`, { key: t.key })
      expect(res.status, res.text).toBe(200)
      return res.body.items.map((i) => i.number ?? i.id)
    }
    expect(await list('number')).toEqual([...numbers, draft.id])
    expect(await list('-number')).toEqual([draft.id, ...[...numbers].reverse()])
    // Pages of the sort meet without a gap or an overlap.
    const pages: string[] = []
    for (let page = 0; page < 2; page++) {
      const res = await ctx.get<List<InvoiceBody>>(`/v1/invoices?sort=number&size=2&page=${page}`, {
        key: t.key,
      })
      pages.push(...res.body.items.map((i) => i.number ?? i.id))
    }
    expect(pages).toEqual([...numbers, draft.id])
  })
})

describe('reconciliation of payments and refunds', () => {
  test('partial payments add up to SUCCEEDED, and invoice.paid is written exactly once', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    const first = await pay(invoice.id, 4000n)
    expect(first.becamePaid).toBe(false)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '40.00',
      amount_remaining: '60.00',
    })
    const second = await pay(invoice.id, 6000n)
    expect(second.becamePaid).toBe(true)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_remaining: '0.00',
    })
    const events = await ctx.get<List<{ type: string; created_at: string }>>(
      `/v1/events?object_id=${invoice.id}&type=invoice.paid`,
    )
    expect(events.body.items).toHaveLength(1)
    // Events carry the time of the change they report (the service clock), not the database's.
    expect(events.body.items[0]?.created_at).toBe(ctx.clock.now().toISOString())
  })

  test('paying more than due is OVERPAID, recorded in full', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    await pay(invoice.id, 12000n)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '120.00',
      amount_remaining: '0.00',
    })
    const events = await ctx.get<List<{ type: string }>>(`/v1/events?object_id=${invoice.id}`)
    expect(events.body.items.map((e) => e.type)).toEqual(
      expect.arrayContaining(['invoice.paid', 'invoice.overpaid']),
    )
  })

  test('refunds: partial, then full; never above what was paid', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    await pay(invoice.id, 10000n)
    await refund(invoice.id, 2500n)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_refunded: '25.00',
    })
    await expect(refund(invoice.id, 7501n)).rejects.toThrow(/exceed/)
    await refund(invoice.id, 7500n)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_refunded: '100.00',
    })
  })

  test('50 concurrent payments of 2.00 on a 100.00 invoice: every one recorded, paid exactly once', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    const results = await Promise.all(Array.from({ length: 50 }, () => pay(invoice.id, 200n)))
    expect(results.filter((r) => r.becamePaid)).toHaveLength(1)
    expect(await getInvoice(invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await eventsOf(ctx, invoice.id, 'invoice.paid')).toHaveLength(1)
  })

  test('a draft takes no payment; money that arrives for a voided invoice is recorded, not fulfilled', async () => {
    const customer = await createCustomer(ctx)
    const draft = await createInvoice(ctx, customer.id)
    await expect(pay(draft.id, 100n)).rejects.toThrow(/DRAFT/)
    const voided = await finalizedInvoice(ctx, customer.id)
    await ctx.post(`/v1/invoices/${voided.id}/void`)
    // New payments are refused before they start (assertPayable); this is one that was in
    // flight when the invoice was voided, and the money is recorded for the merchant to refund.
    const change = await pay(voided.id, 10000n)
    expect(change.becamePaid).toBe(false)
    expect(change.invoice.invoice_status).toBe('VOIDED')
    expect(change.invoice.amount_paid).toBeGreaterThan(0n)
    expect(await eventsOf(ctx, voided.id, 'invoice.paid')).toHaveLength(0)
  })

  test('assertPayable: finalized, unpaid and inside the window', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id, { payment_window_days: 1 })
    const row = () =>
      ctx.db
        .selectFrom('invoices')
        .selectAll()
        .where('id', '=', invoice.id)
        .executeTakeFirstOrThrow()
    const fresh = await row()
    expect(() => assertPayable(fresh, ctx.clock.now())).not.toThrow()
    expect(() => assertPayable(fresh, new Date(ctx.clock.now().getTime() + 86_400_001))).toThrow(
      /payment window/,
    )
    await pay(invoice.id, 10000n)
    await expect(row().then((paid) => assertPayable(paid, ctx.clock.now()))).rejects.toThrow(
      /already paid/,
    )
  })
})

describe('listing and access', () => {
  test('filters by status, payment_status, customer and currency; sorts by total', async () => {
    const customer = await createCustomer(ctx)
    const eur = await createInvoice(ctx, customer.id, {
      currency: 'eur',
      lines: [{ description: 'x', quantity: 1, unit_amount: '5' }],
    })
    const big = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'x', quantity: 1, unit_amount: '900' }],
    })
    const paid = await finalizedInvoice(ctx, customer.id)
    await pay(paid.id, 10000n)
    const ids = async (query: string) =>
      (
        await ctx.get<List<InvoiceBody>>(`/v1/invoices?customer_id=${customer.id}&${query}`)
      ).body.items.map((i) => i.id)
    expect(await ids('status=DRAFT')).toEqual([eur.id])
    expect(await ids('invoice_status=FINALIZED&payment_status=PENDING')).toEqual([big.id])
    expect(await ids('payment_status=SUCCEEDED')).toEqual([paid.id])
    expect(await ids('currency=EUR')).toEqual([eur.id])
    expect(await ids('sort=-total')).toEqual([big.id, paid.id, eur.id])
    expect((await ctx.get<ErrorBody>('/v1/invoices?status=PAID')).status).toBe(400)
  })

  test("a customer token reads only its customer's invoices and cannot change them", async () => {
    const mine = await createCustomer(ctx)
    const theirs = await createCustomer(ctx)
    const own = await finalizedInvoice(ctx, mine.id)
    const foreign = await finalizedInvoice(ctx, theirs.id)
    const token = (await ctx.post<{ token: string }>(`/v1/customers/${mine.id}/tokens`)).body.token
    const list = await ctx.get<List<InvoiceBody>>('/v1/invoices', { key: token })
    expect(list.status).toBe(200)
    expect(list.body.items.map((i) => i.id)).toEqual([own.id])
    const spoofed = await ctx.get<List<InvoiceBody>>(`/v1/invoices?customer_id=${theirs.id}`, {
      key: token,
    })
    expect(spoofed.body.items).toEqual([])
    expect((await ctx.get(`/v1/invoices/${own.id}`, { key: token })).status).toBe(200)
    expect((await ctx.get(`/v1/invoices/${foreign.id}`, { key: token })).status).toBe(404)
    for (const action of ['finalize', 'void', 'mark_uncollectible']) {
      expect((await ctx.post(`/v1/invoices/${own.id}/${action}`, {}, { key: token })).status).toBe(
        403,
      )
    }
    expect((await ctx.post('/v1/invoices', { customer_id: mine.id }, { key: token })).status).toBe(
      403,
    )
  })

  test("another tenant's invoice is 404 on every route", async () => {
    const foreignCustomer = await createCustomer(ctx, {}, other.key)
    const res = await ctx.post<InvoiceBody>(
      '/v1/invoices',
      {
        customer_id: foreignCustomer.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '1' }],
      },
      { key: other.key },
    )
    for (const path of ['', '/finalize', '/void', '/mark_uncollectible']) {
      const r =
        path === ''
          ? await ctx.get(`/v1/invoices/${res.body.id}`)
          : await ctx.post(`/v1/invoices/${res.body.id}${path}`)
      expect(r.status).toBe(404)
    }
    expect(
      (await ctx.get<InvoiceBody>(`/v1/invoices/${res.body.id}`, { key: other.key })).body
        .invoice_status,
    ).toBe('DRAFT')
  })
})

describe('hostile input never becomes a 500', () => {
  test.each([
    [
      'a NUL byte in a description',
      { lines: [{ description: 'bad\u0000text', quantity: 1, unit_amount: '1.00' }] },
    ],
    [
      'an amount beyond any bigint',
      { lines: [{ description: 'x', quantity: 1, unit_amount: '99999999999999999999999' }] },
    ],
    [
      'lines whose sum overflows',
      {
        lines: Array.from({ length: 250 }, () => ({
          description: 'x',
          quantity: 1_000_000,
          unit_amount: '9999999999999.99',
        })),
      },
    ],
    ['a NUL byte in metadata', { metadata: { note: 'a\u0000b' } }],
  ])('%s is 400 and writes nothing', async (_name, body) => {
    const customer = await createCustomer(ctx)
    const before = (await ctx.db.selectFrom('invoices').select('id').execute()).length
    const res = await ctx.post<ErrorBody>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'ok', quantity: 1, unit_amount: '1.00' }],
      ...body,
    })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect((await ctx.db.selectFrom('invoices').select('id').execute()).length).toBe(before)
  })
})
