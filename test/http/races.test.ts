// Races between requests, with and without an Idempotency-Key: whichever commits first, money
// is applied once, a ledger never goes negative, and no request answers 500.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer, finalizedInvoice } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  expectPaidInFull,
  getInvoice,
  getPayment,
  invoiceToPay,
  openSandboxCrypto,
  type PaymentBody,
  pagePost,
  payOffline,
  type RefundBody,
  savedSandboxCard,
  sessionOf,
  submitCard,
  unprocessedCardPayment,
} from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

/** `DELETE` and `process` of an INITIATED payment sent at once: neither is a 500; the payment after. */
async function deleteAndProcessAtOnce(paymentId: string): Promise<PaymentBody> {
  const [deleted, processed] = await Promise.all([
    ctx.delete(`/v1/payments/${paymentId}`),
    ctx.post<PaymentBody>(`/v1/payments/${paymentId}/process`),
  ])
  expect(deleted.status, deleted.text).toBeLessThan(500)
  expect(processed.status, processed.text).toBeLessThan(500)
  return getPayment(ctx, paymentId)
}

/**
 * `times` refunds of the payment sent at once (`{}`: all that is left, each): none is a 500.
 * How many were made (201).
 */
async function refundsAtOnce(
  paymentId: string,
  times: number,
  body: { amount?: string },
): Promise<number> {
  const answers = await Promise.all(
    Array.from({ length: times }, () =>
      ctx.post<RefundBody>(`/v1/payments/${paymentId}/refunds`, body),
    ),
  )
  expect(
    answers.every((a) => a.status < 500),
    answers.map((a) => a.text).join('\n'),
  ).toBe(true)
  return answers.filter((a) => a.status === 201).length
}

describe('idempotency keys on API routes', () => {
  test('a key of exactly 255 characters works, 256 is 400 validation_error', async () => {
    const ok = await ctx.post(
      '/v1/customers',
      { name: 'L', email: 'l@example.com' },
      { idempotencyKey: 'k'.repeat(255) },
    )
    expect(ok.status).toBe(201)
    const again = await ctx.post(
      '/v1/customers',
      { name: 'L', email: 'l@example.com' },
      { idempotencyKey: 'k'.repeat(255) },
    )
    expect(again.headers['idempotent-replayed']).toBe('true')
    const long = await ctx.post<ErrorBody>(
      '/v1/customers',
      { name: 'L', email: 'l@example.com' },
      { idempotencyKey: 'k'.repeat(256) },
    )
    expect(long.status).toBe(400)
    expect(long.body.error.code).toBe('validation_error')
  })

  test('the same key in another tenant does not replay the first tenant’s response', async () => {
    const other = await ctx.createTenantFixture('other-idem')
    const a = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'A', email: 'a@example.com' },
      { idempotencyKey: 'shared-key' },
    )
    const b = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'A', email: 'a@example.com' },
      { idempotencyKey: 'shared-key', key: other.key },
    )
    expect(a.status).toBe(201)
    expect(b.status).toBe(201)
    expect(b.headers['idempotent-replayed']).toBeUndefined()
    expect(b.body.id).not.toBe(a.body.id)
  })

  test('a replayed OFFLINE payment does not pay twice', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = {
      destination_type: 'INVOICE',
      currency: 'usd',
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '40.00',
    }
    const a = await ctx.post<PaymentBody>('/v1/payments', body, { idempotencyKey: 'pay-40' })
    const b = await ctx.post<PaymentBody>('/v1/payments', body, { idempotencyKey: 'pay-40' })
    expect(a.status).toBe(201)
    expect(b.status).toBe(201)
    expect(b.body.id).toBe(a.body.id)
    expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('40.00')
  })
})

describe('races without keys', () => {
  test('void and OFFLINE pay sent at once: a VOID invoice never keeps a succeeded payment', async () => {
    for (let i = 0; i < 8; i++) {
      const { invoice } = await invoiceToPay(ctx)
      const [voided, paid] = await Promise.all([
        ctx.post(`/v1/invoices/${invoice.id}/void`),
        ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, { payment_method_type: 'OFFLINE' }),
      ])
      expect(voided.status).toBeLessThan(500)
      expect(paid.status).toBeLessThan(500)
      const after = await getInvoice(ctx, invoice.id)
      if (after.invoice_status === 'VOIDED' || after.invoice_status === 'VOID') {
        expect(after.amount_paid).toBe('0.00')
      } else {
        expect(after.amount_paid).toBe('100.00')
      }
    }
  })

  test('mark_uncollectible and pay sent at once never both succeed', async () => {
    for (let i = 0; i < 8; i++) {
      const { invoice } = await invoiceToPay(ctx)
      const [marked, paid] = await Promise.all([
        ctx.post(`/v1/invoices/${invoice.id}/mark_uncollectible`),
        ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, { payment_method_type: 'OFFLINE' }),
      ])
      expect(marked.status).toBeLessThan(500)
      expect(paid.status).toBeLessThan(500)
      expect(marked.status === 200 && paid.status === 201).toBe(false)
    }
  })

  test('DELETE and process of an INITIATED OFFLINE payment at once: a deleted payment never took money', async () => {
    for (let i = 0; i < 8; i++) {
      const { invoice } = await invoiceToPay(ctx)
      const created = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'OFFLINE',
        amount: '100.00',
        process_payment: false,
      })
      expect(created.status, created.text).toBe(201)
      const after = await deleteAndProcessAtOnce(created.body.id)
      const inv = await getInvoice(ctx, invoice.id)
      if (after.active === false) {
        expect(after.payment_status).not.toBe('SUCCEEDED')
        expect(inv.amount_paid).toBe('0.00')
      } else {
        expect(after.payment_status).toBe('SUCCEEDED')
        expect(inv.amount_paid).toBe('100.00')
      }
    }
  })

  test('concurrent refunds after a partial refund never exceed what was paid', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await payOffline(ctx, invoice.id, '100.00')
    const first = await ctx.post<RefundBody>(`/v1/payments/${payment.id}/refunds`, {
      amount: '35.00',
    })
    expect(first.status, first.text).toBe(201)
    expect(await refundsAtOnce(payment.id, 10, { amount: '30.00' })).toBe(2)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('95.00')
    expect(await refundsAtOnce(payment.id, 5, {})).toBe(1)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('100.00')
  })

  test('two concurrent pays of one invoice with different methods pay it once', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    const results = await Promise.all([
      ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, { payment_method_type: 'OFFLINE' }),
      ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
        payment_method_type: 'OFFLINE',
        amount: '100.00',
      }),
      ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
        payment_method_type: 'OFFLINE',
        amount: '60.00',
      }),
    ])
    expect(results.every((r) => r.status < 500)).toBe(true)
    const inv = await getInvoice(ctx, invoice.id)
    expect(inv.amount_paid).toBe('100.00')
    const succeeded = results.filter(
      (r) => r.status === 201 && r.body.payment_status === 'SUCCEEDED',
    )
    const sum = succeeded.reduce((s, r) => s + Number(r.body.amount), 0)
    expect(sum).toBeLessThanOrEqual(100)
  })
})

async function fund(customerId: string, amount: string, currency = 'usd') {
  const res = await ctx.post(`/v1/customers/${customerId}/balance_transactions`, {
    amount,
    currency,
  })
  expect(res.status, res.text).toBe(201)
}
async function balanceOf(customerId: string, currency = 'usd') {
  const res = await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customerId}`)
  return res.body.balances[currency] ?? '0.00'
}
async function ledgerSum(customerId: string) {
  const { rows } = await ctx.pool.query<{ sum: string | null }>(
    'select sum(amount)::text as sum from balance_transactions where customer_id = $1',
    [customerId],
  )
  return rows[0]?.sum
}

describe('balance races', () => {
  test('10 concurrent debit adjustments of 30.00 on 100.00: three apply, never negative', async () => {
    const customer = await createCustomer(ctx)
    await fund(customer.id, '100.00')
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        ctx.post<ErrorBody>(`/v1/customers/${customer.id}/balance_transactions`, {
          amount: '-30.00',
          currency: 'usd',
        }),
      ),
    )
    expect(results.map((r) => r.status).sort()).toEqual([
      201, 201, 201, 409, 409, 409, 409, 409, 409, 409,
    ])
    expect(await balanceOf(customer.id)).toBe('10.00')
  })

  test('concurrent refunds of a CREDITS payment credit the balance no more than was paid', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    await fund(customer.id, '100.00')
    const paid = await ctx.post<PaymentBody>(`/v1/invoices/${invoice.id}/pay`, {
      payment_method_type: 'CREDITS',
    })
    expect(paid.status, paid.text).toBe(201)
    expect(await balanceOf(customer.id)).toBe('0.00')
    expect(await refundsAtOnce(paid.body.id, 10, { amount: '30.00' })).toBe(3)
    expect(await balanceOf(customer.id)).toBe('90.00')
  })

  test('DELETE and process of an INITIATED CREDITS payment at once: a deleted payment never debits the balance', async () => {
    for (let i = 0; i < 6; i++) {
      const { customer, invoice } = await invoiceToPay(ctx)
      await fund(customer.id, '100.00')
      const created = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'CREDITS',
        amount: '100.00',
        process_payment: false,
      })
      expect(created.status, created.text).toBe(201)
      const after = await deleteAndProcessAtOnce(created.body.id)
      if (after.active === false) {
        expect(await balanceOf(customer.id)).toBe('100.00')
      } else {
        expect(after.payment_status).toBe('SUCCEEDED')
        expect(await balanceOf(customer.id)).toBe('0.00')
      }
    }
  })

  test('a refund sent 10 times at once with one Idempotency-Key refunds once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await payOffline(ctx, invoice.id, '100.00')
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        ctx.post<RefundBody>(
          `/v1/payments/${payment.id}/refunds`,
          { amount: '10.00' },
          { idempotencyKey: 'refund-once' },
        ),
      ),
    )
    expect(results.every((r) => r.status === 201 || r.status === 409)).toBe(true)
    expect((await getPayment(ctx, payment.id)).amount_refunded).toBe('10.00')
    const replay = await ctx.post<RefundBody>(
      `/v1/payments/${payment.id}/refunds`,
      { amount: '10.00' },
      { idempotencyKey: 'refund-once' },
    )
    expect(replay.status).toBe(201)
    expect(replay.headers['idempotent-replayed']).toBe('true')
  })
})

describe('body idempotency_key on POST /v1/payments', () => {
  test('10 concurrent PAYMENT_LINK requests with one idempotency_key open one page, the same for all', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const body = {
      destination_id: invoice.id,
      payment_method_type: 'PAYMENT_LINK',
      payment_gateway: 'sandbox',
      amount: '100.00',
      idempotency_key: 'link-once',
    }
    const answers = await Promise.all(Array.from({ length: 10 }, () => createPayment(ctx, body)))
    for (const a of answers) expect(a.status, a.text).toBeLessThan(500)
    const ok = answers.filter((a) => a.status === 201)
    expect(new Set(ok.map((a) => a.body.id)).size).toBe(1)
    const id = ok[0]?.body.id as string
    const { rows } = await ctx.pool.query('select id from sandbox_sessions where payment_id = $1', [
      id,
    ])
    expect(rows).toHaveLength(1)
    for (const a of ok) expect(a.body.payment_url).toBe((await getPayment(ctx, id)).payment_url)
    expect(answers.filter((a) => a.status !== 201).map((a) => a.text)).toEqual([])
  })

  test('the same body idempotency_key in another tenant makes its own payment', async () => {
    const other = await ctx.createTenantFixture('other-body-key')
    const { invoice } = await invoiceToPay(ctx)
    const a = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '10.00',
      idempotency_key: 'cross',
    })
    expect(a.status, a.text).toBe(201)
    const c2 = await createCustomer(ctx, { name: 'O', email: 'o@example.com' }, other.key)
    const inv2 = await finalizedInvoice(
      ctx,
      c2.id,
      { lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }] },
      other.key,
    )
    const b = await ctx.post<PaymentBody>(
      '/v1/payments',
      {
        destination_type: 'INVOICE',
        currency: 'usd',
        destination_id: inv2.id,
        payment_method_type: 'OFFLINE',
        amount: '10.00',
        idempotency_key: 'cross',
      },
      { key: other.key },
    )
    expect(b.status, b.text).toBe(201)
    expect(b.body.id).not.toBe(a.body.id)
  })
})

describe('invoice transition races', () => {
  test('10 concurrent finalizes of one draft: one 200, the rest 4xx, one number', async () => {
    const customer = await createCustomer(ctx)
    const res = await ctx.post<{ id: string }>('/v1/invoices', {
      customer_id: customer.id,
      currency: 'usd',
      lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
    })
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        ctx.post<{ invoice_number: string }>(`/v1/invoices/${res.body.id}/finalize`),
      ),
    )
    expect(
      answers.every((a) => a.status < 500),
      answers.map((a) => a.text).join('\n'),
    ).toBe(true)
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1)
  })

  test('finalize and void of a draft at once: never a 500', async () => {
    for (let i = 0; i < 6; i++) {
      const customer = await createCustomer(ctx)
      const res = await ctx.post<{ id: string }>('/v1/invoices', {
        customer_id: customer.id,
        currency: 'usd',
        lines: [{ description: 'x', quantity: 1, unit_amount: '10.00' }],
      })
      const answers = await Promise.all([
        ctx.post(`/v1/invoices/${res.body.id}/finalize`),
        ctx.post(`/v1/invoices/${res.body.id}/void`),
        ctx.post(`/v1/invoices/${res.body.id}/mark_uncollectible`),
      ])
      expect(
        answers.every((a) => a.status < 500),
        answers.map((a) => a.text).join('\n'),
      ).toBe(true)
    }
  })

  test('an Idempotency-Key replays a void; another transition under it is a mismatch', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const a = await ctx.post(`/v1/invoices/${invoice.id}/void`, undefined, {
      idempotencyKey: 'void-1',
    })
    const b = await ctx.post(`/v1/invoices/${invoice.id}/void`, undefined, {
      idempotencyKey: 'void-1',
    })
    expect(a.status).toBe(200)
    expect(b.status).toBe(200)
    expect(b.text).toBe(a.text)
    const c = await ctx.post<ErrorBody>(
      `/v1/invoices/${invoice.id}/mark_uncollectible`,
      undefined,
      { idempotencyKey: 'void-1' },
    )
    expect(c.status).toBe(422)
    expect(c.body.error.code).toBe('idempotency_mismatch')
  })
})

describe('top-up races', () => {
  async function topUpOrder(customerId: string, amount: string) {
    const res = await ctx.post<{ id: string; invoice_id: string }>('/v1/orders', {
      customer_id: customerId,
      type: 'CREDIT_TOP_UP',
      amount,
      currency: 'usd',
    })
    expect(res.status, res.text).toBe(201)
    return res.body
  }

  test('refund of a top-up and a CREDITS payment sent at once: the balance never goes negative, the ledger adds up', async () => {
    for (let i = 0; i < 5; i++) {
      const customer = await createCustomer(ctx)
      const order = await topUpOrder(customer.id, '50.00')
      const topUpPayment = await payOffline(ctx, order.invoice_id, '50.00')
      expect(await balanceOf(customer.id)).toBe('50.00')
      const other = await finalizedInvoice(ctx, customer.id, {
        lines: [{ description: 'spend', quantity: 1, unit_amount: '50.00' }],
      })
      const [refund, spend] = await Promise.all([
        ctx.post<RefundBody>(`/v1/payments/${topUpPayment.id}/refunds`, {}),
        ctx.post<PaymentBody>(`/v1/invoices/${other.id}/pay`, { payment_method_type: 'CREDITS' }),
      ])
      expect(refund.status, refund.text).toBeLessThan(500)
      expect(spend.status, spend.text).toBeLessThan(500)
      const balance = await balanceOf(customer.id)
      expect(Number(balance)).toBeGreaterThanOrEqual(0)
      expect(Number(await ledgerSum(customer.id))).toBe(Number(balance))
      if (spend.status === 201) expect(balance).toBe('0.00')
    }
  })

  test('orders/pay and invoices/:id/pay of one order at once pay it once and credit once', async () => {
    for (let i = 0; i < 5; i++) {
      const customer = await createCustomer(ctx)
      const order = await topUpOrder(customer.id, '20.00')
      const [a, b] = await Promise.all([
        ctx.post<PaymentBody>('/v1/orders/pay', {
          orders: [order.id],
          payment_method_type: 'OFFLINE',
        }),
        ctx.post<PaymentBody>(`/v1/invoices/${order.invoice_id}/pay`, {
          payment_method_type: 'OFFLINE',
        }),
      ])
      expect(a.status, a.text).toBeLessThan(500)
      expect(b.status, b.text).toBeLessThan(500)
      expect([a.status, b.status].filter((s) => s === 201)).toHaveLength(1)
      expect((await getInvoice(ctx, order.invoice_id)).amount_paid).toBe('20.00')
      expect(await balanceOf(customer.id)).toBe('20.00')
    }
  })
})

describe('hosted sandbox page races', () => {
  test('a card form sent 6 times at once pays the link once', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice, '100.00')
    expect(link.status, link.text).toBe(201)
    const session = sessionOf(link.body)
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => submitCard(ctx, session, '4242424242424242')),
    )
    for (const a of answers) expect(a.statusCode, a.body).toBeLessThan(500)
    await expectPaidInFull(ctx, link.body.id, invoice.id, '100.00')
  })

  test('card form and cancel at once: a cancelled link never takes the money', async () => {
    for (let i = 0; i < 5; i++) {
      const { invoice } = await invoiceToPay(ctx)
      const link = await createSandboxLink(ctx, invoice, '100.00')
      const session = sessionOf(link.body)
      const [paid, cancelled, apiCancel] = await Promise.all([
        submitCard(ctx, session, '4242424242424242'),
        ctx.app.inject({ method: 'POST', url: `/sandbox/checkout/${session}/cancel` }),
        ctx.post(`/v1/payments/${link.body.id}/cancel`),
      ])
      expect(paid.statusCode, paid.body).toBeLessThan(500)
      expect(cancelled.statusCode, cancelled.body).toBeLessThan(500)
      expect(apiCancel.status, apiCancel.text).toBeLessThan(500)
      const p = await getPayment(ctx, link.body.id)
      const inv = await getInvoice(ctx, invoice.id)
      if (p.payment_status === 'SUCCEEDED') expect(inv.amount_paid).toBe('100.00')
      else expect(inv.amount_paid).toBe('0.00')
    }
  })
})

describe('subscription races', () => {
  test('cancelling an incomplete subscription while its first invoice is paid: no money on a void invoice, state consistent', async () => {
    const price = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Plan',
      type: 'recurring',
      prices: [{ amount: '20.00', currency: 'usd', interval: 'month' }],
    })
    const priceId = price.body.prices[0]?.id
    for (let i = 0; i < 5; i++) {
      const customer = await createCustomer(ctx)
      const order = await ctx.post<{ id: string; invoice_id: string; subscription_id: string }>(
        '/v1/orders',
        {
          customer_id: customer.id,
          type: 'SUBSCRIPTION',
          price_id: priceId,
        },
      )
      expect(order.status, order.text).toBe(201)
      const [cancelled, paid] = await Promise.all([
        ctx.post(`/v1/subscriptions/${order.body.subscription_id}/cancel`),
        ctx.post<PaymentBody>(`/v1/invoices/${order.body.invoice_id}/pay`, {
          payment_method_type: 'OFFLINE',
        }),
      ])
      expect(cancelled.status, cancelled.text).toBeLessThan(500)
      expect(paid.status, paid.text).toBeLessThan(500)
      const inv = await getInvoice(ctx, order.body.invoice_id)
      if (paid.status === 201) {
        expect(inv.amount_paid).toBe('20.00')
        expect(inv.invoice_status).not.toBe('VOIDED')
      } else {
        expect(inv.amount_paid).toBe('0.00')
      }
    }
  })

  test('10 concurrent cancels of one subscription: never a 500', async () => {
    const price = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Plan2',
      type: 'recurring',
      prices: [{ amount: '20.00', currency: 'usd', interval: 'month' }],
    })
    const customer = await createCustomer(ctx)
    const order = await ctx.post<{ id: string; invoice_id: string; subscription_id: string }>(
      '/v1/orders',
      {
        customer_id: customer.id,
        type: 'SUBSCRIPTION',
        price_id: price.body.prices[0]?.id,
      },
    )
    await payOffline(ctx, order.body.invoice_id, '20.00')
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.post(
          `/v1/subscriptions/${order.body.subscription_id}/cancel`,
          i % 2 ? { at_period_end: true } : {},
        ),
      ),
    )
    expect(
      answers.every((a) => a.status < 500),
      answers.map((a) => a.text).join('\n'),
    ).toBe(true)
  })
})

describe('concurrent metadata merges lose nothing', () => {
  test('10 concurrent PATCHes of a customer, each adding a metadata key: all 10 kept', async () => {
    const customer = await createCustomer(ctx)
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.request('PATCH', `/v1/customers/${customer.id}`, { metadata: { [`k${i}`]: 'v' } }),
      ),
    )
    expect(
      answers.every((a) => a.status === 200),
      answers.map((a) => a.text).join('\n'),
    ).toBe(true)
    const after = await ctx.get<{ metadata: Record<string, string> }>(
      `/v1/customers/${customer.id}`,
    )
    expect(Object.keys(after.body.metadata).sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `k${i}`).sort(),
    )
  })

  test('10 concurrent PATCHes of a payment, each adding a metadata key: all 10 kept', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await payOffline(ctx, invoice.id, '10.00')
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.request('PATCH', `/v1/payments/${payment.id}`, { metadata: { [`k${i}`]: 'v' } }),
      ),
    )
    expect(
      answers.every((a) => a.status === 200),
      answers.map((a) => a.text).join('\n'),
    ).toBe(true)
    const after = await getPayment(ctx, payment.id)
    expect(Object.keys(after.metadata as Record<string, string>).sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `k${i}`).sort(),
    )
  })

  test('10 concurrent PATCHes of a product, each adding a metadata key: all 10 kept', async () => {
    const product = await ctx.post<{ id: string }>('/v1/products', {
      name: 'P',
      type: 'one_time',
      prices: [{ amount: '1.00', currency: 'usd' }],
    })
    expect(product.status, product.text).toBe(201)
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.request('PATCH', `/v1/products/${product.body.id}`, { metadata: { [`k${i}`]: 'v' } }),
      ),
    )
    expect(
      answers.every((a) => a.status === 200),
      answers.map((a) => a.text).join('\n'),
    ).toBe(true)
    const after = await ctx.get<{ metadata: Record<string, string> }>(
      `/v1/products/${product.body.id}`,
    )
    expect(Object.keys(after.body.metadata)).toHaveLength(10)
  })
})

describe('refunds of a payment split over invoices', () => {
  test('10 concurrent refunds of 15.00 on an orders/pay payment of 2 × 50.00: six apply, the invoices add up', async () => {
    const product = await ctx.post<{ prices: { id: string }[] }>('/v1/products', {
      name: 'Thing',
      type: 'one_time',
      prices: [{ amount: '50.00', currency: 'usd' }],
    })
    const priceId = product.body.prices[0]?.id
    const customer = await createCustomer(ctx)
    const orders = [] as { id: string; invoice_id: string }[]
    for (let i = 0; i < 2; i++) {
      const o = await ctx.post<{ id: string; invoice_id: string }>('/v1/orders', {
        customer_id: customer.id,
        type: 'ONE_TIME_PRODUCT',
        price_id: priceId,
      })
      expect(o.status, o.text).toBe(201)
      orders.push(o.body)
    }
    const paid = await ctx.post<PaymentBody>('/v1/orders/pay', {
      orders: orders.map((o) => o.id),
      payment_method_type: 'OFFLINE',
    })
    expect(paid.status, paid.text).toBe(201)
    expect(paid.body.amount).toBe('100.00')
    expect(await refundsAtOnce(paid.body.id, 10, { amount: '15.00' })).toBe(6)
    expect((await getPayment(ctx, paid.body.id)).amount_refunded).toBe('90.00')
    const invs = await Promise.all(orders.map((o) => getInvoice(ctx, o.invoice_id)))
    const refunded = invs.reduce((s, inv) => s + Math.round(Number(inv.amount_refunded) * 100), 0)
    expect(refunded).toBe(9000)
  })
})

describe('a declined first response under an Idempotency-Key', () => {
  test('the 402 is replayed, no second charge; the same key at once is one charge', async () => {
    const customer = await createCustomer(ctx)
    const card = await savedSandboxCard(ctx, customer.id, '4000000000000002')
    const invoice = await finalizedInvoice(ctx, customer.id)
    const body = {
      destination_id: invoice.id,
      payment_method_type: 'CARD',
      payment_gateway: 'sandbox',
      payment_method_id: card.id,
      amount: '100.00',
    }
    const answers = await Promise.all(
      Array.from({ length: 4 }, () =>
        ctx.post<ErrorBody>(
          '/v1/payments',
          { destination_type: 'INVOICE', currency: 'usd', ...body },
          { idempotencyKey: 'decline-1' },
        ),
      ),
    )
    for (const a of answers) expect([402, 409]).toContain(a.status)
    const first = answers.find((a) => a.status === 402)
    expect(first).toBeDefined()
    const again = await ctx.post<ErrorBody>(
      '/v1/payments',
      { destination_type: 'INVOICE', currency: 'usd', ...body },
      { idempotencyKey: 'decline-1' },
    )
    expect(again.status).toBe(402)
    expect(again.text).toBe(first?.text)
    expect(again.headers['idempotent-replayed']).toBe('true')
    const { rows } = await ctx.pool.query(
      `select p.id from payments p join payment_allocations a on a.payment_id = p.id where a.invoice_id = $1`,
      [invoice.id],
    )
    expect(rows).toHaveLength(1)
  })
})

describe('odd keyed requests answer in the error shape, never 500', () => {
  test('unknown route, bad JSON, and a key on both: 4xx, and the key is then usable for a real request', async () => {
    const unknown = await ctx.post<ErrorBody>(
      '/v1/nothing_here',
      { a: 1 },
      { idempotencyKey: 'odd-1' },
    )
    expect(unknown.status).toBe(404)
    expect(unknown.body.error.code).toBe('not_found')
    const bad = await ctx.app.inject({
      method: 'POST',
      url: '/v1/customers',
      headers: {
        authorization: `Bearer ${ctx.main.key}`,
        'content-type': 'application/json',
        'idempotency-key': 'odd-2',
      },
      payload: '{"name":',
    })
    expect(bad.statusCode).toBe(400)
    const ok = await ctx.post(
      '/v1/customers',
      { name: 'X', email: 'x@example.com' },
      { idempotencyKey: 'odd-2' },
    )
    expect(ok.status, ok.text).toBe(201)
  })

  test('a unicode key is its own key and replays', async () => {
    const k = 'clé-ключ-🔑'
    const a = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'U', email: 'u@example.com' },
      { idempotencyKey: k },
    )
    const b = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'U', email: 'u@example.com' },
      { idempotencyKey: k },
    )
    expect(a.status, a.text).toBe(201)
    expect(b.status).toBe(201)
    expect(b.body.id).toBe(a.body.id)
  })

  test('an expired key with another body runs afresh after 24 h', async () => {
    const a = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'E1', email: 'e@example.com' },
      { idempotencyKey: 'exp-1' },
    )
    expect(a.status).toBe(201)
    ctx.clock.advance(24 * 60 * 60 * 1000 - 1000)
    const early = await ctx.post<ErrorBody>(
      '/v1/customers',
      { name: 'E2', email: 'e@example.com' },
      { idempotencyKey: 'exp-1' },
    )
    expect(early.status).toBe(422)
    ctx.clock.advance(1000)
    const b = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'E2', email: 'e@example.com' },
      { idempotencyKey: 'exp-1' },
    )
    expect(b.status, b.text).toBe(201)
    expect(b.body.id).not.toBe(a.body.id)
    expect(b.headers['idempotent-replayed']).toBeUndefined()
  })
})

describe('sandbox crypto page races', () => {
  test('crypto pay_and_confirm and API cancel at once: money only on a succeeded payment', async () => {
    for (let i = 0; i < 5; i++) {
      const { invoice, crypto: opened } = await openSandboxCrypto(ctx)
      const crypto = opened.body
      const session = sessionOf(crypto)
      const [paid, cancelled] = await Promise.all([
        pagePost(ctx, `/sandbox/crypto/${session}`, 'pay_and_confirm'),
        ctx.post(`/v1/payments/${crypto.id}/cancel`),
      ])
      expect(paid.statusCode, paid.body).toBeLessThan(500)
      expect(cancelled.status, cancelled.text).toBeLessThan(500)
      const p = await getPayment(ctx, crypto.id)
      const inv = await getInvoice(ctx, invoice.id)
      if (p.payment_status === 'SUCCEEDED') expect(inv.amount_paid).toBe('100.00')
      else expect(inv.amount_paid).toBe('0.00')
      if (cancelled.status === 200) expect(p.payment_status).toBe('CANCELLED')
    }
  })
})

describe('DELETE and process of an INITIATED CARD payment at once', () => {
  test('a deleted payment never charges the saved card', async () => {
    for (let i = 0; i < 4; i++) {
      const { nextInvoiceId, payment } = await unprocessedCardPayment(ctx)
      const after = await deleteAndProcessAtOnce(payment.id)
      const inv = await getInvoice(ctx, nextInvoiceId)
      if (after.active === false) {
        expect(after.payment_status).not.toBe('SUCCEEDED')
        expect(inv.amount_paid).toBe('0.00')
      } else {
        expect(after.payment_status).toBe('SUCCEEDED')
        expect(inv.amount_paid).toBe('30.00')
      }
    }
  })
})
