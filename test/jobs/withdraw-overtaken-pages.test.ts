import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { withdrawOvertakenPages } from '../../src/jobs/tasks/withdraw-overtaken-pages.ts'
import { eventsOf } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
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
})
