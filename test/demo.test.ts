import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { AppError } from '../src/core/errors.ts'
import type { Scope } from '../src/core/principal.ts'
import { type DemoSummary, seedDemo } from '../src/demo/seed-demo.ts'
import { createTestContext, type TestContext } from './harness.ts'

const NOW = new Date('2026-01-15T12:00:00Z')
const CUSTOMERS = 12
const DAY_MS = 86_400_000

let ctx: TestContext
let scope: Scope
let summary: DemoSummary

beforeAll(async () => {
  ctx = await createTestContext()
  scope = { tenantId: ctx.main.tenant.id, environmentId: ctx.main.test.id }
  summary = await seedDemo({ db: ctx.db, logger: ctx.deps.logger }, scope, {
    now: NOW,
    customers: CUSTOMERS,
  })
}, 60_000)
afterAll(() => ctx.close())

function invoicesOfEnvironment() {
  return ctx.db.selectFrom('invoices').selectAll().where('environment_id', '=', scope.environmentId)
}

function countBy<K extends string>(rows: { key: K; n: string }[]): Record<string, number> {
  return Object.fromEntries(rows.map((r) => [r.key, Number(r.n)]))
}

describe('seedDemo', () => {
  test('the summary counts what is in the database', async () => {
    const db = ctx.db
    const env = scope.environmentId
    const count = async (table: 'customers' | 'products' | 'prices' | 'discounts' | 'orders') =>
      Number(
        (
          await db
            .selectFrom(table)
            .select(sql<string>`count(*)`.as('n'))
            .where('environment_id', '=', env)
            .executeTakeFirstOrThrow()
        ).n,
      )
    expect(summary.customers).toBe(CUSTOMERS)
    expect(await count('customers')).toBe(summary.customers)
    expect(await count('products')).toBe(summary.products)
    expect(await count('prices')).toBe(summary.prices)
    expect(await count('discounts')).toBe(summary.discounts)
    expect(await count('orders')).toBe(summary.orders.total)

    const byInvoiceStatus = countBy(
      await invoicesOfEnvironment()
        .clearSelect()
        .select(['invoice_status as key', sql<string>`count(*)`.as('n')])
        .groupBy('invoice_status')
        .execute(),
    )
    const byPaymentStatus = countBy(
      await invoicesOfEnvironment()
        .clearSelect()
        .select(['payment_status as key', sql<string>`count(*)`.as('n')])
        .groupBy('payment_status')
        .execute(),
    )
    const nonZero = (counts: Record<string, number>) =>
      Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0))
    expect(nonZero(summary.invoices.byInvoiceStatus)).toEqual(byInvoiceStatus)
    expect(nonZero(summary.invoices.byPaymentStatus)).toEqual(byPaymentStatus)

    const bySubscriptionStatus = countBy(
      await db
        .selectFrom('subscriptions')
        .select(['status as key', sql<string>`count(*)`.as('n')])
        .where('environment_id', '=', env)
        .groupBy('status')
        .execute(),
    )
    expect(nonZero(summary.subscriptions.byStatus)).toEqual(bySubscriptionStatus)

    const transactions = await db
      .selectFrom('balance_transactions')
      .select(sql<string>`count(*)`.as('n'))
      .where('environment_id', '=', env)
      .executeTakeFirstOrThrow()
    expect(Number(transactions.n)).toBe(summary.balanceTransactions)
    expect(summary.renewals).toBeGreaterThan(CUSTOMERS * 5)
  })

  test('invoices exist in every invoice status and the main payment statuses', () => {
    for (const count of Object.values(summary.invoices.byInvoiceStatus))
      expect(count).toBeGreaterThan(0)
    const { PENDING, SUCCEEDED, OVERPAID, PARTIALLY_REFUNDED } = summary.invoices.byPaymentStatus
    expect(PENDING).toBeGreaterThan(0)
    expect(SUCCEEDED).toBeGreaterThan(PENDING)
    expect(OVERPAID).toBeGreaterThan(0)
    expect(PARTIALLY_REFUNDED).toBeGreaterThan(0)
  })

  test('subscriptions are active, past_due and canceled; orders of every type', () => {
    const { active, past_due, canceled } = summary.subscriptions.byStatus
    expect(active).toBeGreaterThan(0)
    expect(past_due).toBeGreaterThan(0)
    expect(canceled).toBeGreaterThanOrEqual(2)
    for (const count of Object.values(summary.orders.byType)) expect(count).toBeGreaterThan(0)
    expect(summary.orders.byStatus.FULFILLED).toBeGreaterThan(summary.orders.byStatus.PENDING)
  })

  test('a year of monthly renewals on the oldest subscription', async () => {
    const cycles = await invoicesOfEnvironment()
      .where('billing_reason', '=', 'subscription_cycle')
      .orderBy('period_start')
      .execute()
    const bySubscription = new Map<string | null, typeof cycles>()
    for (const invoice of cycles) {
      bySubscription.set(invoice.subscription_id, [
        ...(bySubscription.get(invoice.subscription_id) ?? []),
        invoice,
      ])
    }
    const longest = [...bySubscription.values()].sort((a, b) => b.length - a.length)[0] ?? []
    expect(longest.length).toBeGreaterThanOrEqual(12)
    const first = longest[0]?.period_start?.getTime() ?? 0
    const last = longest.at(-1)?.period_end?.getTime() ?? 0
    expect(last - first).toBeGreaterThanOrEqual(360 * DAY_MS)
    // Consecutive periods, one invoice each.
    for (const [i, invoice] of longest.entries()) {
      const next = longest[i + 1]
      if (next) expect(next.period_start).toEqual(invoice.period_end)
    }
  })

  test('the story stays between thirteen months ago and now', async () => {
    const range = await invoicesOfEnvironment()
      .clearSelect()
      .select([
        sql<Date>`min(created_at)`.as('first'),
        sql<Date>`max(created_at)`.as('last'),
        sql<Date>`max(paid_at)`.as('lastPaid'),
      ])
      .executeTakeFirstOrThrow()
    expect(range.first.getTime()).toBeGreaterThanOrEqual(NOW.getTime() - 14 * 31 * DAY_MS)
    expect(range.first.getTime()).toBeLessThan(NOW.getTime() - 12 * 30 * DAY_MS)
    expect(range.last.getTime()).toBeLessThanOrEqual(NOW.getTime())
    expect(range.lastPaid.getTime()).toBeLessThanOrEqual(NOW.getTime())
    expect(summary.from.getTime()).toBe(Date.UTC(2024, 11, 1))
    expect(summary.to).toEqual(NOW)
  })

  test('every customer ledger sums to its balance, per currency', async () => {
    const balances = await ctx.db
      .selectFrom('customer_balances')
      .selectAll()
      .where('environment_id', '=', scope.environmentId)
      .execute()
    const ledger = await ctx.db
      .selectFrom('balance_transactions')
      .select(['customer_id', 'currency', sql<string>`sum(amount)`.as('total')])
      .where('environment_id', '=', scope.environmentId)
      .groupBy(['customer_id', 'currency'])
      .execute()
    expect(ledger.length).toBeGreaterThanOrEqual(3)
    expect(balances).toHaveLength(ledger.length)
    for (const row of ledger) {
      const balance = balances.find(
        (b) => b.customer_id === row.customer_id && b.currency === row.currency,
      )
      expect(balance?.balance, `${row.customer_id} ${row.currency}`).toBe(BigInt(row.total))
    }
    const types = await ctx.db
      .selectFrom('balance_transactions')
      .select('type')
      .distinct()
      .where('environment_id', '=', scope.environmentId)
      .execute()
    expect(types.map((t) => t.type).sort()).toEqual(['adjustment', 'top_up'])
  })

  test('invoice numbers are unique and only drafts have none; amounts add up', async () => {
    const invoices = await invoicesOfEnvironment().execute()
    const numbers = invoices.flatMap((i) => (i.number === null ? [] : [i.number]))
    expect(new Set(numbers).size).toBe(numbers.length)
    for (const invoice of invoices) {
      expect(invoice.number === null, invoice.id).toBe(invoice.invoice_status === 'DRAFT')
      expect(invoice.total).toBe(invoice.subtotal - invoice.total_discount)
      if (invoice.invoice_status === 'FINALIZED') {
        const owed = invoice.amount_due - invoice.amount_paid
        expect(invoice.amount_remaining).toBe(owed > 0n ? owed : 0n)
      }
      if (invoice.payment_status === 'SUCCEEDED') expect(invoice.paid_at).not.toBeNull()
    }
    const partiallyPaid = invoices.filter(
      (i) => i.payment_status === 'PENDING' && i.amount_paid > 0n && i.amount_remaining > 0n,
    )
    expect(partiallyPaid).toHaveLength(1)
    expect(invoices.some((i) => i.discount_code !== null)).toBe(true)
  })

  test('discounts: the founders code is used up and the launch code has expired', async () => {
    const discounts = await ctx.db
      .selectFrom('discounts')
      .selectAll()
      .where('environment_id', '=', scope.environmentId)
      .execute()
    const founders = discounts.find((d) => d.code === 'FOUNDERS50')
    expect(founders?.times_redeemed).toBe(founders?.max_redemptions)
    const launch = discounts.find((d) => d.code === 'LAUNCH20')
    expect(launch?.expires_at?.getTime()).toBeLessThan(NOW.getTime())
    expect(launch?.times_redeemed).toBeGreaterThan(0)
  })

  test('a second run refuses with a conflict and writes nothing', async () => {
    const before = await invoicesOfEnvironment().execute()
    const second = seedDemo({ db: ctx.db, logger: ctx.deps.logger }, scope, { now: NOW })
    await expect(second).rejects.toBeInstanceOf(AppError)
    await expect(second).rejects.toMatchObject({ code: 'conflict' })
    expect(await invoicesOfEnvironment().execute()).toHaveLength(before.length)
  })

  test('the live environment is refused', async () => {
    const live = { tenantId: ctx.main.tenant.id, environmentId: ctx.main.live.id }
    await expect(
      seedDemo({ db: ctx.db, logger: ctx.deps.logger }, live, { now: NOW, customers: 8 }),
    ).rejects.toMatchObject({ code: 'validation_error' })
  })

  test('stopped half-way (its signal aborted), it writes nothing, and runs again in full', async () => {
    const other = await ctx.createTenantFixture('Demo stopped')
    const stopped = { tenantId: other.tenant.id, environmentId: other.test.id }
    const customersOf = async () =>
      Number(
        (
          await ctx.db
            .selectFrom('customers')
            .select(sql<string>`count(*)`.as('n'))
            .where('environment_id', '=', stopped.environmentId)
            .executeTakeFirstOrThrow()
        ).n,
      )
    const stop = new AbortController()
    let midway: Promise<number> | undefined
    // In the seventh month of the story (customers and invoices written by then), another
    // connection counts the customers, then Ctrl-C.
    const logger = Object.create(ctx.deps.logger, {
      debug: {
        value: (fields: { step?: number }) => {
          if (fields.step !== 6 || midway) return
          midway = customersOf().then((n) => {
            stop.abort(new Error('Stopped by SIGINT'))
            return n
          })
        },
      },
    })
    const run = seedDemo({ db: ctx.db, logger }, stopped, {
      now: NOW,
      customers: CUSTOMERS,
      signal: stop.signal,
    })
    await expect(run).rejects.toThrow('Stopped by SIGINT')
    // Nothing was seen while it ran, and nothing is left: no customer, order or invoice.
    expect(await midway).toBe(0)
    expect(await customersOf()).toBe(0)
    for (const table of ['orders', 'invoices', 'discounts', 'products'] as const) {
      const rows = await ctx.db
        .selectFrom(table)
        .select('id')
        .where('environment_id', '=', stopped.environmentId)
        .execute()
      expect(rows, table).toHaveLength(0)
    }
    // Run again: the whole story, as on any environment.
    const again = await seedDemo({ db: ctx.db, logger: ctx.deps.logger }, stopped, {
      now: NOW,
      customers: CUSTOMERS,
    })
    expect({ ...again, environmentId: summary.environmentId }).toEqual(summary)
    expect(await customersOf()).toBe(CUSTOMERS)
  }, 60_000)

  test('the same story on another tenant: same summary but the environment', async () => {
    const other = await ctx.createTenantFixture('Demo twin')
    const twin = await seedDemo(
      { db: ctx.db, logger: ctx.deps.logger },
      { tenantId: other.tenant.id, environmentId: other.test.id },
      { now: NOW, customers: CUSTOMERS },
    )
    expect({ ...twin, environmentId: summary.environmentId }).toEqual(summary)
  }, 60_000)
})
