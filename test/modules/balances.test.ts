import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { applyBalanceChange } from '../../src/modules/balances/service.ts'
import { createCustomer, type List } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'

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
