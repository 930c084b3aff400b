import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { deliverSandboxWebhook } from '../../src/jobs/tasks/deliver-sandbox-webhook.ts'
import { withdrawOvertakenPages } from '../../src/jobs/tasks/withdraw-overtaken-pages.ts'
import { eventsOf } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  openSandboxCrypto,
  type PaymentBody,
  pagePost,
  payOffline,
  sessionOf,
  submitCard,
} from '../payments-helpers.ts'

let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

/** A sandbox link for `amount` of a new invoice of 100.00, and the invoice. */
async function openLink(amount?: string) {
  const { invoice } = await invoiceToPay(ctx)
  const link = await createSandboxLink(ctx, invoice, amount)
  expect(link.status, link.text).toBe(201)
  expect(link.body.payment_status).toBe('PENDING')
  return { invoice, link: link.body }
}

async function sessionStatus(sessionId: string) {
  const session = await ctx.db
    .selectFrom('sandbox_sessions')
    .select('status')
    .where('id', '=', sessionId)
    .executeTakeFirstOrThrow()
  return session.status
}

/** Runs the job until it finds nothing more: other tests' pages are withdrawn too. */
async function runJob() {
  const first = await withdrawOvertakenPages(ctx.deps, 2)
  expect(await withdrawOvertakenPages(ctx.deps)).toEqual({ withdrawn: 0, left: 0 })
  return first
}

describe('withdraw_overtaken_pages', () => {
  test('an invoice paid offline while its link was open: the link is withdrawn, and the customer cannot pay it twice', async () => {
    const { invoice, link } = await openLink()
    await payOffline(ctx, invoice.id, '100.00')
    const { withdrawn } = await runJob()
    expect(withdrawn).toBeGreaterThanOrEqual(1)
    expect(await getPayment(ctx, link.id)).toMatchObject({ payment_status: 'CANCELLED' })
    expect(await sessionStatus(sessionOf(link))).toBe('expired')
    const refused = await submitCard(ctx, sessionOf(link), '4242424242424242')
    expect(refused.statusCode).toBeGreaterThanOrEqual(400)
    expect(refused.statusCode).toBeLessThan(500)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '100.00',
    })
    expect(await eventsOf(ctx, link.id, 'payment.cancelled')).toHaveLength(1)
  })

  test('paid in part: a link for more than is left is withdrawn; one that still fits is kept', async () => {
    const over = await openLink()
    await payOffline(ctx, over.invoice.id, '30.00')
    const fits = await openLink('50.00')
    await payOffline(ctx, fits.invoice.id, '50.00')
    await runJob()
    expect(await getPayment(ctx, over.link.id)).toMatchObject({ payment_status: 'CANCELLED' })
    expect(await getInvoice(ctx, over.invoice.id)).toMatchObject({
      amount_remaining: '70.00',
      payment_status: 'PENDING',
    })
    // 50.00 still owed: the open link for 50.00 pays it exactly.
    expect(await getPayment(ctx, fits.link.id)).toMatchObject({ payment_status: 'PENDING' })
    expect(await sessionStatus(sessionOf(fits.link))).toBe('open')
  })

  test('a link on an invoice nobody paid stays open; one the customer paid is left as it is', async () => {
    const untouched = await openLink()
    const paid = await openLink()
    expect((await submitCard(ctx, sessionOf(paid.link), '4242424242424242')).statusCode).toBe(200)
    await runJob()
    expect(await getPayment(ctx, untouched.link.id)).toMatchObject({ payment_status: 'PENDING' })
    expect(await sessionStatus(sessionOf(untouched.link))).toBe('open')
    expect(await getInvoice(ctx, paid.invoice.id)).toMatchObject({ payment_status: 'SUCCEEDED' })
    expect((await getPayment(ctx, paid.link.id)).payment_status).toBe('SUCCEEDED')
  })

  test('pages in turn, by keyset: one refused (the customer paid it) does not stop the next', async () => {
    const pages: PaymentBody[] = []
    for (let i = 0; i < 7; i++) {
      const { invoice, link } = await openLink()
      await payOffline(ctx, invoice.id, '100.00')
      pages.push(link)
    }
    // The job's order: oldest first, then by id.
    const key = (p: PaymentBody) => `${String(p.created_at)} ${p.id}`
    const ordered = [...pages].sort((a, b) => (key(a) < key(b) ? -1 : 1))
    // Paid on the page, the report not yet in: the sandbox refuses to close them.
    for (const page of ordered.slice(0, 3))
      await sql`update sandbox_sessions set status = 'complete' where id = ${sessionOf(page)}`.execute(
        ctx.db,
      )
    expect(await withdrawOvertakenPages(ctx.deps, 2)).toEqual({ withdrawn: 4, left: 3 })
    for (const page of ordered.slice(3))
      expect((await getPayment(ctx, page.id)).payment_status).toBe('CANCELLED')
    for (const page of ordered.slice(0, 3))
      expect((await getPayment(ctx, page.id)).payment_status).toBe('PENDING')
    await forgetOpenPages()
  })

  test('a page whose gateway connection cannot be opened is logged and left; the other pages are withdrawn', async () => {
    const other = await ctx.createTenantFixture('unreadable')
    // Credentials sealed with another key: opening the connection throws, outside any AppError.
    await sql`insert into gateway_connections (id, tenant_id, environment_id, gateway, credentials)
      values ('gc_unreadable', ${other.tenant.id}, ${other.test.id}, 'stripe', 'v1.AAAA.AAAA.AAAA')`.execute(
      ctx.db,
    )
    const customer = await ctx.post<{ id: string }>(
      '/v1/customers',
      { name: 'Ada', email: 'ada@example.com' },
      { key: other.key },
    )
    const invoice = await ctx.post<{ id: string }>(
      '/v1/invoices',
      {
        customer_id: customer.body.id,
        currency: 'usd',
        lines: [{ description: 'Plan', quantity: 1, unit_amount: '100.00' }],
      },
      { key: other.key },
    )
    expect(
      (await ctx.post(`/v1/invoices/${invoice.body.id}/finalize`, {}, { key: other.key })).status,
    ).toBe(200)
    // An open Checkout Session of that connection, older than the sandbox page below.
    await sql`insert into payments (id, tenant_id, environment_id, human_id, customer_id, destination_type,
        destination_id, amount, currency, payment_status, payment_method_type, payment_gateway,
        gateway_tracking_id, created_at, updated_at, invoice_ids)
      values ('payment_unreadable', ${other.tenant.id}, ${other.test.id}, 'UNR001', ${customer.body.id},
        'INVOICE', ${invoice.body.id}, 10000, 'usd', 'PENDING', 'PAYMENT_LINK', 'stripe', 'cs_test_unreadable',
        ${new Date(ctx.clock.now().getTime() - 60_000)}, now(), array[${invoice.body.id}])`.execute(
      ctx.db,
    )
    await sql`insert into payment_allocations (payment_id, invoice_id, position, amount)
      values ('payment_unreadable', ${invoice.body.id}, 0, 10000)`.execute(ctx.db)
    const paid = await createPayment(
      ctx,
      { destination_id: invoice.body.id, payment_method_type: 'OFFLINE', amount: '100.00' },
      { key: other.key },
    )
    expect(paid.status, paid.text).toBe(201)
    const sandbox = await openLink()
    await payOffline(ctx, sandbox.invoice.id, '100.00')
    expect(await withdrawOvertakenPages(ctx.deps)).toEqual({ withdrawn: 1, left: 1 })
    expect((await getPayment(ctx, sandbox.link.id)).payment_status).toBe('CANCELLED')
    await forgetOpenPages()
  })

  test('a sandbox crypto page the customer has paid (coins sent, confirming) is not withdrawn: its report still lands', async () => {
    const { invoice, crypto } = await openSandboxCrypto(ctx)
    // Payrail cannot be reached for the sandbox's report: it is queued for redelivery.
    const queued: unknown[] = []
    const add = vi.spyOn(ctx.deps.jobs, 'add').mockImplementation(async (_task, payload) => {
      queued.push(payload)
      return undefined as never
    })
    const post = vi.spyOn(ctx.deps.loopback, 'post').mockResolvedValueOnce(503)
    try {
      const page = String(crypto.body.payment_url).replace(/^https?:\/\/[^/]+/, '')
      expect((await pagePost(ctx, page, 'pay')).statusCode).toBeLessThan(400)
    } finally {
      post.mockRestore()
      add.mockRestore()
    }
    expect(await sessionStatus(sessionOf(crypto.body))).toBe('confirming')
    await payOffline(ctx, invoice.id, '100.00')
    expect(await withdrawOvertakenPages(ctx.deps)).toEqual({ withdrawn: 0, left: 1 })
    expect(await sessionStatus(sessionOf(crypto.body))).toBe('confirming')
    // The report, sent again, moves the payment on: the coins are not lost.
    expect(queued).toHaveLength(1)
    await deliverSandboxWebhook(ctx.deps, queued[0] as never)
    expect((await getPayment(ctx, crypto.body.id)).payment_status).toBe('PROCESSING')
    await forgetOpenPages()
  })
})

/** Leaves no open page behind for the next test's runs (each run takes every environment's). */
async function forgetOpenPages() {
  await sql`update payments set payment_status = 'CANCELLED' where payment_status = 'PENDING'`.execute(
    ctx.db,
  )
}
