import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { newId } from '../../src/core/ids.ts'
import { inTransaction } from '../../src/db/transaction.ts'
import { linesOf, lockInvoice } from '../../src/modules/invoices/repository.ts'
import {
  allocationsLockingInvoices,
  allocationsOf,
  insertPayment,
  lockPayment,
} from '../../src/modules/payments/repository.ts'
import { createCustomer, finalizedInvoice, type InvoiceBody } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { statementsOf } from '../statements.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

/** A payment written straight away with one allocation per invoice, in the order given. */
async function paymentOn(invoices: { id: string; customer_id: string }[], environmentId: string) {
  const at = ctx.clock.now()
  const id = `pay_${newId('event').slice(4)}`
  const first = invoices[0]
  if (!first) throw new Error('no invoice')
  return insertPayment(
    ctx.db,
    {
      id,
      tenant_id: ctx.main.tenant.id,
      environment_id: environmentId,
      human_id: id.slice(-6).toUpperCase(),
      customer_id: first.customer_id,
      destination_type: 'INVOICE',
      destination_id: first.id,
      amount: 5000n,
      currency: 'usd',
      payment_status: 'PENDING',
      payment_method_type: 'PAYMENT_LINK',
      invoice_ids: invoices.map((i) => i.id),
      created_at: at,
      updated_at: at,
    },
    invoices.map((invoice, position) => ({
      invoice_id: invoice.id,
      position,
      amount: position === 0 ? 3000n : 2000n,
    })),
  )
}

/** Whether another connection can lock the invoice now (`NOWAIT`): false while a transaction holds it. */
async function lockableElsewhere(invoiceId: string): Promise<boolean> {
  const client = await ctx.pool.connect()
  try {
    await client.query('begin')
    await client.query('select id from invoices where id = $1 for update nowait', [invoiceId])
    return true
  } catch (error) {
    expect((error as { code?: string }).code).toBe('55P03')
    return false
  } finally {
    await client.query('rollback')
    client.release()
  }
}

describe('allocationsLockingInvoices', () => {
  test("reads a locked payment's allocations and locks its invoices in one statement, in allocation order, with their lines", async () => {
    const customer = await createCustomer(ctx)
    const a = await finalizedInvoice(ctx, customer.id)
    const b = await finalizedInvoice(ctx, customer.id)
    // Allocated in the other order than the invoices were made.
    const payment = await paymentOn([b, a], ctx.main.test.id)
    await inTransaction(ctx.db, async (trx) => {
      const locked = await lockPayment(trx, ctx.main.test.id, payment.id)
      if (!locked) throw new Error('payment not found')
      let allocations: Awaited<ReturnType<typeof allocationsLockingInvoices>> = []
      const statements = await statementsOf(async () => {
        allocations = await allocationsLockingInvoices(trx, ctx.main.test.id, locked)
      })
      expect(statements).toHaveLength(1)
      expect(allocations).toEqual([
        {
          payment_id: payment.id,
          invoice_id: b.id,
          position: 0,
          amount: 3000n,
          applied_amount: 0n,
        },
        {
          payment_id: payment.id,
          invoice_id: a.id,
          position: 1,
          amount: 2000n,
          applied_amount: 0n,
        },
      ])
      expect(await lockableElsewhere(a.id)).toBe(false)
      expect(await lockableElsewhere(b.id)).toBe(false)
      // The invoices, their lines and the allocations are now known to the transaction.
      const again = await statementsOf(async () => {
        expect((await lockInvoice(trx, ctx.main.test.id, a.id))?.id).toBe(a.id)
        expect((await linesOf(trx, [b.id])).map((l) => l.description)).toEqual(['Consulting'])
        expect(await allocationsLockingInvoices(trx, ctx.main.test.id, locked)).toEqual(allocations)
      })
      expect(again).toEqual([])
    })
    expect(await lockableElsewhere(a.id)).toBe(true)
  })

  test('an allocation to an invoice of another environment is read as before, and nothing of it is locked', async () => {
    const customer = await createCustomer(ctx)
    const own = await finalizedInvoice(ctx, customer.id)
    const liveCustomer = await createCustomer(ctx, {}, ctx.main.liveKey)
    const created = await ctx.post<InvoiceBody>(
      '/v1/invoices',
      {
        customer_id: liveCustomer.id,
        currency: 'usd',
        lines: [{ description: 'Elsewhere', quantity: 1, unit_amount: '20.00' }],
      },
      { key: ctx.main.liveKey },
    )
    expect(created.status).toBe(201)
    const payment = await paymentOn([own, created.body], ctx.main.test.id)
    await inTransaction(ctx.db, async (trx) => {
      const locked = await lockPayment(trx, ctx.main.test.id, payment.id)
      if (!locked) throw new Error('payment not found')
      const allocations = await allocationsLockingInvoices(trx, ctx.main.test.id, locked)
      expect(allocations).toEqual(await allocationsOf(trx, [payment.id]))
      expect(allocations.map((x) => x.invoice_id)).toEqual([own.id, created.body.id])
      expect(await lockableElsewhere(created.body.id)).toBe(true)
    })
  })
})
