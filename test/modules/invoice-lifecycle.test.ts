// An invoice from creation to payment: what creation refuses, the lifecycle's moves, the
// money on the invoice after partial payments and refunds, and events that follow it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  createCustomer,
  createInvoice,
  eventsOf,
  finalizedInvoice,
  type InvoiceBody,
} from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  getInvoice,
  type PaymentBody,
  pagePost,
  payOffline,
  sessionOf,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

const DAY = 24 * 60 * 60 * 1000

describe('creation validation', () => {
  test.each([
    ['jpy', '500', '500'],
    ['jpy', '500.0', '500'],
    ['bhd', '1.234', '1.234'],
    ['usd', '0.10', '0.10'],
    ['usd', 12, '12.00'],
  ])('%s unit_amount %j reads as %s', async (currency, unit, shown) => {
    const customer = await createCustomer(ctx)
    const res = await ctx.post<InvoiceBody>('/v1/invoices', {
      customer_id: customer.id,
      currency,
      lines: [{ description: 'x', quantity: 3, unit_amount: unit }],
    })
    expect(res.status, res.text).toBe(201)
    expect(res.body.lines[0]!.unit_amount).toBe(shown)
  })

  test.each([
    [{ currency: 'jpy', lines: [{ description: 'x', quantity: 1, unit_amount: '500.5' }] }],
    [{ currency: 'bhd', lines: [{ description: 'x', quantity: 1, unit_amount: '1.2345' }] }],
    [{ lines: [{ description: 'x', quantity: 1.5, unit_amount: '1' }] }],
    [{ lines: [{ description: '', quantity: 1, unit_amount: '1' }] }],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: '1e3' }] }],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: '' }] }],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: ' ' }] }],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: 'NaN' }] }],
    [{ lines: [{ description: 'x', quantity: 1, unit_amount: '.5' }] }],
    [{ lines: [{ description: 'x', quantity: 1_000_000, unit_amount: '99999999999.99' }] }],
    [{ due_date: 'tomorrow' }],
    [{ due_date: '2999-13-45T00:00:00Z' }],
    [{ metadata: { a: 1 } }],
    [{ discount_code: 'NOPE' }],
    [{ customer_id: '' }],
    [{ payment_window_days: 1.5 }],
    [{ payment_window_days: -1 }],
    [{ collection_method: null }],
    [{ lines: null }],
  ])('%j is a clean 400', async (body) => {
    const customer = await createCustomer(ctx)
    const res = await ctx.post<ErrorBody>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'x', quantity: 1, unit_amount: '1.00' }],
      ...body,
    })
    expect(res.status, res.text).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('a zero invoice is paid at finalization with invoice.paid', async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id, {
      lines: [{ description: 'free', quantity: 1, unit_amount: '0' }],
    })
    expect(inv).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
    expect(inv.paid_at).not.toBeNull()
    expect((await eventsOf(ctx, inv.id, 'invoice.paid')).length).toBe(1)
  })
})

describe('lifecycle', () => {
  test('finalize twice is 422; a DRAFT cannot be paid, voided or written off', async () => {
    const customer = await createCustomer(ctx)
    const draft = await createInvoice(ctx, customer.id)
    const pay = await ctx.post<ErrorBody>(`/v1/invoices/${draft.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(pay.status, pay.text).toBe(422)
    for (const action of ['void', 'mark_uncollectible']) {
      const res = await ctx.post<ErrorBody>(`/v1/invoices/${draft.id}/${action}`)
      expect(res.status, res.text).toBe(422)
    }
    const fin = await ctx.post<InvoiceBody>(`/v1/invoices/${draft.id}/finalize`)
    expect(fin.status).toBe(200)
    const again = await ctx.post<ErrorBody>(`/v1/invoices/${draft.id}/finalize`)
    expect(again.status).toBe(422)
    expect(again.body.error.code).toBe('invalid_state_transition')
  })

  test('the payment window closes exactly at payment_window_ends_at: payable a millisecond before, 422 at it', async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id, { payment_window_days: 2 })
    expect(new Date(inv.payment_window_ends_at!).getTime()).toBe(
      ctx.clock.now().getTime() + 2 * DAY,
    )
    ctx.clock.advance(2 * DAY - 1)
    const open = await ctx.get<{ payable: boolean }>(`/v1/invoices/${inv.id}/pay_options`)
    expect(open.body.payable, open.text).toBe(true)
    ctx.clock.advance(1)
    const opts = await ctx.get<{ payable: boolean }>(`/v1/invoices/${inv.id}/pay_options`)
    expect(opts.body.payable).toBe(false)
    const pay = await ctx.post<ErrorBody>(`/v1/invoices/${inv.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(pay.status, pay.text).toBe(422)
  })

  test('partial payments, refund before paid in full, then rest', async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id)
    const p1 = await payOffline(ctx, inv.id, '30.00')
    expect(await getInvoice(ctx, inv.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '30.00',
      amount_remaining: '70.00',
    })
    const r = await ctx.post(`/v1/payments/${p1.id}/refunds`, { amount: '10.00' })
    expect(r.status, r.text).toBe(201)
    expect(await getInvoice(ctx, inv.id)).toMatchObject({
      payment_status: 'PENDING',
      amount_paid: '30.00',
      amount_refunded: '10.00',
      amount_remaining: '80.00',
    })
    const rest = await ctx.post<PaymentBody>(`/v1/invoices/${inv.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(rest.status, rest.text).toBe(201)
    expect(rest.body.amount).toBe('80.00')
    const paid = await getInvoice(ctx, inv.id)
    expect(paid).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
    const evs = await eventsOf(ctx, inv.id, 'invoice.paid')
    expect(evs.length).toBe(1)
    expect(evs[0]!.data.object).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '110.00',
    })
  })

  test('pay with an amount above remaining, zero, negative or with too many decimals is 400 and pays nothing', async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id)
    for (const amount of ['100.01', '0', '-1', '0.001']) {
      const res = await ctx.post<ErrorBody>(`/v1/invoices/${inv.id}/pay`, {
        payment_method_type: 'OFFLINE',
        amount,
      })
      expect(res.status, `${amount} ${res.text}`).toBe(400)
      expect(res.body.error.code, amount).toBe('validation_error')
    }
    expect(await getInvoice(ctx, inv.id)).toMatchObject({
      amount_paid: '0.00',
      amount_remaining: '100.00',
    })
  })

  test('an uncollectible invoice refuses payment (422) and can be voided; each event shows the invoice as its move left it', async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id)
    const u = await ctx.post<InvoiceBody>(`/v1/invoices/${inv.id}/mark_uncollectible`)
    expect(u.status, u.text).toBe(200)
    const pay = await ctx.post<ErrorBody>(`/v1/invoices/${inv.id}/pay`, {
      payment_method_type: 'OFFLINE',
    })
    expect(pay.status, pay.text).toBe(422)
    const v = await ctx.post<InvoiceBody>(`/v1/invoices/${inv.id}/void`)
    expect(v.status, v.text).toBe(200)
    const final = await getInvoice(ctx, inv.id)
    expect(u.body.invoice_status).toBe('UNCOLLECTIBLE')
    expect(final.invoice_status).toBe('VOIDED')
    const last = (await eventsOf(ctx, inv.id, 'invoice.voided'))[0]!
    expect(last.data.object).toEqual(final)
    const mu = (await eventsOf(ctx, inv.id, 'invoice.marked_uncollectible'))[0]!
    expect(mu.data.object).toEqual(u.body)
  })
})

async function expectLatestEventMatches(id: string, step: string) {
  const current = await getInvoice(ctx, id)
  const [latest] = await eventsOf(ctx, id)
  const { updated_at: _a, ...shown } = latest!.data.object as Record<string, unknown>
  const asShown: Record<string, unknown> = { ...current }
  const { updated_at: _b, ...now } = asShown
  expect(shown, `${step}: latest ${latest!.type}`).toEqual(now)
}

describe('unit_amount precision (docs/billing.md: no more decimals than the currency has)', () => {
  test.each([
    [1e-21, 'usd'],
    [-1e-21, 'usd'],
    [4e-21, 'jpy'],
  ])(
    'a numeric unit_amount %s (below the smallest %s unit) is a 400, not a free line',
    async (unit, currency) => {
      const customer = await createCustomer(ctx)
      const res = await ctx.post<ErrorBody>('/v1/invoices', {
        customer_id: customer.id,
        currency,
        lines: [{ description: 'Consulting', quantity: 1, unit_amount: unit }],
      })
      expect(res.status, res.text).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
      expect(res.body.error.message).toContain('lines[0].unit_amount')
    },
  )
})

describe('invoice events follow the invoice', () => {
  test("after every move, the invoice's latest event shows it as GET does", async () => {
    const customer = await createCustomer(ctx)
    const inv = await finalizedInvoice(ctx, customer.id)
    const crypto = await createPayment(ctx, {
      destination_id: inv.id,
      payment_method_type: 'CRYPTO',
      payment_gateway: 'sandbox',
      amount: '60.00',
    })
    expect(crypto.status, crypto.text).toBe(201)
    const page = `/sandbox/crypto/${sessionOf(crypto.body)}`
    await pagePost(ctx, page, 'pay')
    await expectLatestEventMatches(inv.id, 'coins sent')
    const offline = await payOffline(ctx, inv.id, '40.00')
    await expectLatestEventMatches(inv.id, 'offline part')
    await pagePost(ctx, page, 'confirm')
    await expectLatestEventMatches(inv.id, 'confirmed')
    expect((await ctx.post(`/v1/payments/${offline.id}/refunds`, { amount: '10.00' })).status).toBe(
      201,
    )
    await expectLatestEventMatches(inv.id, 'refund')
    expect(await getInvoice(ctx, inv.id)).toMatchObject({
      payment_status: 'PARTIALLY_REFUNDED',
      amount_paid: '100.00',
      amount_refunded: '10.00',
      amount_remaining: '0.00',
    })
  })
})
