import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { forgetInvoiceLines } from '../../src/modules/invoices/repository.ts'
import { findEnvironment } from '../../src/modules/tenants/repository.ts'
import { webhookEndpoints } from '../../src/modules/webhook-endpoints/registry.ts'
import { eventsOf } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  chargeDefaultCard,
  createPayment,
  createSandboxLink,
  customerWithSavedCard,
  getPayment,
  invoiceToPay,
  postSandboxWebhook,
  sandboxEventBody,
  sessionOf,
} from '../payments-helpers.ts'
import { statementsOf } from '../statements.ts'

/**
 * The round trips of the hot paths, as docs/architecture.md and docs/performance.md count
 * them: a change that adds a statement to one of them shows here first. A transaction's
 * `begin` goes with its first statement and its `commit` with its last (`src/db/client.ts`).
 */
let ctx: TestContext

/** That `texts` are `transactions` transactions, each begun and committed with a statement. */
function expectPipelined(texts: string[], transactions: number) {
  const shown = texts.join('\n')
  expect(
    texts.filter((t) => t.startsWith('begin; ')),
    shown,
  ).toHaveLength(transactions)
  expect(
    texts.filter((t) => t.endsWith('; commit')),
    shown,
  ).toHaveLength(transactions)
  expect(
    texts.filter((t) => t === 'begin' || t === 'commit'),
    shown,
  ).toEqual([])
}

beforeAll(async () => {
  ctx = await createTestContext()
  // The key is then served from the process's cache.
  for (let i = 0; i < 200 && !(ctx.deps.apiKeys?.live && webhookEndpoints.live); i++)
    await new Promise((r) => setTimeout(r, 10))
  // The environment's webhook endpoints (none) are read once, then kept: events cost no lookup.
  await webhookEndpoints.enabled(ctx.db, ctx.main.test.id)
  // So is the environment (its type: the sandbox takes test payments only).
  await findEnvironment(ctx.db, ctx.main.test.id)
  expect((await ctx.get('/v1/payments?limit=1')).status).toBe(200)
})
afterAll(() => ctx.close())

/** The statements of an OFFLINE payment of `invoice` in full, which succeeds. */
const payOffline = (invoice: { id: string; amount_due: string }) =>
  statementsOf(async () => {
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: invoice.amount_due,
    })
    expect(res.status).toBe(201)
    expect(res.body.payment_status).toBe('SUCCEEDED')
  })

describe('statements per request', () => {
  // The invoice's lines are in this process's cache (it wrote them): the lock reads the invoice alone.
  test('an OFFLINE payment of an invoice in full: 2 round trips, one transaction', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const texts = await payOffline(invoice)
    expectPipelined(texts, 1)
    // The lock, and the charges in flight read once it is held; then the writes and the commit.
    expect(texts[0]).toMatch(
      /^begin; select \* from "invoices" .* for update; select "payment_allocations"."invoice_id", sum/,
    )
    expect(texts[1]).toMatch(/^with .*insert into "payments".*; commit$/)
    expect(texts, texts.join('\n')).toHaveLength(2)
  })

  test('the same for an invoice this process has never read: its lines come with the lock', async () => {
    const { invoice } = await invoiceToPay(ctx)
    forgetInvoiceLines()
    const texts = await payOffline(invoice)
    expect(texts, texts.join('\n')).toHaveLength(2)
    expect(texts.filter((t) => /^select .* from "invoice_lines"/.test(t))).toEqual([])
    expect(texts.filter((t) => /"line_id"/.test(t))).toHaveLength(1)
    // invoice.paid carries them, as GET /v1/invoices/:id shows them.
    const shown = await ctx.get<{ lines: unknown[] }>(`/v1/invoices/${invoice.id}`)
    const paid = await eventsOf(ctx, invoice.id, 'invoice.paid')
    expect(paid).toHaveLength(1)
    expect(shown.body.lines.length).toBeGreaterThan(0)
    expect(paid[0]?.data.object.lines).toEqual(shown.body.lines)
  })

  test('the same for an invoice without lines (one synced from Stripe, say): knowing it has none is knowing its lines', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const id = `${invoice.id}_bare`
    await ctx.pool.query(
      `insert into invoices (id, tenant_id, environment_id, customer_id, number, currency, invoice_status, payment_status,
         collection_method, billing_reason, subtotal, total, amount_due, amount_remaining, finalized_at)
       select $1, tenant_id, environment_id, customer_id, number || '-bare', currency, invoice_status, payment_status,
         collection_method, billing_reason, 700, 700, 700, 700, finalized_at
       from invoices where id = $2`,
      [id, invoice.id],
    )
    forgetInvoiceLines()
    const texts = await payOffline({ id, amount_due: '7.00' })
    expect(texts, texts.join('\n')).toHaveLength(2)
    expect(texts.filter((t) => /^select .* from "invoice_lines"/.test(t))).toEqual([])
    const paid = await eventsOf(ctx, id, 'invoice.paid')
    expect(paid).toHaveLength(1)
    expect(paid[0]?.data.object.lines).toEqual([])
  })

  // The insert also sums the invoice's charges in flight, which the link must leave room for.
  test("a sandbox PAYMENT_LINK: 2 round trips, one transaction: the sandbox's page opens in it", async () => {
    const { invoice } = await invoiceToPay(ctx)
    const texts = await statementsOf(async () => {
      const res = await createSandboxLink(ctx, invoice)
      expect(res.status).toBe(201)
      expect(res.body.payment_status).toBe('PENDING')
      expect(res.body.payment_url).toMatch(/^http/)
    }, 100_000)
    expectPipelined(texts, 1)
    expect(texts, texts.join('\n')).toHaveLength(2)
    // The invoice's lock carries the charges in flight and the customer the gateway is asked for.
    expect(texts[0]).toMatch(
      /^begin; select \* from "invoices" .* for update; select "payment_allocations"\."invoice_id", sum.*; select \* from "customers" where "environment_id" = \$1 and "id" = \(select/,
    )
    // Then the payment, already PENDING, its attempt and the sandbox's session, with the commit.
    expect(texts[1]).toMatch(/^with w0 as \(insert into "payments" .*; commit$/)
    expect(texts[1]).toMatch(/insert into "payment_attempts"/)
    expect(texts[1]).toMatch(/insert into "sandbox_sessions"/)
  })

  test("an off-session CARD charge of the customer's default card reads the customer once, with the invoice's lock", async () => {
    const { nextInvoiceId } = await customerWithSavedCard(ctx)
    const texts = await statementsOf(async () => {
      const card = await chargeDefaultCard(ctx, nextInvoiceId)
      expect(card.status).toBe(201)
      expect(card.body.payment_status).toBe('SUCCEEDED')
    }, 200)
    const customerReads = texts.flatMap((t) =>
      t.split('; ').filter((s) => s.startsWith('select * from "customers"')),
    )
    expect(customerReads, texts.join('\n')).toHaveLength(1)
    expect(texts[0]).toMatch(
      /^begin; select \* from "invoices" .* for update; .*; select \* from "customers"/,
    )
  })

  test('a signed sandbox completion webhook settling a payment: 3 round trips, one transaction', async () => {
    const completeNewLink = async () => {
      const { invoice } = await invoiceToPay(ctx)
      const link = await createSandboxLink(ctx, invoice)
      expect(link.status).toBe(201)
      const cents = Math.round(Number(invoice.amount_due) * 100)
      const body = sandboxEventBody(`sbevt_count_${link.body.id}`, 'checkout.completed', {
        payment_id: link.body.id,
        session_id: sessionOf(link.body),
        amount: cents,
        amount_received: cents,
      })
      return {
        payment: link.body.id,
        deliver: async () => {
          const res = await postSandboxWebhook(ctx, body)
          expect(res.statusCode).toBe(200)
        },
      }
    }
    // The first webhook of an environment in a process also looks the environment up.
    await (await completeNewLink()).deliver()
    const second = await completeNewLink()
    const texts = await statementsOf(second.deliver)
    expect((await getPayment(ctx, second.payment)).payment_status).toBe('SUCCEEDED')
    expectPipelined(texts, 1)
    // The event's insert; the payment's lock with its invoices' locks and its attempts;
    // the new attempt with the writes and the commit.
    expect(texts[0]).toMatch(/^begin; insert into "webhook_events" [^;]*$/)
    expect(texts[1]).toMatch(
      /^select \* from "payments" .* for update; select "invoices".*; select \* from "payment_attempts"/,
    )
    expect(texts[2]).toMatch(/^with w0 as \(insert into "payment_attempts" .*; commit$/)
    expect(texts, texts.join('\n')).toHaveLength(3)
  })

  test('GET /v1/payments: 1', async () => {
    const texts = await statementsOf(async () => {
      const res = await ctx.get('/v1/payments?status=SUCCEEDED&limit=50')
      expect(res.status).toBe(200)
    })
    expect(texts, texts.join('\n')).toHaveLength(1)
  })
})
