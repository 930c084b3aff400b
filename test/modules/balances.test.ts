import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { applyBalanceChange } from '../../src/modules/balances/service.ts'
import { createCustomer, finalizedInvoice, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  getInvoice,
  getPayment,
  type PaymentBody,
  payrailLockWaits,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

async function ledgerSum(customerId: string, currency: string) {
  const rows = await ctx.db
    .selectFrom('balance_transactions')
    .select(['amount'])
    .where('customer_id', '=', customerId)
    .where('currency', '=', currency)
    .execute()
  return rows.reduce((sum, r) => sum + r.amount, 0n)
}

async function balance(customerId: string, currency: string) {
  const row = await ctx.db
    .selectFrom('customer_balances')
    .select('balance')
    .where('customer_id', '=', customerId)
    .where('currency', '=', currency)
    .executeTakeFirst()
  return row?.balance ?? 0n
}

const debit = (customerId: string, amount: bigint, sourceId: string) =>
  ctx.db.transaction().execute((trx) =>
    applyBalanceChange(
      trx,
      ctx.scope,
      {
        customerId,
        currency: 'usd',
        amount: -amount,
        type: 'payment',
        source: { type: 'payment', id: sourceId },
      },
      ctx.clock,
    ),
  )

describe('account balance ledger', () => {
  test('50 concurrent debits against one balance never take it below zero; the ledger sums to it', async () => {
    const customer = await createCustomer(ctx)
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '100.00',
      currency: 'usd',
    })
    // 50 debits of 3.00 against 100.00: 33 fit, 17 must be refused.
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => debit(customer.id, 300n, `pay_${i}`)),
    )
    const applied = results.filter((r) => r !== undefined)
    expect(applied).toHaveLength(33)
    expect(await balance(customer.id, 'usd')).toBe(100n)
    expect(await ledgerSum(customer.id, 'usd')).toBe(await balance(customer.id, 'usd'))
    // Each ledger row's balance_after is consistent with the order the debits were applied.
    const afters = applied.map((r) => r?.balance_after ?? -1n).sort((a, b) => (a < b ? 1 : -1))
    expect(afters).toEqual(Array.from({ length: 33 }, (_, i) => 10000n - 300n * BigInt(i + 1)))
  })

  test('mixed concurrent credits and debits keep ledger and balance equal, never negative', async () => {
    const customer = await createCustomer(ctx)
    const jobs = Array.from({ length: 60 }, (_, i) =>
      i % 3 === 0
        ? ctx.db.transaction().execute((trx) =>
            applyBalanceChange(
              trx,
              ctx.scope,
              {
                customerId: customer.id,
                currency: 'usd',
                amount: 500n,
                type: 'top_up',
                source: { type: 'order', id: `ord_${i}` },
              },
              ctx.clock,
            ),
          )
        : debit(customer.id, 200n, `pay_${i}`),
    )
    await Promise.all(jobs)
    const final = await balance(customer.id, 'usd')
    expect(final).toBeGreaterThanOrEqual(0n)
    expect(await ledgerSum(customer.id, 'usd')).toBe(final)
    const negative = await ctx.db
      .selectFrom('balance_transactions')
      .select('id')
      .where('balance_after', '<', 0n)
      .execute()
    expect(negative).toEqual([])
  })

  test('the same source is applied once (a replayed top-up is refused by the ledger)', async () => {
    const customer = await createCustomer(ctx)
    const topUp = () =>
      ctx.db.transaction().execute((trx) =>
        applyBalanceChange(
          trx,
          ctx.scope,
          {
            customerId: customer.id,
            currency: 'usd',
            amount: 1000n,
            type: 'top_up',
            source: { type: 'order', id: 'ord_same' },
          },
          ctx.clock,
        ),
      )
    await topUp()
    await expect(topUp()).rejects.toThrow(/duplicate key/)
    expect(await balance(customer.id, 'usd')).toBe(1000n)
  })

  test('balances are per currency', async () => {
    const customer = await createCustomer(ctx)
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '10',
      currency: 'usd',
    })
    await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '1000',
      currency: 'jpy',
    })
    const shown = await ctx.get<{ balances: Record<string, string> }>(
      `/v1/customers/${customer.id}`,
    )
    expect(shown.body.balances).toEqual({ jpy: '1000', usd: '10.00' })
    const euroDebit = await ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
      amount: '-1',
      currency: 'eur',
    })
    expect(euroDebit.status).toBe(409)
    const list = await ctx.get<List<unknown>>(`/v1/customers/${customer.id}/balance_transactions`)
    expect(list.body.pagination.total).toBe(2)
  })
})

type Answer = { status: number; text: string }

const balances = async (customerId: string) =>
  (await ctx.get<{ balances: Record<string, string> }>(`/v1/customers/${customerId}`)).body.balances

async function credit(customerId: string, amount: string, currency = 'usd') {
  const res = await ctx.post(`/v1/customers/${customerId}/balance_transactions`, {
    amount,
    currency,
  })
  expect(res.status, res.text).toBe(201)
}

const until = async (waits: number) => {
  while ((await payrailLockWaits(ctx)) < waits) await new Promise((r) => setTimeout(r, 5))
}

/**
 * Runs `first` while another transaction on the customer's balance (any payment, top-up or
 * refund of that customer) holds the balance row; once `first` waits on it, runs `second`;
 * once both wait, the holder commits. Both requests then queue on the balance row.
 */
async function queuedOnBalance(
  customerId: string,
  first: () => Promise<Answer>,
  second: () => Promise<Answer>,
): Promise<[Answer, Answer]> {
  const holder = await ctx.pool.connect()
  let a: Promise<Answer>
  let b: Promise<Answer>
  try {
    await holder.query('begin')
    await holder.query('select balance from customer_balances where customer_id = $1 for update', [
      customerId,
    ])
    a = first()
    await until(1)
    b = second()
    await until(2)
    await holder.query('commit')
  } finally {
    holder.release()
  }
  return Promise.all([a!, b!])
}

describe('balance changes queued on one balance, and their refusals', () => {
  test('a refund to the balance and an admin adjustment queued on the same balance both go through (no deadlock)', async () => {
    const customer = await createCustomer(ctx)
    await credit(customer.id, '100.00')
    const invoice = await finalizedInvoice(ctx, customer.id)
    const paid = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '40.00',
    })
    expect(paid.status, paid.text).toBe(201)
    const [refund, adjustment] = await queuedOnBalance(
      customer.id,
      () => ctx.post(`/v1/payments/${paid.body.id}/refunds`, { amount: '10.00' }),
      () =>
        ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
          amount: '5.00',
          currency: 'usd',
        }),
    )
    // Before, one of them was 409 "collided with a concurrent change": the adjustment held the
    // customer FOR UPDATE, which the refund's ledger insert (its foreign key) waited on.
    expect([refund.status, adjustment.status], `${refund.text}\n${adjustment.text}`).toEqual([
      201, 201,
    ])
    expect(await balances(customer.id)).toEqual({ usd: '75.00' })
  })

  test('confirming a balance (PLATFORM) payment and an admin adjustment queued on the same balance both go through (no deadlock)', async () => {
    const customer = await createCustomer(ctx)
    await credit(customer.id, '100.00')
    const invoice = await finalizedInvoice(ctx, customer.id)
    const put = await ctx.put<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'PLATFORM',
      account_id: customer.id,
    })
    expect(put.status, put.text).toBe(201)
    const [confirm, adjustment] = await queuedOnBalance(
      customer.id,
      () => ctx.post(`/v1/invoices/${invoice.id}/payment/confirm`, {}),
      () =>
        ctx.post(`/v1/customers/${customer.id}/balance_transactions`, {
          amount: '5.00',
          currency: 'usd',
        }),
    )
    expect([confirm.status, adjustment.status], `${confirm.text}\n${adjustment.text}`).toEqual([
      200, 201,
    ])
    expect(await balances(customer.id)).toEqual({ usd: '5.00' })
  })
})

describe('a credit top-up paid again after a refund took its credit back', () => {
  const ledgerOf = async (customerId: string) =>
    (
      await ctx.get<List<{ type: string; amount: string }>>(
        `/v1/customers/${customerId}/balance_transactions`,
      )
    ).body.items.map((t) => [t.type, t.amount])

  /** A 50.00 credit top-up with hosted pages open for `amounts` of it (its amount due if none). */
  async function topUpWithPages<const Amounts extends (string | undefined)[]>(...amounts: Amounts) {
    const customer = await createCustomer(ctx)
    const order = await ctx.post<{ invoice_id: string }>('/v1/orders', {
      customer_id: customer.id,
      type: 'CREDIT_TOP_UP',
      amount: '50.00',
      currency: 'usd',
    })
    expect(order.status, order.text).toBe(201)
    const invoice = await getInvoice(ctx, order.body.invoice_id)
    const pages: PaymentBody[] = []
    for (const amount of amounts) pages.push((await createSandboxLink(ctx, invoice, amount)).body)
    return { customer, invoice, pages: pages as { [K in keyof Amounts]: PaymentBody } }
  }

  const pay = async (page: PaymentBody) =>
    expect((await submitCard(ctx, sessionOf(page), '4242424242424242')).statusCode).toBe(200)

  const refund = async (page: PaymentBody) =>
    expect((await ctx.post(`/v1/payments/${page.id}/refunds`, {})).status).toBe(201)

  test('paying the top-up again in full after a full refund gives the credit back', async () => {
    const {
      customer,
      invoice,
      pages: [first, second],
    } = await topUpWithPages(undefined, undefined)
    await pay(first)
    await refund(first)
    expect(await balances(customer.id)).toEqual({ usd: '0.00' })
    await pay(second)
    expect(await getPayment(ctx, second.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
      amount_refunded: '50.00',
    })
    // 50.00 paid net, and the customer holds the top-up's 50.00 of credit again.
    expect(await balances(customer.id)).toEqual({ usd: '50.00' })
    expect(await ledgerOf(customer.id)).toEqual([
      ['top_up', '50.00'],
      ['refund', '-50.00'],
      ['top_up', '50.00'],
    ])
  })

  test('each payment gives back the share of credit it pays for again, never more than was taken; refunds take it back again', async () => {
    // Three hosted pages open for the top-up: an open page holds nothing.
    const {
      customer,
      invoice,
      pages: [first, part, second],
    } = await topUpWithPages(undefined, '20.00', undefined)
    await pay(first)
    expect(await balances(customer.id)).toEqual({ usd: '50.00' })
    await refund(first)
    expect(await balances(customer.id)).toEqual({ usd: '0.00' })
    // 20.00 paid on a page pays for 20.00 of the credit again.
    await pay(part)
    expect(await balances(customer.id)).toEqual({ usd: '20.00' })
    // The other page pays 50.00: the invoice keeps 70.00 of the 50.00 due, and the customer
    // holds the top-up's 50.00 of credit again, no more.
    await pay(second)
    expect(await getPayment(ctx, second.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'OVERPAID',
      amount_paid: '120.00',
      amount_refunded: '50.00',
    })
    expect(await balances(customer.id)).toEqual({ usd: '50.00' })
    expect(await ledgerOf(customer.id)).toEqual([
      ['top_up', '30.00'],
      ['top_up', '20.00'],
      ['refund', '-50.00'],
      ['top_up', '50.00'],
    ])
    expect(await ledgerSum(customer.id, 'usd')).toBe(5000n)
    // Refunding both leaves the invoice paid for nothing net: the credit given back is taken
    // back again, as far as each refund uncovers it.
    await refund(second)
    expect(await balances(customer.id)).toEqual({ usd: '20.00' })
    await refund(part)
    expect(await balances(customer.id)).toEqual({ usd: '0.00' })
    expect((await ledgerOf(customer.id)).slice(0, 2)).toEqual([
      ['refund', '-20.00'],
      ['refund', '-30.00'],
    ])
  })

  test('credit spent before the refund is covered first: a payment gives back only what the invoice is net paid for beyond it', async () => {
    const {
      customer,
      pages: [first, part, second],
    } = await topUpWithPages(undefined, '20.00', undefined)
    await pay(first)
    // 30.00 of the 50.00 spent: the refund can take back only the 20.00 left.
    await debit(customer.id, 3000n, `spent-${customer.id}`)
    await refund(first)
    expect(await balances(customer.id)).toEqual({ usd: '0.00' })
    // 20.00 paid again covers 20.00 of the 30.00 spent, and gives nothing back: before, it
    // gave back 20.00, and the customer, 20.00 net paid, had 50.00 of credit to spend.
    await pay(part)
    expect(await balances(customer.id)).toEqual({ usd: '0.00' })
    // Paid in full again (70.00 net of 50.00 due): 30.00 spent and 20.00 held, the top-up's 50.00.
    await pay(second)
    expect(await balances(customer.id)).toEqual({ usd: '20.00' })
    expect(await ledgerOf(customer.id)).toEqual([
      ['top_up', '20.00'],
      ['refund', '-20.00'],
      ['payment', '-30.00'],
      ['top_up', '50.00'],
    ])
    expect(await ledgerSum(customer.id, 'usd')).toBe(2000n)
  })
})
