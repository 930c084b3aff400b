import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startWorker } from '../../src/jobs/worker.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('worker', () => {
  test('keeps running when PostgreSQL cuts its idle connections (shutdown, failover) and stops cleanly', async () => {
    const worker = await startWorker(ctx.deps, { connectionString: ctx.url, concurrency: 1 })
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
