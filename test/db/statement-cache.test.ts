import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { rowOf, StatementCache } from '../../src/db/statement-cache.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe('StatementCache', () => {
  test('builds once per shape, and each call sends its own values with the constants kept', async () => {
    const cache = new StatementCache()
    let builds = 0
    const tenantName = (id: string) =>
      cache.compile('by id', [id], ($) => {
        builds += 1
        return ctx.db
          .selectFrom('tenants')
          .select(['name', sql<string>`${'constant'}`.as('kept')])
          .where('id', '=', $(0))
      })
    const other = await ctx.createTenantFixture('Other tenant')
    for (const [id, name] of [
      [ctx.main.tenant.id, ctx.main.tenant.name],
      [other.tenant.id, 'Other tenant'],
      ['tenant_missing', undefined],
    ] as const) {
      const query = tenantName(id)
      expect(query.parameters).toEqual(['constant', id])
      const { rows } = await ctx.db.executeQuery(query)
      expect(rows[0]?.name).toBe(name)
      if (name) expect(rows[0]?.kept).toBe('constant')
    }
    expect(builds).toBe(1)
  })

  test('a shape of its own is built apart: lists of other lengths get their own text', async () => {
    const cache = new StatementCache()
    const count = (ids: string[]) =>
      cache.compile(String(ids.length), ids, ($) =>
        ctx.db
          .selectFrom('tenants')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where(
            'id',
            'in',
            ids.map((_, i) => $(i)),
          ),
      )
    const one = count([ctx.main.tenant.id])
    const two = count([ctx.main.tenant.id, 'tenant_missing'])
    expect(one.sql).not.toBe(two.sql)
    expect(two.parameters).toEqual([ctx.main.tenant.id, 'tenant_missing'])
    expect(Number((await ctx.db.executeQuery(two)).rows[0]?.n)).toBe(1)
  })

  test('a builder that leaves a value out fails at once instead of sending the wrong one', () => {
    const cache = new StatementCache()
    expect(() =>
      cache.compile('bad', ['a', 'b'], ($) =>
        ctx.db.selectFrom('tenants').select('id').where('id', '=', $(0)),
      ),
    ).toThrow(/used 1 of its 2 values/)
  })

  test('shapes past its bound still run, rebuilt each time, and are not kept', () => {
    const cache = new StatementCache(1)
    let builds = 0
    const query = (shape: string) =>
      cache.compile(shape, ['x'], ($) => {
        builds += 1
        return ctx.db.selectFrom('tenants').select('id').where('id', '=', $(0))
      })
    query('first')
    query('second')
    query('second')
    query('first')
    expect(builds).toBe(3)
  })

  test('rowOf: rows setting other columns, or the same in another order, are shapes of their own', async () => {
    const cache = new StatementCache()
    const insert = (row: { id: string; name?: string; tenant_id?: string }) => {
      const { shape, values, slots } = rowOf(row)
      return cache.compile(shape, values, ($) =>
        ctx.db
          .insertInto('events')
          .values({
            ...(slots($) as object),
            environment_id: ctx.scope.environmentId,
            type: 'probe.row_of',
            object_type: 'probe',
            object_id: 'probe',
            data: '{}',
            created_at: new Date(),
          } as never)
          .returning(['id', 'tenant_id']),
      )
    }
    const a = rowOf({ id: 'evt_a', tenant_id: 't' })
    const b = rowOf({ tenant_id: 't', id: 'evt_b' })
    const c = rowOf({ id: 'evt_c', name: undefined, tenant_id: 't' })
    expect(a.shape).not.toBe(b.shape)
    expect(c.shape).toBe(a.shape)
    expect(c.values).toEqual(['evt_c', 't'])
    const rows = []
    for (const row of [
      { id: 'evt_row_of_1', tenant_id: ctx.scope.tenantId },
      { tenant_id: ctx.scope.tenantId, id: 'evt_row_of_2' },
    ]) {
      rows.push(...(await ctx.db.executeQuery(insert(row))).rows)
    }
    expect(rows).toEqual([
      { id: 'evt_row_of_1', tenant_id: ctx.scope.tenantId },
      { id: 'evt_row_of_2', tenant_id: ctx.scope.tenantId },
    ])
  })
})
