import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer, finalizedInvoice } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'

let ctx: TestContext
let invoiceId: string

beforeAll(async () => {
  ctx = await createTestContext()
  const customer = await createCustomer(ctx)
  invoiceId = (await finalizedInvoice(ctx, customer.id)).id
})
afterAll(() => ctx.close())

describe('storage', () => {
  test('an invoice settled after its page filled up is updated in place (HOT), adding no index entries', async () => {
    const connection = await ctx.pool.connect()
    try {
      await connection.query('begin')
      // 120 invoices written one after another fill whole pages, as a merchant's do; then
      // every fifth is paid, as a settling payment writes it. The counts are this
      // transaction's own (`pg_stat_xact_user_tables`), and nothing it wrote can be pruned
      // before it ends: an update is HOT only where the page kept room for it.
      await connection.query(
        `insert into invoices
           select 'in_hot_' || g, tenant_id, environment_id, customer_id, null, currency,
                  invoice_status, payment_status, collection_method, billing_reason, subtotal,
                  total_discount, total, amount_due, amount_paid, amount_refunded,
                  amount_remaining, due_date, payment_window_days, payment_window_ends_at,
                  discount_id, discount_code, order_id, subscription_id, period_start,
                  period_end, source, stripe_invoice_id, next_payment_attempt, description,
                  metadata, finalized_at, paid_at, voided_at, marked_uncollectible_at,
                  created_at, updated_at
           from invoices, generate_series(1, 120) g where id = $1`,
        [invoiceId],
      )
      const counts = async () =>
        (
          await connection.query(
            `select n_tup_upd as updated, n_tup_hot_upd as hot
             from pg_stat_xact_user_tables where relname = 'invoices'`,
          )
        ).rows[0] as { updated: bigint; hot: bigint }
      const before = await counts()
      const updated = await connection.query(
        `update invoices
           set payment_status = 'SUCCEEDED', amount_paid = total, amount_remaining = 0,
               paid_at = now(), updated_at = now()
           where id like 'in_hot_%' and substr(id, 8)::int % 5 = 0`,
      )
      expect(updated.rowCount).toBe(24)
      const after = await counts()
      expect(after.updated - before.updated).toBe(24n)
      expect(after.hot - before.hot).toBe(24n)
    } finally {
      await connection.query('rollback')
      connection.release()
    }
  })
})
