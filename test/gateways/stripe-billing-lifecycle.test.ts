/**
 * The Stripe Billing mirror later in an invoice's life (credit notes, late write-offs, voids
 * and deletions reported first, lines that cannot be read), and customer token revocation.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { backfillStripe } from '../../src/modules/stripe-sync/backfill.ts'
import type { StripeEmulator } from '../emulators/stripe/emulator.ts'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import type { PaymentBody } from '../payments-helpers.ts'
import { connectStripeEmulator, mirroredInvoice } from '../stripe-helpers.ts'

describe('Stripe Billing mirror', () => {
  let ctx: TestContext
  let emulator: StripeEmulator
  beforeAll(async () => {
    ctx = await createTestContext({ start: new Date() })
    emulator = await connectStripeEmulator(ctx)
  })
  afterAll(async () => {
    await emulator?.close()
    await ctx.close()
  })

  async function openMirrored(email: string) {
    const customer = emulator.seedCustomer({ email })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 4500,
      status: 'open',
    })
    emulator.sendEvent('invoice.finalized', String(invoice.id))
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    if (!mirrored) throw new Error('not mirrored')
    return { invoice, mirrored }
  }
  const eventsOfType = async (invoiceId: string, type: string) =>
    (await ctx.get<{ items: unknown[] }>(`/v1/events?object_id=${invoiceId}&type=${type}`)).body
      .items.length

  test('a credit note at Stripe after a partial Payrail payment that now covers it: paid (OVERPAID), told, and Stripe asked to mark it paid', async () => {
    const { invoice, mirrored } = await openMirrored('partial-credit@example.com')
    const paid = await ctx.post<PaymentBody>('/v1/payments', {
      destination_type: 'INVOICE',
      destination_id: mirrored.id,
      payment_method_type: 'OFFLINE',
      amount: '40.00',
      currency: 'usd',
    })
    expect(paid.status, paid.text).toBe(201)
    // The merchant credits 15.00 at Stripe: 30.00 due, Payrail holds 40.00.
    emulator.sendEvent('invoice.updated', {
      ...invoice,
      total: 3000,
      amount_due: 3000,
      amount_remaining: 3000,
    })
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    expect(after).toMatchObject({
      amount_due: '30.00',
      amount_paid: '40.00',
      amount_remaining: '0.00',
    })
    // Paid more than is due: OVERPAID, as with a full payment (it stayed PENDING, owing
    // nothing, and Stripe went on collecting).
    expect(after?.payment_status).toBe('OVERPAID')
    expect(await eventsOfType(mirrored.id, 'invoice.paid')).toBe(1)
    const jobs = await ctx.pool.query(
      `select 1 from graphile_worker._private_jobs where key = $1`,
      [`stripe-oob-${mirrored.id}`],
    )
    expect(jobs.rowCount).toBe(1)
  })

  test("a late, older marked_uncollectible after Stripe's paid does not write the paid invoice off", async () => {
    const { invoice, mirrored } = await openMirrored('late-writeoff@example.com')
    const writtenOff = { ...invoice, status: 'uncollectible' }
    const paid = {
      ...invoice,
      status: 'paid',
      amount_paid: 4500,
      amount_remaining: 0,
      paid_out_of_band: false,
    }
    emulator.sendEvent('invoice.paid', paid)
    await emulator.waitForDeliveries()
    emulator.sendEvent('invoice.marked_uncollectible', writtenOff)
    await emulator.waitForDeliveries()
    const after = await mirroredInvoice(ctx, String(invoice.id))
    // Payrail refuses to write off a paid invoice (markUncollectibleLocked); the mirror wrote
    // it off, and told the merchant so after telling it was paid.
    expect(await eventsOfType(mirrored.id, 'invoice.marked_uncollectible')).toBe(0)
    expect(after?.invoice_status).not.toBe('UNCOLLECTIBLE')
  })

  test('invoice.deleted of a draft with more than 10 lines is accepted: its lines are not read', async () => {
    const customer = emulator.seedCustomer({ email: 'deleted-draft@example.com' })
    const draft = emulator.seedInvoice({
      customer: String(customer.id),
      status: 'draft',
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100, description: `L${i}` })),
    })
    // Stripe deleted the draft: its lines are gone (the id is unknown from then on).
    const deleted = { ...draft, id: 'in_deleted_draft_review2', deleted: true }
    const sent = emulator.sendEvent('invoice.deleted', deleted)
    await emulator.waitForDeliveries()
    const attempts = emulator.deliveries.filter((d) => d.eventId === sent.id)
    expect(attempts.length).toBeGreaterThan(0)
    expect(attempts.at(-1)?.ok).toBe(true)
  })

  test("Stripe's voided delivered before its finalized: the mirror is made VOIDED, and invoice.voided is sent", async () => {
    const customer = emulator.seedCustomer({ email: 'void-first@example.com' })
    const invoice = emulator.seedInvoice({ customer: String(customer.id), amountDue: 4500 })
    emulator.sendEvent('invoice.voided', { ...invoice, status: 'void' })
    await emulator.waitForDeliveries()
    const mirrored = await mirroredInvoice(ctx, String(invoice.id))
    expect(mirrored?.invoice_status).toBe('VOIDED')
    expect(await eventsOfType(String(mirrored?.id), 'invoice.voided')).toBe(1)
  })

  test('payrail sync stripe: an invoice whose lines cannot be read is counted failed, and the sync goes on', async () => {
    const customer = emulator.seedCustomer({ email: 'lines-fail@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100, description: `L${i}` })),
    })
    emulator.failNext({
      pathPrefix: `/v1/invoices/${String(invoice.id)}/lines`,
      status: 500,
      count: 10,
    })
    let outcome: unknown
    try {
      outcome = await backfillStripe(ctx.deps, ctx.scope)
    } catch (error) {
      outcome = error
    } finally {
      emulator.clearFaults()
    }
    // An object it cannot mirror is logged, counted failed, and the rest synced (the lines
    // were read outside the per-object guard, and the sync stopped).
    expect(outcome).not.toBeInstanceOf(Error)
    expect((outcome as { failed: number }).failed).toBeGreaterThan(0)
  })
})

describe('customer tokens', () => {
  let ctx: TestContext
  beforeAll(async () => {
    ctx = await createTestContext()
  })
  afterAll(() => ctx.close())

  test('DELETE /v1/customers/:id/tokens counts only live tokens (one expired already is not)', async () => {
    const customer = await createCustomer(ctx)
    const first = await ctx.post(`/v1/customers/${customer.id}/tokens`, { expires_in: 60 })
    expect(first.status, first.text).toBe(201)
    ctx.clock.set(new Date(ctx.clock.now().getTime() + 120_000))
    const second = await ctx.post(`/v1/customers/${customer.id}/tokens`, { expires_in: 3600 })
    expect(second.status, second.text).toBe(201)
    const res = await ctx.delete<{ revoked: number }>(`/v1/customers/${customer.id}/tokens`)
    expect(res.status, res.text).toBe(200)
    // One token was live; the schema says "How many live tokens were revoked".
    expect(res.body.revoked).toBe(1)
  })
})
