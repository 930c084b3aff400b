import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { CHARGE_DUE_INVOICES } from '../../src/jobs/tasks/charge-due-invoices.ts'
import { PRUNE_IDEMPOTENCY_KEYS } from '../../src/jobs/tasks/prune-idempotency-keys.ts'
import { RESOLVE_LOST_CHARGES } from '../../src/jobs/tasks/resolve-lost-charges.ts'
import { WITHDRAW_OVERTAKEN_PAGES } from '../../src/jobs/tasks/withdraw-overtaken-pages.ts'
import {
  CRON_ITEMS,
  createTaskList,
  RENEW_SUBSCRIPTIONS,
  startWorker,
} from '../../src/jobs/worker.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('worker', () => {
  test('keeps running when PostgreSQL cuts its idle connections (shutdown, failover) and stops cleanly', async () => {
    const warn = vi.spyOn(console, 'warn')
    const worker = await startWorker(ctx.deps, { connectionString: ctx.url, concurrency: 1 })
    // graphile-worker checks that its pool and each of its connections have error listeners.
    expect(warn.mock.calls.flat().join(' ')).not.toMatch(/error handlers/)
    warn.mockRestore()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const { rows } = await ctx.pool.query<{ n: number }>(
      `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
       where datname = current_database() and application_name = 'payrail-worker'`,
    )
    expect(rows[0]?.n).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await expect(worker.stop()).resolves.toBeUndefined()
  })
})

describe('schedule', () => {
  test('renewals, automatic charges and withdrawing overtaken pages run every minute, pruning and lost charges hourly, each a task the worker has', async () => {
    const tasks = createTaskList(ctx.deps)
    const everyMinute = CRON_ITEMS.filter((item) =>
      [0, 7, 31, 59].every((min) => item.match({ min, hour: 13, date: 2, month: 3, dow: 1 })),
    ).map((item) => item.task)
    expect(everyMinute.sort()).toEqual(
      [CHARGE_DUE_INVOICES, RENEW_SUBSCRIPTIONS, WITHDRAW_OVERTAKEN_PAGES].sort(),
    )
    const hourly = CRON_ITEMS.filter(
      (item) => !everyMinute.includes(item.task) && item.options.backfillPeriod === 60 * 60 * 1000,
    ).map((item) => item.task)
    expect(hourly.sort()).toEqual([PRUNE_IDEMPOTENCY_KEYS, RESOLVE_LOST_CHARGES].sort())
    for (const item of CRON_ITEMS) expect(tasks[item.task]).toBeTypeOf('function')

    // The worker registers them with graphile-worker's scheduler when it starts.
    const worker = await startWorker(ctx.deps, { connectionString: ctx.url, concurrency: 1 })
    try {
      const { rows } = await ctx.pool.query<{ identifier: string }>(
        'select identifier from graphile_worker._private_known_crontabs order by identifier',
      )
      expect(rows.map((r) => r.identifier)).toEqual(
        [
          CHARGE_DUE_INVOICES,
          PRUNE_IDEMPOTENCY_KEYS,
          RENEW_SUBSCRIPTIONS,
          RESOLVE_LOST_CHARGES,
          WITHDRAW_OVERTAKEN_PAGES,
        ].sort(),
      )
    } finally {
      await worker.stop()
    }
  })
})
