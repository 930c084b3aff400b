import { quickAddJob, runOnce } from 'graphile-worker'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  PRUNE_IDEMPOTENCY_KEYS,
  pruneIdempotencyKeys,
} from '../../src/jobs/tasks/prune-idempotency-keys.ts'
import { CRON_ITEMS, createTaskList } from '../../src/jobs/worker.ts'
import { workerLoggerFrom } from '../../src/jobs/worker-logger.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

async function seed(count: number, expiresAt: Date, prefix: string) {
  await ctx.db
    .insertInto('idempotency_keys')
    .values(
      Array.from({ length: count }, (_, i) => ({
        environment_id: ctx.main.test.id,
        key: `${prefix}-${i}`,
        method: 'POST',
        path: '/v1/x',
        request_hash: 'h',
        state: 'completed' as const,
        locked_at: ctx.clock.now(),
        expires_at: expiresAt,
      })),
    )
    .execute()
}

const remaining = async () =>
  (await ctx.db.selectFrom('idempotency_keys').select('key').execute()).map((r) => r.key)

describe('prune_idempotency_keys', () => {
  test('deletes only expired records, in batches', async () => {
    const now = ctx.clock.now()
    await seed(7, new Date(now.getTime() - 1000), 'old')
    await seed(3, new Date(now.getTime() + 3600_000), 'fresh')
    expect(await pruneIdempotencyKeys(ctx.db, ctx.clock, 2)).toBe(7)
    expect((await remaining()).sort()).toEqual(['fresh-0', 'fresh-1', 'fresh-2'])
  })

  test('runs as a graphile-worker job', async () => {
    ctx.clock.advance(2 * 3600_000)
    await quickAddJob({ connectionString: ctx.url }, PRUNE_IDEMPOTENCY_KEYS, {})
    const deps = ctx.deps
    await runOnce({
      connectionString: ctx.url,
      taskList: createTaskList(deps),
      logger: workerLoggerFrom(deps.logger),
    })
    expect(await remaining()).toEqual([])
    const { rows } = await ctx.pool.query('select count(*)::int as n from graphile_worker.jobs')
    expect(rows[0].n).toBe(0)
  })

  test('is scheduled hourly', () => {
    expect(CRON_ITEMS.map((item) => item.task)).toContain(PRUNE_IDEMPOTENCY_KEYS)
  })
})
