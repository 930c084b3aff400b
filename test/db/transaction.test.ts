import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { newId } from '../../src/core/ids.ts'
import {
  appendRows,
  CommitMark,
  holdUpdate,
  inTransaction,
  MemoKey,
  readAhead,
  recall,
  remember,
  takeReadAhead,
} from '../../src/db/transaction.ts'
import {
  allocationsOf,
  insertPayment,
  lockPayment,
  setAllocationApplied,
  updatePayment,
} from '../../src/modules/payments/repository.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, invoiceToPay, type PaymentBody } from '../payments-helpers.ts'
import { statementsOf } from '../statements.ts'

let ctx: TestContext
let paymentId: string

beforeAll(async () => {
  ctx = await createTestContext()
  const { invoice } = await invoiceToPay(ctx)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'OFFLINE',
    amount: '100.00',
    process_payment: false,
  })
  expect(res.status).toBe(201)
  paymentId = res.body.id
})
afterAll(() => ctx.close())

function eventRow(type: string) {
  return {
    id: newId('event'),
    tenant_id: ctx.scope.tenantId,
    environment_id: ctx.scope.environmentId,
    type,
    object_type: 'probe',
    object_id: paymentId,
    data: JSON.stringify({ type }),
    created_at: ctx.clock.now(),
  }
}

function transitionRow(note: string) {
  return {
    payment_id: paymentId,
    from_status: 'INITIATED' as const,
    to_status: 'INITIATED' as const,
    cause: 'api' as const,
    cause_id: note,
    note,
    created_at: ctx.clock.now(),
  }
}

async function countEvents(type: string): Promise<number> {
  const { rows } = await ctx.pool.query<{ n: number }>(
    'select count(*)::int as n from events where type = $1',
    [type],
  )
  return rows[0]?.n ?? -1
}

async function notes(prefix: string): Promise<string[]> {
  const { rows } = await ctx.pool.query<{ note: string; cause_id: string }>(
    'select note, cause_id from payment_transitions where note like $1 order by id',
    [`${prefix}%`],
  )
  for (const row of rows) expect(row.cause_id).toBe(row.note)
  return rows.map((r) => r.note)
}

describe('inTransaction and appendRows', () => {
  test('appended rows are held until the commit, then written, every value in its own column', async () => {
    let seenBeforeCommit = -1
    await inTransaction(ctx.db, async (trx) => {
      await appendRows(trx, 'events', [eventRow('probe.held.a'), eventRow('probe.held.b')])
      await appendRows(trx, 'payment_transitions', [transitionRow('held-1')])
      await appendRows(trx, 'events', [eventRow('probe.held.a')])
      await appendRows(trx, 'payment_transitions', [transitionRow('held-2')])
      // Not even this transaction has written them yet.
      const { rows } = await ctx.pool.query<{ n: number }>(
        `select count(*)::int as n from events where type like 'probe.held.%'`,
      )
      seenBeforeCommit = rows[0]?.n ?? -1
    })
    expect(seenBeforeCommit).toBe(0)
    expect(await countEvents('probe.held.a')).toBe(2)
    expect(await countEvents('probe.held.b')).toBe(1)
    expect(await notes('held-')).toEqual(['held-1', 'held-2'])
  })

  test('an error rolls the held rows back with everything else', async () => {
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await appendRows(trx, 'events', [eventRow('probe.rolled_back')])
        await appendRows(trx, 'payment_transitions', [transitionRow('rolled-back')])
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await countEvents('probe.rolled_back')).toBe(0)
    expect(await notes('rolled-back')).toEqual([])
  })

  test('a bad held row fails the commit and nothing of the transaction stays', async () => {
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await appendRows(trx, 'events', [eventRow('probe.orphaned')])
        // A cause the table's check refuses.
        await appendRows(trx, 'payment_transitions', [
          { ...transitionRow('orphan'), cause: 'bogus' as 'api' },
        ])
      }),
    ).rejects.toThrow()
    expect(await countEvents('probe.orphaned')).toBe(0)
  })

  test('held rows that set different columns: each column its own value, the default where a row leaves one out', async () => {
    const at = new Date('2026-01-02T03:04:05.678Z')
    const statements = await statementsOf(
      () =>
        inTransaction(ctx.db, async (trx) => {
          const { note: _, ...noNote } = transitionRow('columns-1')
          await appendRows(trx, 'payment_transitions', [
            // No `note` at all: a column only later rows set.
            { ...noNote, created_at: at },
            // `from_status`, a column in the middle, and `note` undefined: their defaults.
            {
              ...transitionRow('columns-2'),
              from_status: undefined,
              to_status: 'PENDING',
              note: undefined,
            },
            // Each value in its own column: the statuses differ.
            { ...transitionRow('columns-3'), from_status: 'PENDING', to_status: 'SUCCEEDED' },
          ])
          await appendRows(trx, 'events', [eventRow('columns.probe')])
        }),
      1000,
    )
    // The columns in the order they first appear, `default` where a row leaves one out,
    // the tables chained as data-modifying CTEs, each value a parameter in order.
    expect(statements).toEqual([
      'begin; with w0 as (insert into "payment_transitions" ("payment_id", "from_status", "to_status", "cause", "cause_id", "created_at", "note")' +
        ' values ($1, $2, $3, $4, $5, $6, default), ($7, default, $8, $9, $10, $11, default), ($12, $13, $14, $15, $16, $17, $18))' +
        ' insert into "events" ("id", "tenant_id", "environment_id", "type", "object_type", "object_id", "data", "created_at")' +
        ' values ($19, $20, $21, $22, $23, $24, $25, $26); commit',
    ])
    const { rows } = await ctx.pool.query<{
      from_status: string | null
      to_status: string
      note: string | null
      cause_id: string
      at: Date
    }>(
      `select from_status, to_status, note, cause_id, created_at as at
       from payment_transitions where cause_id like 'columns-%' order by id`,
    )
    expect(rows.map((r) => [r.from_status, r.to_status, r.note, r.cause_id])).toEqual([
      ['INITIATED', 'INITIATED', null, 'columns-1'],
      [null, 'PENDING', null, 'columns-2'],
      ['PENDING', 'SUCCEEDED', 'columns-3', 'columns-3'],
    ])
    expect(rows[0]?.at.toISOString()).toBe(at.toISOString())
  })

  // PostgreSQL's protocol counts a statement's parameters in 16 bits: 9,000 events of 8
  // values each (72,000) would wrap, and the whole transaction fail.
  test('more values than one statement carries go in several statements, in order, in the one transaction', async () => {
    const many = Array.from({ length: 9_000 }, () => eventRow('probe.many'))
    const statements = await statementsOf(
      () =>
        inTransaction(ctx.db, async (trx) => {
          await appendRows(trx, 'payment_transitions', [transitionRow('many-1')])
          await appendRows(trx, 'events', many)
          await appendRows(trx, 'payment_transitions', [transitionRow('many-2')])
        }),
      1_000,
    )
    expect(await countEvents('probe.many')).toBe(9_000)
    expect(await notes('many-')).toEqual(['many-1', 'many-2'])
    // The transitions and as many events as fit, then the other events with the commit.
    expect(statements.slice(-2)).toEqual([
      expect.stringMatching(
        /^begin; with w0 as \(insert into "payment_transitions" .*\) insert into "events"/,
      ),
      expect.stringMatching(/^insert into "events" /),
    ])
  })

  test('a row the last of several statements fails rolls back the statements before it', async () => {
    const many = Array.from({ length: 9_000 }, () => eventRow('probe.many_rolled_back'))
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await appendRows(trx, 'events', many)
        await appendRows(trx, 'payment_transitions', [
          { ...transitionRow('many-bad'), cause: 'bogus' as 'api' },
        ])
      }),
    ).rejects.toThrow()
    expect(await countEvents('probe.many_rolled_back')).toBe(0)
  })

  test('a row with an SQL expression among its values is written at once, as SQL', async () => {
    let seenInside = -1
    await inTransaction(ctx.db, async (trx) => {
      await appendRows(trx, 'events', [
        // The type only takes plain values; a caller that casts still gets SQL, not a parameter.
        {
          ...eventRow('probe.expression'),
          created_at: sql`now() - interval '1 day'` as unknown as Date,
        },
      ])
      const { rows } = await sql<{
        n: number
      }>`select count(*)::int as n from events where type = 'probe.expression' and created_at < now()`.execute(
        trx,
      )
      seenInside = rows[0]?.n ?? -1
    })
    expect(seenInside).toBe(1)
  })

  test('outside inTransaction, rows are written at once', async () => {
    await appendRows(ctx.db, 'events', [eventRow('probe.direct')])
    expect(await countEvents('probe.direct')).toBe(1)
    await ctx.db.transaction().execute(async (trx) => {
      await appendRows(trx, 'events', [eventRow('probe.plain_transaction')])
      const { rows } = await sql<{
        n: number
      }>`select count(*)::int as n from events where type = 'probe.plain_transaction'`.execute(trx)
      expect(rows[0]?.n).toBe(1)
    })
  })
})

describe('remember and recall', () => {
  const KEY = new MemoKey<string[]>('probe')

  test('last as long as the transaction, and only inside inTransaction', async () => {
    await inTransaction(ctx.db, async (trx) => {
      expect(recall(trx, KEY, 'a')).toBeUndefined()
      remember(trx, KEY, 'a', ['x'])
      expect(recall(trx, KEY, 'a')).toEqual(['x'])
      expect(recall(ctx.db, KEY, 'a')).toBeUndefined()
    })
    remember(ctx.db, KEY, 'b', ['y'])
    expect(recall(ctx.db, KEY, 'b')).toBeUndefined()
  })
})

describe('internal rails settle in the transaction that creates the payment', () => {
  test('an offline payment: created and settled at once, its whole history and events written', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(res.status).toBe(201)
    const payment: PaymentBody = res.body
    expect(payment.payment_status).toBe('SUCCEEDED')
    expect(payment.invoice_ids).toEqual([invoice.id])
    expect(payment.attempts).toEqual([])
    const { rows: history } = await ctx.pool.query<{ from_status: string | null; to: string }>(
      'select from_status, to_status as to from payment_transitions where payment_id = $1 order by id',
      [payment.id],
    )
    expect(history).toEqual([
      { from_status: null, to: 'INITIATED' },
      { from_status: 'INITIATED', to: 'SUCCEEDED' },
    ])
    const { rows: events } = await ctx.pool.query<{ type: string }>(
      'select type from events where object_id in ($1, $2) order by id',
      [payment.id, invoice.id],
    )
    expect(events.map((e) => e.type)).toEqual([
      'invoice.created',
      'invoice.finalized',
      'payment.created',
      'invoice.paid',
      'payment.succeeded',
    ])
    const after = await ctx.get<{ payment_status: string; amount_remaining: string }>(
      `/v1/invoices/${invoice.id}`,
    )
    expect(after.body).toMatchObject({ payment_status: 'SUCCEEDED', amount_remaining: '0.00' })
  })

  test('a balance payment the balance cannot cover is FAILED and kept, with its attempt, and answers 402', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'CREDITS',
      amount: '100.00',
    })
    expect(res.status).toBe(402)
    const { rows } = await ctx.pool.query<{ payment_status: string; attempts: number }>(
      `select payment_status, (select count(*)::int from payment_attempts a where a.payment_id = p.id) as attempts
       from payments p where destination_id = $1`,
      [invoice.id],
    )
    expect(rows).toEqual([{ payment_status: 'FAILED', attempts: 1 }])
  })
})

describe('insertPayment', () => {
  async function newRow(id: string, humanId: string) {
    const { invoice } = await invoiceToPay(ctx)
    const at = ctx.clock.now()
    return {
      invoice,
      row: {
        id,
        tenant_id: ctx.main.tenant.id,
        environment_id: ctx.main.test.id,
        human_id: humanId,
        customer_id: invoice.customer_id,
        destination_type: 'INVOICE' as const,
        destination_id: invoice.id,
        amount: 10000n,
        currency: 'usd',
        payment_status: 'INITIATED' as const,
        payment_method_type: 'OFFLINE' as const,
        invoice_ids: [invoice.id],
        created_at: at,
        updated_at: at,
      },
      allocations: [{ invoice_id: invoice.id, position: 0, amount: 10000n }],
    }
  }

  async function rowsOf(paymentId: string) {
    const payment = await ctx.db
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', paymentId)
      .executeTakeFirst()
    const allocations = await ctx.db
      .selectFrom('payment_allocations')
      .selectAll()
      .where('payment_id', '=', paymentId)
      .execute()
    return { payment, allocations }
  }

  test('holds the payment and its allocations to the commit, with their updates folded in: each row written once', async () => {
    const id = `pay_${newId('event').slice(4)}`
    const { invoice, row, allocations } = await newRow(id, `H${id.slice(-5)}`)
    let held: Awaited<ReturnType<typeof insertPayment>> | undefined
    let seenBeforeCommit: unknown
    const statements = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        await insertPayment(trx, row, allocations)
        held = await updatePayment(trx, id, {
          payment_status: 'SUCCEEDED',
          amount_paid: 10000n,
          succeeded_at: ctx.clock.now(),
        })
        await setAllocationApplied(trx, id, invoice.id, 10000n)
        expect(await allocationsOf(trx, [id])).toEqual([
          {
            payment_id: id,
            invoice_id: invoice.id,
            position: 0,
            amount: 10000n,
            applied_amount: 10000n,
          },
        ])
        seenBeforeCommit = (await rowsOf(id)).payment
      }),
    )
    expect(seenBeforeCommit).toBeUndefined()
    // The bind message costs no round trip; the rows go in one statement before the commit.
    const writes = statements
      .map((s) => s.replace(/^begin; /, '').replace(/; commit$/, ''))
      .filter((s) => !/^(begin|commit|select|-- payrail)/.test(s))
    expect(writes).toHaveLength(1)
    expect(writes[0]).toMatch(/^with w0 as \(insert into "payments"/)
    const stored = await rowsOf(id)
    // The row the transaction held reads exactly as PostgreSQL wrote it, defaults included.
    expect(held).toEqual(stored.payment)
    expect(stored.allocations).toEqual([
      {
        payment_id: id,
        invoice_id: invoice.id,
        position: 0,
        amount: 10000n,
        applied_amount: 10000n,
      },
    ])
  })

  test("goes before the transaction's next statement, whatever it names, as one insert", async () => {
    const id = `pay_${newId('event').slice(4)}`
    const { row, allocations } = await newRow(id, `N${id.slice(-5)}`)
    const statements = await statementsOf(
      () =>
        inTransaction(ctx.db, async (trx) => {
          await insertPayment(trx, row, allocations)
          await updatePayment(trx, id, { description: 'folded' })
          // This statement names no table of the payment's, and the insert goes before it.
          await sql`select 1 as probe`.execute(trx)
          const { rows } = await sql<{ description: string }>`
          select description from payments where id = ${id}`.execute(trx)
          expect(rows).toEqual([{ description: 'folded' }])
        }),
      Number.POSITIVE_INFINITY,
    )
    // The insert goes with the probe, in the transaction's first round trip (with the `begin`).
    expect(statements[0]).toMatch(
      /^begin; with w0 as \(insert into "payments" \([^)]*"description".*; select 1 as probe$/,
    )
    expect(statements.some((s) => s.includes('update "payments"'))).toBe(false)
  })

  test('a human_id already taken fails the commit, and neither payment of the transaction stays', async () => {
    const first = `pay_${newId('event').slice(4)}`
    const second = `pay_${newId('event').slice(4)}`
    const a = await newRow(first, 'TAKEN2')
    const b = await newRow(second, 'TAKEN2')
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await insertPayment(trx, a.row, a.allocations)
        await insertPayment(trx, b.row, b.allocations)
      }),
    ).rejects.toMatchObject({ code: '23505', constraint: 'payments_human_id_key' })
    expect(await rowsOf(first)).toEqual({ payment: undefined, allocations: [] })
    expect(await rowsOf(second)).toEqual({ payment: undefined, allocations: [] })
  })

  test('outside inTransaction, the payment is written at once and read back', async () => {
    const id = `pay_${newId('event').slice(4)}`
    const { row, allocations } = await newRow(id, `D${id.slice(-5)}`)
    const payment = await insertPayment(ctx.db, row, allocations)
    const stored = await rowsOf(id)
    expect(payment).toEqual(stored.payment)
    expect(stored.allocations).toHaveLength(1)
  })
})

describe('held updates', () => {
  test('wait for the next statement on their table, which then reads them', async () => {
    const description = `held-${newId('event')}`
    let read: string | null | undefined
    await inTransaction(ctx.db, async (trx) => {
      const locked = await lockPayment(trx, ctx.scope.environmentId, paymentId)
      expect(locked).toBeDefined()
      const updated = await updatePayment(trx, paymentId, { description })
      expect(updated.description).toBe(description)
      // Not yet written: another connection and this one see the old row...
      const seen = await ctx.db
        .selectFrom('payments')
        .select('description')
        .where('id', '=', paymentId)
        .executeTakeFirst()
      expect(seen?.description).not.toBe(description)
      // ...until this transaction's next statement on payments, which goes after them.
      read = (
        await trx
          .selectFrom('payments')
          .select('description')
          .where('id', '=', paymentId)
          .executeTakeFirst()
      )?.description
    })
    expect(read).toBe(description)
  })

  test('a held update that went with a statement whose value could not be sent is not lost: the transaction cannot commit', async () => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const before = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirst()
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        await updatePayment(trx, paymentId, { description: 'dropped?' })
        // Names payments: the held update goes in its message, which fails before it is sent.
        await sql`select ${circular}::jsonb as v from payments where id = ${paymentId}`
          .execute(trx)
          .catch(() => undefined)
        await appendRows(trx, 'events', [eventRow('probe.after-unsent')])
      }),
    ).rejects.toThrow(/circular/i)
    const after = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirst()
    expect(after?.description).toBe(before?.description)
    const events = await ctx.db
      .selectFrom('events')
      .select('id')
      .where('type', '=', 'probe.after-unsent')
      .execute()
    expect(events).toEqual([])
  })

  test('two updates of one row are merged, and a rollback drops them', async () => {
    await inTransaction(ctx.db, async (trx) => {
      await lockPayment(trx, ctx.scope.environmentId, paymentId)
      await updatePayment(trx, paymentId, { description: 'merged' })
      const second = await updatePayment(trx, paymentId, {
        metadata: JSON.stringify({ merged: 'yes' }),
      })
      // JSON given as text reads back as the object.
      expect(second.metadata).toEqual({ merged: 'yes' })
      expect(second.description).toBe('merged')
    })
    const after = await ctx.db
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    expect(after.description).toBe('merged')
    expect(after.metadata).toEqual({ merged: 'yes' })

    await expect(
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        await updatePayment(trx, paymentId, { description: 'rolled back' })
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    const kept = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    expect(kept.description).toBe('merged')
  })

  test('go with the commit in one statement; statements on other tables do not wait for them', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        await updatePayment(trx, paymentId, { description: 'with the commit' })
        await sql`select count(*) from invoice_lines where invoice_id = ${invoice.id}`.execute(trx)
        await appendRows(trx, 'payment_transitions', [transitionRow('with-commit')])
      }),
    )
    // The `begin` goes with the first statement, the held writes with the `commit`.
    expect(texts[0]).toMatch(/^begin; select \* from "payments"/)
    expect(texts[1]).toMatch(/^select count\(\*\) from invoice_lines/)
    expect(texts[2]).toMatch(/^with w0 as \(update "payments" set "description".*; commit$/)
    expect(texts).toHaveLength(3)
    expect(await notes('with-commit')).toEqual(['with-commit'])
  })

  test('an update without a key is refused when it is held, never sent as an update of every row', async () => {
    await expect(
      inTransaction(ctx.db, async (trx) => {
        holdUpdate(trx, 'payments', {}, { description: 'every row' })
      }),
    ).rejects.toThrow("A held update of payments needs its row's key")
    const { rows } = await ctx.pool.query<{ n: number }>(
      `select count(*)::int as n from payments where description = 'every row'`,
    )
    expect(rows[0]?.n).toBe(0)
  })

  test('an update whose every change is undefined holds nothing and leaves the row as it was', async () => {
    const before = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        const same = await updatePayment(trx, paymentId, { description: undefined })
        expect(same.description).toBe(before.description)
      }),
    )
    expect(texts.filter((t) => t.includes('update "payments"'))).toEqual([])
    const after = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    expect(after.description).toBe(before.description)
  })

  test('an SQL expression or a timestamp as text is written at once', async () => {
    await inTransaction(ctx.db, async (trx) => {
      await lockPayment(trx, ctx.scope.environmentId, paymentId)
      const texts = await statementsOf(async () => {
        const updated = await updatePayment(trx, paymentId, {
          payment_date: '2026-02-01T00:00:00Z',
        })
        expect(updated.payment_date).toEqual(new Date('2026-02-01T00:00:00Z'))
        await updatePayment(trx, paymentId, {
          description: sql<string>`'from sql'` as unknown as string,
        })
      })
      expect(texts).toHaveLength(2)
      expect(texts.every((t) => t.startsWith('update "payments"'))).toBe(true)
    })
  })

  test('never reach a connection after their transaction ended', async () => {
    // The pool hands the same connection to the next transaction: nothing held before may leak into it.
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        await updatePayment(trx, paymentId, { description: 'leaked' })
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    for (let i = 0; i < 12; i++) {
      await inTransaction(ctx.db, (trx) =>
        trx.selectFrom('payments').select('id').where('id', '=', paymentId).execute(),
      )
    }
    const row = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    expect(row.description).not.toBe('leaked')
  })
})

describe('read-aheads', () => {
  const countQuery = (type: string) =>
    sql<{ n: number }>`select count(*)::int as n from events where type = ${type}`.compile(ctx.db)

  test("go after the transaction's next statement, in its round trip, and read what it wrote", async () => {
    let seen: { n: number }[] | undefined
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        readAhead(trx, 'count', countQuery('probe.ahead'))
        await sql`insert into events (id, tenant_id, environment_id, type, object_type, object_id, data, created_at)
          values (${newId('event')}, ${ctx.scope.tenantId}, ${ctx.scope.environmentId}, 'probe.ahead',
            'probe', ${paymentId}, '{}', now())`.execute(trx)
        seen = await takeReadAhead<{ n: number }>(trx, 'count')
        // Taken once.
        expect(takeReadAhead(trx, 'count')).toBeUndefined()
      }),
    )
    expect(seen).toEqual([{ n: 1 }])
    expect(texts).toHaveLength(2)
    expect(texts[0]).toMatch(
      /^begin; insert into events .*; select count\(\*\)::int as n from events/,
    )
    expect(texts[1]).toBe('commit')
  })

  test('a held update of the table one reads goes before it, though the statement it follows names another', async () => {
    const description = `ahead-${newId('event')}`
    let seen: { description: string | null }[] | undefined
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        await lockPayment(trx, ctx.scope.environmentId, paymentId)
        await updatePayment(trx, paymentId, { description })
        readAhead(
          trx,
          'description',
          sql<{
            description: string | null
          }>`select description from payments where id = ${paymentId}`.compile(ctx.db),
        )
        await sql`select 1 as other`.execute(trx)
        seen = await takeReadAhead(trx, 'description')
      }),
    )
    expect(seen).toEqual([{ description }])
    expect(texts[1]).toMatch(
      /^update "payments" .*; select 1 as other; select description from payments/,
    )
  })

  test('one that never went (no statement followed) is dropped: the caller reads for itself', async () => {
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        readAhead(trx, 'count', countQuery('probe.unsent'))
        expect(takeReadAhead(trx, 'count')).toBeUndefined()
        await sql`select 1 as after`.execute(trx)
      }),
    )
    expect(texts).toEqual(['begin; select 1 as after', 'commit'])
  })

  test('none goes with the commit, and none outside a transaction', async () => {
    readAhead(ctx.db, 'count', countQuery('probe.outside'))
    expect(takeReadAhead(ctx.db, 'count')).toBeUndefined()
    const texts = await statementsOf(() =>
      inTransaction(ctx.db, async (trx) => {
        await appendRows(trx, 'events', [eventRow('probe.last')])
        readAhead(trx, 'count', countQuery('probe.last'))
      }),
    )
    expect(texts).toHaveLength(1)
    expect(texts[0]).toMatch(/^begin; insert into "events" .*; commit$/)
  })

  test('when the statement before one fails, the transaction fails with its error, and nothing is left unhandled', async () => {
    await expect(
      inTransaction(ctx.db, async (trx) => {
        readAhead(trx, 'count', countQuery('probe.failed'))
        await sql`select 1 / 0`.execute(trx)
      }),
    ).rejects.toMatchObject({ code: '22012' })
    let taken: Promise<unknown> | undefined
    await expect(
      inTransaction(ctx.db, async (trx) => {
        readAhead(trx, 'count', countQuery('probe.failed'))
        await sql`select 1 / 0`.execute(trx).catch(() => undefined)
        taken = takeReadAhead(trx, 'count')
        throw new Error('after')
      }),
    ).rejects.toThrow('after')
    await expect(taken).rejects.toMatchObject({ code: '22012' })
  })
})

describe('commit marks', () => {
  /** An idempotency record for a mark to update, and how to read what the mark wrote. */
  async function markedRecord() {
    const key = `mark-${newId('event')}`
    const now = ctx.clock.now()
    await ctx.db
      .insertInto('idempotency_keys')
      .values({
        environment_id: ctx.scope.environmentId,
        key,
        method: 'POST',
        path: '/v1/probe',
        request_hash: 'h',
        state: 'in_flight',
        locked_at: now,
        expires_at: new Date(now.getTime() + 60_000),
      })
      .execute()
    const appliedAt = new Date('2026-01-15T12:34:56.789Z')
    const mark = new CommitMark(
      'idempotency_keys',
      { environment_id: ctx.scope.environmentId, key, locked_at: now },
      () => ({ applied_at: appliedAt }),
      () => new Error('the mark lost its row'),
    )
    const read = async () =>
      (
        await ctx.pool.query<{ applied_at: Date | null }>(
          'select applied_at from idempotency_keys where key = $1',
          [key],
        )
      ).rows[0]?.applied_at ?? null
    const unset = () =>
      ctx.pool.query('update idempotency_keys set applied_at = null where key = $1', [key])
    const setLock = (lockedAt: Date) =>
      ctx.pool.query('update idempotency_keys set locked_at = $2 where key = $1', [key, lockedAt])
    const moveLock = () => setLock(new Date(now.getTime() + 60_000))
    const restoreLock = () => setLock(now)
    return { mark, appliedAt, read, unset, moveLock, restoreLock }
  }

  /** Runs `run` in the mark's scope, and waits for it. */
  function within<T>(mark: CommitMark, run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => mark.enter(() => run().then(resolve, reject)))
  }

  test('go with the commit of the transactions in their scope, in its round trip, until one has committed; a rolled back one writes nothing', async () => {
    const { mark, appliedAt, read, unset } = await markedRecord()
    await within(mark, async () => {
      await expect(
        inTransaction(ctx.db, async (trx) => {
          await sql`select 1`.execute(trx)
          throw new Error('rolled back')
        }),
      ).rejects.toThrow('rolled back')
      expect(await read()).toBeNull()

      const texts = await statementsOf(
        () =>
          inTransaction(ctx.db, async (trx) => {
            await sql`select 1`.execute(trx)
          }),
        400,
      )
      expect(texts).toEqual([
        'begin; select 1',
        expect.stringMatching(
          /^with w0 as \(update "idempotency_keys" set "applied_at" = \$1 where .* returning 1\) select payrail_require_row\(count\(\*\)\) from w0; commit$/,
        ),
      ])
      expect(await read()).toEqual(appliedAt)

      // One commit is enough: later transactions of the scope do not carry it.
      await unset()
      await inTransaction(ctx.db, async (trx) => {
        await sql`select 1`.execute(trx)
      })
      expect(await read()).toBeNull()
    })
    mark.end()
  })

  test('only what runs in the scope carries them, and nothing does after it ends', async () => {
    const { mark, read } = await markedRecord()
    // Another scope stays open throughout (the storage stays on): the first is left by `end`.
    const other = await markedRecord()
    let closeOther: () => void = () => undefined
    const otherOpen = within(
      other.mark,
      () =>
        new Promise<void>((resolve) => {
          closeOther = resolve
        }),
    )
    let release: () => void = () => undefined
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    // Started outside the scope, it runs its transaction while the scope is open.
    const outside = (async () => {
      await released
      await inTransaction(ctx.db, async (trx) => {
        await sql`select 1`.execute(trx)
      })
    })()
    let later: Promise<void> = Promise.resolve()
    await within(mark, async () => {
      release()
      await outside
      // Started in the scope, it runs its transaction after the scope ends.
      later = (async () => {
        await new Promise((resolve) => setTimeout(resolve, 20))
        await inTransaction(ctx.db, async (trx) => {
          await sql`select 1`.execute(trx)
        })
      })()
    })
    mark.end()
    await later
    expect(await read()).toBeNull()
    closeOther()
    await otherOpen
    other.mark.end()
    expect(await other.read()).toBeNull()
  })

  test("whose row no longer matches (the fence moved) fail the commit: the transaction rolls back, with the held writes, and throws the mark's error", async () => {
    const { mark, appliedAt, read, moveLock, restoreLock } = await markedRecord()
    await moveLock()
    await within(mark, async () => {
      await expect(
        inTransaction(ctx.db, async (trx) => {
          // Locked first, so that its update is held to the commit with the mark.
          await lockPayment(trx, ctx.scope.environmentId, paymentId)
          await updatePayment(trx, paymentId, { description: 'fenced out' })
          await appendRows(trx, 'payment_transitions', [transitionRow('fenced-out')])
        }),
      ).rejects.toThrow('the mark lost its row')
      expect(await read()).toBeNull()
      // Not committed: the next transaction of the scope carries the mark again.
      await restoreLock()
      await inTransaction(ctx.db, async (trx) => {
        await sql`select 1`.execute(trx)
      })
      expect(await read()).toEqual(appliedAt)
    })
    mark.end()
    expect(await notes('fenced-out')).toEqual([])
    const { description } = await ctx.db
      .selectFrom('payments')
      .select('description')
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    expect(description).not.toBe('fenced out')
  })

  test('a mark without a row to find is refused', () => {
    expect(
      () =>
        new CommitMark(
          'idempotency_keys',
          {},
          () => ({}),
          () => new Error('lost'),
        ),
    ).toThrow('A commit mark of idempotency_keys needs its row')
  })

  test('a transaction that started before another of the scope committed the mark carries it no more', async () => {
    const { mark, appliedAt, read, unset } = await markedRecord()
    await within(mark, async () => {
      let release: () => void = () => undefined
      const held = new Promise<void>((resolve) => {
        release = resolve
      })
      const earlier = inTransaction(ctx.db, async (trx) => {
        await sql`select 1`.execute(trx)
        await held
      })
      await inTransaction(ctx.db, async (trx) => {
        await sql`select 2`.execute(trx)
      })
      expect(await read()).toEqual(appliedAt)
      await unset()
      release()
      await earlier
      expect(await read()).toBeNull()
    })
    mark.end()
  })

  test('a mark is entered once', () => {
    const mark = new CommitMark(
      'idempotency_keys',
      { key: 'k' },
      () => ({}),
      () => new Error('lost'),
    )
    mark.enter(() => undefined)
    expect(() => mark.enter(() => undefined)).toThrow('A commit mark is entered once')
    mark.end()
  })
})
