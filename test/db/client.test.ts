import { CompiledQuery, type RawBuilder, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { newId } from '../../src/core/ids.ts'
import { createDbClient, type DbClient } from '../../src/db/client.ts'
import { openDatabase } from '../../src/db/open-database.ts'
import {
  appendRows,
  inTransaction,
  readAhead,
  TAKEN_WITH_COMMIT,
  WITH_COMMIT,
} from '../../src/db/transaction.ts'
import { createLogger } from '../../src/logger.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { statementsOf } from '../statements.ts'

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

describe('a connection that dies', () => {
  test('while checked out fails its transaction, not the process, and the pool goes on with a new one', async () => {
    const errors: Error[] = []
    const own = createDbClient(ctx.url, { max: 1, onError: (error) => errors.push(error) })
    try {
      await expect(
        inTransaction(own.db, async (trx) => {
          const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
          await sql`select pg_terminate_backend(${rows[0]?.pid})`.execute(ctx.db)
          await new Promise((resolve) => setTimeout(resolve, 100))
          await sql`select 1`.execute(trx)
        }),
      ).rejects.toThrow()
      // Reported, not thrown: an uncaught exception would fail this file.
      expect(errors.length).toBeGreaterThan(0)
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(own.db)
      expect(rows).toEqual([{ one: 1 }])
    } finally {
      await own.close()
    }
  })
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
    // From then on it runs unnamed, in a transaction too (where a retry is not possible).
    const inside = await inTransaction(client.db, async (trx) =>
      sql<Record<string, number | null>>`select * from probe_shape`.execute(trx),
    )
    expect(inside.rows).toEqual([{ a: 1, b: null }])
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

  test('a statement is described once per connection: later executions read its rows without a row description', async () => {
    // Describe of the unnamed portal: 'D', length 6, 'P', an empty name.
    const DESCRIBE = Buffer.from([0x44, 0, 0, 0, 6, 0x50, 0])
    const connection = await client.pool.connect()
    type Write = (this: unknown, chunk: unknown, ...rest: unknown[]) => boolean
    const stream = (connection as unknown as { connection: { stream: { write: Write } } })
      .connection.stream
    const write = stream.write
    let describes = 0
    stream.write = function (this: unknown, chunk: unknown, ...rest: unknown[]) {
      if (Buffer.isBuffer(chunk)) {
        for (let at = chunk.indexOf(DESCRIBE); at >= 0; at = chunk.indexOf(DESCRIBE, at + 1))
          describes++
      }
      return Reflect.apply(write, this, [chunk, ...rest])
    }
    connection.release()
    try {
      const select = () =>
        client.db
          .selectFrom('tenants')
          .select(['id', 'created_at'])
          .where('id', '=', ctx.main.tenant.id)
          .where('id', '!=', 'describe-once')
          .execute()
      const first = await select()
      expect(first).toHaveLength(1)
      expect(first[0]?.created_at).toBeInstanceOf(Date)
      expect(describes).toBe(1)
      // Parsed with the columns read the first time: the same values and types.
      expect(await select()).toEqual(first)
      expect(await select()).toEqual(first)
      expect(describes).toBe(1)
      // In a transaction's pipeline, beside a statement it has not described yet.
      const [again, other] = await inTransaction(client.db, async (trx) =>
        Promise.all([
          trx
            .selectFrom('tenants')
            .select(['id', 'created_at'])
            .where('id', '=', ctx.main.tenant.id)
            .where('id', '!=', 'describe-once')
            .execute(),
          sql<{ n: number }>`select 2 as n where ${'describe-once'} != ''`.execute(trx),
        ]),
      )
      expect(again).toEqual(first)
      expect(other.rows).toEqual([{ n: 2 }])
      expect(describes).toBe(2)
      // A statement without rows (PostgreSQL answers its Describe with NoData), once too.
      const update = () =>
        sql`update tenants set name = name where id = ${'describe-once-none'}`.execute(client.db)
      for (let i = 0; i < 3; i++) expect((await update()).numAffectedRows).toBe(0n)
      expect(describes).toBe(3)
    } finally {
      stream.write = write
    }
  })

  test('behind a transaction pooler, a statement prepared afresh after a migration is read with its new columns', async () => {
    // The pooler runs a transaction on another server session and prepares the statement
    // there: played here on the one connection by deallocating it and preparing it again.
    // Opened as `payrail serve` opens its database, from the environment.
    const config = loadConfig({ DATABASE_URL: ctx.url, PAYRAIL_DATABASE_POOLER: 'transaction' })
    const pooled = await openDatabase(config, createLogger('silent', 'stderr'), {
      maxConnections: 1,
    })
    try {
      await sql`create table describe_pooler (id int primary key, amount bigint, note text)`.execute(
        pooled.db,
      )
      await sql`insert into describe_pooler values (1, 100, 'x')`.execute(pooled.db)
      const text = 'select * from describe_pooler where id = $1'
      const select = async () =>
        (await pooled.db.executeQuery(CompiledQuery.raw(text, [1]))).rows as unknown[]
      expect(await select()).toEqual([{ id: 1, amount: 100n, note: 'x' }])
      expect(await select()).toEqual([{ id: 1, amount: 100n, note: 'x' }])
      await sql`alter table describe_pooler rename column amount to amount_before`.execute(
        pooled.db,
      )
      await sql`alter table describe_pooler drop column note, add column memo int default 42`.execute(
        pooled.db,
      )
      const { rows } = await pooled.pool.query<{ name: string }>(
        'select name from pg_prepared_statements where statement = $1',
        [text],
      )
      const name = rows[0]?.name
      expect(name).toMatch(/^k/)
      await pooled.pool.query(`deallocate "${name}"`)
      await pooled.pool.query(`prepare "${name}" (int) as ${text}`)
      expect(await select()).toEqual([{ id: 1, amount_before: 100n, memo: 42 }])
    } finally {
      await sql`drop table if exists describe_pooler`.execute(pooled.db)
      await pooled.shutdown()
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

describe("a transaction's begin and commit go with its first and last statements", () => {
  const rowsOf = async (table: string, db: DbClient['db'] = client.db) =>
    (await sql<{ a: number }>`select a from ${sql.table(table)} order by a`.execute(db)).rows

  /**
   * Runs `body` in a transaction on a new table holding the row 1, where it fails with
   * a unique violation; the statements it sent, once the table is shown to hold only 1.
   */
  const failing = async (table: string, body: (trx: DbClient['db']) => Promise<void>) => {
    await sql`create table ${sql.table(table)} (a int primary key)`.execute(client.db)
    await sql`insert into ${sql.table(table)} values (1)`.execute(client.db)
    const texts = await statementsOf(() =>
      expect(client.db.transaction().execute(body)).rejects.toMatchObject({
        code: '23505',
        constraint: `${table}_pkey`,
      }),
    )
    expect(await rowsOf(table)).toEqual([{ a: 1 }])
    return texts
  }

  test('one round trip for a transaction of one statement, and it is one transaction', async () => {
    await sql`create table probe_pipeline (a int primary key)`.execute(client.db)
    const texts = await statementsOf(() =>
      client.db.transaction().execute(async (trx) => {
        await withCommit(trx, sql`insert into probe_pipeline values (1)`)
      }),
    )
    expect(texts).toEqual(['begin; insert into probe_pipeline values (1); commit'])
    expect(await rowsOf('probe_pipeline')).toEqual([{ a: 1 }])
  })

  test('the first statement is in the transaction: a later failure takes its write back', async () => {
    const texts = await failing('probe_atomic', async (trx) => {
      await sql`insert into probe_atomic values (2)`.execute(trx)
      // Seen by the transaction itself, not by another connection.
      expect(await rowsOf('probe_atomic', trx)).toEqual([{ a: 1 }, { a: 2 }])
      expect((await ctx.pool.query('select a from probe_atomic')).rows).toEqual([{ a: 1 }])
      await sql`insert into probe_atomic values (1)`.execute(trx)
    })
    expect(texts[0]).toBe('begin; insert into probe_atomic values (2)')
    expect(texts.at(-1)).toBe('rollback')
    // The connection is usable after the rollback.
    await client.db.transaction().execute(async (trx) => {
      await sql`insert into probe_atomic values (3)`.execute(trx)
    })
    expect(await rowsOf('probe_atomic')).toEqual([{ a: 1 }, { a: 3 }])
  })

  test('held writes that fail go with the commit: the error is theirs and nothing of the transaction stays', async () => {
    const texts = await failing('probe_final', async (trx) => {
      await sql`insert into probe_final values (2)`.execute(trx)
      await withCommit(trx, sql`insert into probe_final values (1)`)
    })
    expect(texts).toEqual([
      'begin; insert into probe_final values (2)',
      'insert into probe_final values (1); commit',
      'rollback',
    ])
  })

  test('a transaction that runs nothing, committed or rolled back, sends nothing', async () => {
    const texts = await statementsOf(async () => {
      await client.db.transaction().execute(async () => {})
      await expect(
        client.db.transaction().execute(async () => {
          throw new Error('before any statement')
        }),
      ).rejects.toThrow('before any statement')
    })
    expect(texts).toEqual([])
  })

  test('an unprepared first statement (transaction control) runs inside the transaction', async () => {
    const shown = await client.db.transaction().execute(async (trx) => {
      // `set local` outside a transaction only warns, and changes nothing.
      await sql`set local lock_timeout = '1234ms'`.execute(trx)
      return (await sql<{ lock_timeout: string }>`show lock_timeout`.execute(trx)).rows
    })
    expect(shown).toEqual([{ lock_timeout: '1234ms' }])
    const after = await sql<{ lock_timeout: string }>`show lock_timeout`.execute(client.db)
    expect(after.rows).not.toEqual([{ lock_timeout: '1234ms' }])
  })

  test('a first statement that fails to parse is parsed again next time', async () => {
    const run = () =>
      client.db.transaction().execute(async (trx) => {
        return (await sql<{ a: number }>`select a from probe_later`.execute(trx)).rows
      })
    await expect(run()).rejects.toMatchObject({ code: '42P01' })
    await sql`create table probe_later (a int)`.execute(client.db)
    await sql`insert into probe_later values (7)`.execute(client.db)
    expect(await run()).toEqual([{ a: 7 }])
    expect(await run()).toEqual([{ a: 7 }])
  })
})

/** Hands `statement` to the connection to go with the commit, as `inTransaction` does its held writes. */
async function withCommit(trx: DbClient['db'], statement: RawBuilder<unknown>) {
  const taken = await trx.executeQuery(CompiledQuery.raw(WITH_COMMIT, [statement.compile(trx)]))
  expect(taken.rows).toEqual([TAKEN_WITH_COMMIT])
}

describe('statements sent together', () => {
  test('a statement whose Parse went in a round trip that failed is parsed again safely', async () => {
    await sql`create table probe_uncertain (a int primary key)`.execute(client.db)
    await sql`insert into probe_uncertain values (1)`.execute(client.db)
    const probe = sql<{ n: number }>`select count(*)::int as n from probe_uncertain where a > 0`
    await expect(
      inTransaction(client.db, async (trx) => {
        // Its Parse goes first, then the insert fails: whether it was parsed is not known.
        readAhead(trx, 'probe', probe.compile(trx))
        await sql`insert into probe_uncertain values (1)`.execute(trx)
      }),
    ).rejects.toMatchObject({ code: '23505' })
    expect((await probe.execute(client.db)).rows).toEqual([{ n: 1 }])
    expect((await probe.execute(client.db)).rows).toEqual([{ n: 1 }])
  })

  // PostgreSQL would answer such a commit with a silent ROLLBACK: the caller hears of it instead.
  test.each([
    ['awaited', 'probe_caught', true],
    [
      'sent without waiting for it, so failing while the commit is on its way',
      'probe_unawaited',
      false,
    ],
  ])(
    'a statement that fails, %s, its error caught, fails the commit with that error; nothing stays',
    async (_, table, awaited) => {
      await sql`create table ${sql.table(table)} (a int primary key)`.execute(client.db)
      await expect(
        inTransaction(client.db, async (trx) => {
          await sql`insert into ${sql.table(table)} values (1)`.execute(trx)
          const failing = sql`select 1 / 0`.execute(trx).catch(() => undefined)
          if (awaited) await failing
        }),
      ).rejects.toMatchObject({ code: '22012' })
      const count = sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`
      expect((await count.execute(client.db)).rows).toEqual([{ n: 0 }])
      // The connection is clean for the next transaction.
      await inTransaction(client.db, async (trx) => {
        await sql`insert into ${sql.table(table)} values (2)`.execute(trx)
      })
      expect((await count.execute(client.db)).rows).toEqual([{ n: 1 }])
    },
  )

  test('a transaction begun with an isolation level that fails is rolled back, and the connection is clean after', async () => {
    await expect(
      client.db
        .transaction()
        .setIsolationLevel('serializable')
        .execute(async (trx) => {
          await sql`select 1 / 0`.execute(trx)
        }),
    ).rejects.toMatchObject({ code: '22012' })
    // One connection: the next statements run where the transaction failed.
    const first = await sql<{ one: number }>`select 1 as one`.execute(client.db)
    expect(first.rows).toEqual([{ one: 1 }])
    await expect(
      client.db
        .transaction()
        .setIsolationLevel('serializable')
        .execute(async (trx) => {
          await sql`select 1 / 0`.execute(trx).catch(() => undefined)
        }),
    ).rejects.toMatchObject({ code: '22012' })
    const second = await sql<{ one: number }>`select 1 as one`.execute(client.db)
    expect(second.rows).toEqual([{ one: 1 }])
  })

  test('a value that cannot be sent, caught by its caller, drops no held write silently: the transaction cannot commit', async () => {
    await sql`create table probe_unsent (a int primary key, b jsonb)`.execute(client.db)
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const type = `probe.unsent.${Date.now()}`
    await expect(
      inTransaction(client.db, async (trx) => {
        // Held until the next statement, which is the one whose value cannot be sent.
        await appendRows(trx, 'events', [
          {
            id: newId('event'),
            tenant_id: ctx.main.tenant.id,
            environment_id: ctx.main.test.id,
            type,
            object_type: 'probe',
            object_id: 'probe',
            data: '{}',
            created_at: new Date(),
          },
        ])
        await sql`insert into probe_unsent values (1, '{}')`.execute(trx)
        await sql`insert into probe_unsent values (2, ${circular})`
          .execute(trx)
          .catch(() => undefined)
      }),
    ).rejects.toThrow(/circular/i)
    const probes = await sql<{ n: number }>`select count(*)::int as n from probe_unsent`.execute(
      client.db,
    )
    expect(probes.rows).toEqual([{ n: 0 }])
    const events = await sql<{
      n: number
    }>`select count(*)::int as n from events where type = ${type}`.execute(client.db)
    expect(events.rows).toEqual([{ n: 0 }])
  })

  test('a first statement that fails to parse, caught by its caller, leaves the transaction begun: nothing after it commits', async () => {
    await sql`create table probe_unparsed (a int primary key)`.execute(client.db)
    const failures: unknown[] = []
    await expect(
      inTransaction(client.db, async (trx) => {
        // Its Parse fails, in the message that carries the transaction's `begin`.
        await sql`select a from probe_missing_table`.execute(trx).catch((error: unknown) => {
          failures.push(error)
        })
        // Sent with no `begin` of its own: it must still be inside the transaction.
        await sql`insert into probe_unparsed values (1)`.execute(trx).catch((error: unknown) => {
          failures.push(error)
        })
      }),
    ).rejects.toMatchObject({ code: '42P01' })
    // The insert ran in the aborted transaction, not on its own.
    expect(failures).toMatchObject([{ code: '42P01' }, { code: '25P02' }])
    const rows = await sql<{ n: number }>`select count(*)::int as n from probe_unparsed`.execute(
      client.db,
    )
    expect(rows.rows).toEqual([{ n: 0 }])
  })

  test('a value that cannot be sent fails its statement before anything of it goes', async () => {
    await sql`create table probe_values (a int primary key, b jsonb)`.execute(client.db)
    const circular: Record<string, unknown> = {}
    circular.self = circular
    await expect(
      client.db.transaction().execute(async (trx) => {
        await sql`insert into probe_values values (1, ${circular})`.execute(trx)
      }),
    ).rejects.toThrow(/circular/i)
    // The connection goes on, and the transaction left nothing.
    await sql`insert into probe_values values (2, '{}')`.execute(client.db)
    const { rows } = await sql<{ a: number }>`select a from probe_values`.execute(client.db)
    expect(rows).toEqual([{ a: 2 }])
  })
})
