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

  test('the same statement on a connection that prepared it after the change reads the new columns, not the ones it read before', async () => {
    await sql`create table probe_columns (a int, b text)`.execute(client.db)
    await sql`insert into probe_columns values (1, 'one')`.execute(client.db)
    const select = (db: DbClient['db']) =>
      sql<Record<string, unknown>>`select * from probe_columns`.execute(db)
    // Twice, so the second answer reuses what the first made of the columns.
    expect((await select(client.db)).rows).toEqual([{ a: 1, b: 'one' }])
    expect((await select(client.db)).rows).toEqual([{ a: 1, b: 'one' }])
    // Same names, another type (text -> int): the parser must change with it.
    await sql`alter table probe_columns alter column b type int using 2`.execute(client.db)
    const other = createDbClient(ctx.url, { max: 1 })
    try {
      expect((await select(other.db)).rows).toEqual([{ a: 1, b: 2 }])
      await sql`alter table probe_columns add column c bigint default 3`.execute(client.db)
      const third = createDbClient(ctx.url, { max: 1 })
      try {
        expect((await select(third.db)).rows).toEqual([{ a: 1, b: 2, c: 3n }])
        expect((await select(third.db)).rows).toEqual([{ a: 1, b: 2, c: 3n }])
      } finally {
        await third.close()
      }
    } finally {
      await other.close()
    }
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
