import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createDbClient, type DbClient } from '../../src/db/client.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext
let client: DbClient

beforeAll(async () => {
  ctx = await createTestContext()
  // One connection, so every query below shares its prepared statements.
  client = createDbClient(ctx.url, { max: 1 })
})
afterAll(async () => {
  await client.close()
  await ctx.close()
})

describe('prepared statements', () => {
  test('queries run as named prepared statements, parsed once per connection', async () => {
    for (let i = 0; i < 3; i++) {
      const row = await client.db
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', ctx.main.tenant.id)
        .executeTakeFirst()
      expect(row?.id).toBe(ctx.main.tenant.id)
    }
    const { rows } = await sql<{ name: string; statement: string }>`
      select name, statement from pg_prepared_statements
    `.execute(client.db)
    const mine = rows.filter((r) => r.statement.includes('from "tenants"'))
    expect(mine).toHaveLength(1)
    expect(mine[0]?.name).toMatch(/^k[\w-]{20}$/)
  })

  test('a table altered under a prepared statement: the query still answers, with the new shape', async () => {
    await sql`create table probe_shape (a int)`.execute(client.db)
    await sql`insert into probe_shape values (1)`.execute(client.db)
    const select = () =>
      sql<Record<string, number | null>>`select * from probe_shape`.execute(client.db)
    expect((await select()).rows).toEqual([{ a: 1 }])
    await sql`alter table probe_shape add column b int`.execute(client.db)
    expect((await select()).rows).toEqual([{ a: 1, b: null }])
    expect((await select()).rows).toEqual([{ a: 1, b: null }])
  })

  test('transaction control is not prepared', async () => {
    await client.db.transaction().execute(async (trx) => {
      await sql`select 1`.execute(trx)
    })
    const { rows } = await sql<{ statement: string }>`
      select statement from pg_prepared_statements
    `.execute(client.db)
    expect(rows.some((r) => /^\s*(begin|commit)/i.test(r.statement))).toBe(false)
  })
})
