/**
 * Changes to a subscription over its life: a retired price it still bills, changes asked
 * while the renewal job was behind, `change_at`, and pending changes written by the code
 * before migration 0015.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { newId } from '../../src/core/ids.ts'
import { up as up0015 } from '../../src/db/migrations/0015-schedule-quantity-only.ts'
import { up as up0020 } from '../../src/db/migrations/0020-schedule-quantity-only-price-of-its-day.ts'
import { createCustomer, createProduct } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { getInvoice } from '../payments-helpers.ts'
import {
  activeSubscription,
  createPlan,
  getSubscription,
  invoicesOf,
  renewAndEndIncomplete,
  type SubscriptionBody,
} from '../subscription-helpers.ts'

let ctx: TestContext
const START = new Date('2025-01-15T09:00:00Z')

beforeAll(async () => {
  ctx = await createTestContext({ start: START })
})
afterAll(() => ctx.close())

describe('deactivated prices', () => {
  test('a quantity change of a subscription whose price was deactivated is scheduled (the price keeps billing)', async () => {
    ctx.clock.set(START)
    const { productId, priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const off = await ctx.patch(`/v1/products/${productId}`, { deactivate_prices: [priceId] })
    expect(off.status, off.text).toBe(200)
    // The renewal keeps billing the deactivated price (as Stripe keeps archived prices on
    // existing subscriptions) ...
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect(await invoicesOf(ctx, id)).toHaveLength(2)
    // ... and so does a seat change of that same subscription (it was refused, 400).
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, { quantity: 3 })
    expect(res.status, res.text).toBe(200)
    expect(res.body.scheduled_changes).toMatchObject([{ quantity: 3, status: 'scheduled' }])
    // A move to the retired price is still refused.
    const other = await createPlan(ctx, '20.00')
    const { id: second } = await activeSubscription(ctx, other.priceId)
    const refused = await ctx.patch<ErrorBody>(`/v1/subscriptions/${second}`, { price_id: priceId })
    expect(refused.status).toBe(400)
  })

  test('a quantity change after a move to a new price is scheduled, the old price deactivated', async () => {
    ctx.clock.set(START)
    const { productId, priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const added = await ctx.patch<{ prices: { id: string; amount: string }[] }>(
      `/v1/products/${productId}`,
      { add_prices: [{ amount: '25.00', currency: 'usd', interval: 'month' }] },
    )
    const next = added.body.prices.find((p) => p.amount === '25.00')!.id
    expect((await ctx.patch(`/v1/subscriptions/${id}`, { price_id: next })).status).toBe(200)
    // The merchant retires the old price: every subscription is moving off it.
    await ctx.patch(`/v1/products/${productId}`, { deactivate_prices: [priceId] })
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { quantity: 2 })
    expect(res.status, res.text).toBe(200)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).amount).toBe('50.00')
  })

  test('a change to a price of a deactivated product is refused, as an order of it is', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const other = await createPlan(ctx, '30.00')
    await ctx.patch(`/v1/products/${other.productId}`, { active: false })
    const customer = await createCustomer(ctx)
    const refusedOrder = await ctx.post('/v1/orders', {
      customer_id: customer.id,
      type: 'SUBSCRIPTION',
      price_id: other.priceId,
    })
    expect(refusedOrder.status).toBe(400)
    // It was accepted (200) and scheduled.
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { price_id: other.priceId })
    expect(res.status, res.text).toBe(400)
    expect(res.body.error.details).toMatchObject({ field: 'price_id' })
  })
})

describe('a worker that was down', () => {
  test('a change "at period end" made while renewals were behind does not re-price periods already served', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '10.00')
    const { id } = await activeSubscription(ctx, priceId)
    // Renewals due Feb 15 and Mar 15 never ran; on Mar 20 the merchant adds seats "at period end".
    ctx.clock.set(new Date('2025-03-20T09:00:00Z'))
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, { quantity: 5 })
    expect(res.status, res.text).toBe(200)
    await renewAndEndIncomplete(ctx)
    const invoices = await invoicesOf(ctx, id)
    expect(invoices.map((i) => i.period_start?.slice(0, 10))).toEqual([
      '2025-01-15',
      '2025-02-15',
      '2025-03-15',
    ])
    // Feb 15 – Mar 15 was served at one seat before the change was even asked for (it was
    // billed 50.00, as was the period running).
    expect(invoices.map((i) => i.amount_due)).toEqual(['10.00', '10.00', '10.00'])
  })

  test('cancel at period end asked while renewals were behind still bills the periods served', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '10.00')
    const { id } = await activeSubscription(ctx, priceId)
    ctx.clock.set(new Date('2025-03-20T09:00:00Z'))
    const res = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`, {
      at_period_end: true,
    })
    expect(res.status, res.text).toBe(200)
    // The periods served are billed first; it ends with the period running when asked.
    expect(res.body).toMatchObject({
      status: 'past_due',
      cancel_at_period_end: true,
      current_period_end: '2025-04-15T09:00:00.000Z',
    })
    await renewAndEndIncomplete(ctx)
    ctx.clock.set(new Date('2025-04-15T09:00:00Z'))
    await renewAndEndIncomplete(ctx)
    // Before, it ended at Feb 15 with one invoice: Feb 15 – Mar 20 was never billed.
    expect((await getSubscription(ctx, id)).status).toBe('canceled')
    expect((await invoicesOf(ctx, id)).map((i) => i.period_start?.slice(0, 10))).toEqual([
      '2025-01-15',
      '2025-02-15',
      '2025-03-15',
    ])
  })
  test('cancel now while renewals were behind still bills the periods that ended before it', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '10.00')
    const { id } = await activeSubscription(ctx, priceId)
    // Renewals due Feb 15 and Mar 15 never ran (worker down); cancelled on Mar 20.
    ctx.clock.set(new Date('2025-03-20T09:00:00Z'))
    const res = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`)
    expect(res.status, res.text).toBe(200)
    await renewAndEndIncomplete(ctx)
    // Had the job run, Feb 15 and Mar 15 would each have an invoice: service was given
    // (before, neither was ever billed).
    expect((await invoicesOf(ctx, id)).map((i) => i.period_start?.slice(0, 10))).toEqual([
      '2025-01-15',
      '2025-02-15',
      '2025-03-15',
    ])
  })

  test('a subscription set to cancel at the period end, the period over and the job behind: ended by the next change or cancel', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '10.00')
    const { id } = await activeSubscription(ctx, priceId)
    const atEnd = await ctx.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: true })
    expect(atEnd.status, atEnd.text).toBe(200)
    // The period ended on Feb 15; the renewal job has not run.
    ctx.clock.set(new Date('2025-02-20T09:00:00Z'))
    const patched = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { metadata: { a: 'b' } })
    // The catch-up commits the ending as the job would: it is canceled (it stayed active,
    // the 422 rolling the ending back).
    expect(patched.status).toBe(422)
    expect(await getSubscription(ctx, id)).toMatchObject({
      status: 'canceled',
      ended_at: '2025-02-15T09:00:00.000Z',
    })
    const cancelled = await ctx.post<ErrorBody>(`/v1/subscriptions/${id}/cancel`)
    expect(cancelled.status).toBe(422)
    expect(await invoicesOf(ctx, id)).toHaveLength(1)
  })
})

describe('change_at', () => {
  test('is validated whenever it is sent, and alone (no price_id or quantity) is 400', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    for (const changeAt of [
      'garbage',
      '2025-02-30',
      String(Math.floor(START.getTime() / 1000) + 86_400),
      'period_end',
    ]) {
      const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { change_at: changeAt })
      expect(res.status, res.text).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
      expect(res.body.error.details).toMatchObject({ field: 'change_at' })
    }
    // With other settings, nothing of the request applies.
    const withMetadata = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, {
      change_at: 'period_end',
      metadata: { a: 'b' },
    })
    expect(withMetadata.status, withMetadata.text).toBe(400)
    const s = await getSubscription(ctx, id)
    expect(s.scheduled_changes).toEqual([])
    expect(
      (await ctx.get<{ metadata: Record<string, string> }>(`/v1/subscriptions/${id}`)).body
        .metadata,
    ).toEqual({})
    // An invalid one with a quantity is 400 too, and one in the future schedules the change.
    const bad = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, {
      quantity: 2,
      change_at: 'garbage',
    })
    expect(bad.status, bad.text).toBe(400)
    expect(bad.body.error.details).toMatchObject({ field: 'change_at' })
    const ok = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      quantity: 2,
      change_at: '2025-02-15T09:00:00Z',
    })
    expect(ok.status, ok.text).toBe(200)
    expect(ok.body.scheduled_changes).toMatchObject([
      {
        price_id: null,
        quantity: 2,
        effective_at: '2025-02-15T09:00:00.000Z',
        status: 'scheduled',
      },
    ])
  })
})

// Last: the migrations' `up` rewrites every pending change of the database, as an upgrade does.
describe('pending changes written before migration 0015 (a quantity change carried the price of its day)', () => {
  /** A pending change as the code before 0015 wrote it: always naming a price. */
  async function oldStyleChange(
    subscriptionId: string,
    priceId: string,
    quantity: number,
    effectiveAt: Date,
    createdAt: Date,
  ) {
    const id = newId('subscriptionSchedule')
    await ctx.db
      .insertInto('subscription_schedules')
      .values({
        id,
        environment_id: ctx.scope.environmentId,
        subscription_id: subscriptionId,
        price_id: priceId,
        quantity,
        effective_at: effectiveAt,
        status: 'scheduled',
        created_at: createdAt,
      })
      .execute()
    return id
  }
  const priceOf = async (scheduleId: string) =>
    (
      await ctx.db
        .selectFrom('subscription_schedules')
        .select('price_id')
        .where('id', '=', scheduleId)
        .executeTakeFirstOrThrow()
    ).price_id

  /** The subscription once the renewal job has run at `at`. */
  async function renewedOn(subscriptionId: string, at: string) {
    ctx.clock.set(new Date(at))
    await renewAndEndIncomplete(ctx)
    return getSubscription(ctx, subscriptionId)
  }

  async function seats() {
    const product = await createProduct(ctx, {
      name: 'Seats',
      type: 'recurring',
      prices: [
        { amount: '10.00', currency: 'usd', interval: 'month' },
        { amount: '15.00', currency: 'usd', interval: 'month' },
      ],
    })
    return { p1: product.prices[0]!.id, p2: product.prices[1]!.id }
  }

  test('0020: a quantity change made before a price change that has since applied keeps the new price', async () => {
    ctx.clock.set(START)
    const { p1, p2 } = await seats()
    const { id } = await activeSubscription(ctx, p1)
    // Before the upgrade to 0015: a move to P2 at the period end (Feb 15), then 3 seats from
    // Mar 15, stored with the price of its day (P1) ...
    const move = await ctx.patch(`/v1/subscriptions/${id}`, { price_id: p2 })
    expect(move.status, move.text).toBe(200)
    const quantityOnly = await oldStyleChange(id, p1, 3, new Date('2025-03-15T09:00:00Z'), START)
    // ... and a change to P1 with 4 seats from Apr 15, made while it billed P2: the merchant's
    // choice of P1.
    ctx.clock.set(new Date('2025-02-15T09:00:00Z'))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).price_id).toBe(p2)
    const explicit = await oldStyleChange(
      id,
      p1,
      4,
      new Date('2025-04-15T09:00:00Z'),
      new Date('2025-02-20T09:00:00Z'),
    )
    // A change written after 0015 ran (the Kysely record of it is the real time of the test
    // run, after every fake date here) that names the price it bills is the merchant's choice.
    const since = await oldStyleChange(
      id,
      p2,
      5,
      new Date('2025-05-15T09:00:00Z'),
      new Date(Date.now() + 60_000),
    )

    await up0020(ctx.db as never)
    expect(await priceOf(quantityOnly)).toBeNull()
    expect(await priceOf(explicit)).toBe(p1)
    expect(await priceOf(since)).toBe(p2)

    // Mar 15: 3 seats of the price it bills (P2), not a return to P1.
    expect(await renewedOn(id, '2025-03-15T09:00:00Z')).toMatchObject({
      price_id: p2,
      quantity: 3,
      amount: '45.00',
    })
    // Apr 15: the move to P1 with 4 seats.
    expect(await renewedOn(id, '2025-04-15T09:00:00Z')).toMatchObject({
      price_id: p1,
      quantity: 4,
      amount: '40.00',
    })
    const last = await getInvoice(ctx, (await getSubscription(ctx, id)).latest_invoice_id)
    expect(last.total).toBe('40.00')
  })

  test('0015, for a database upgraded past it now: compares with the price billed when the change was made', async () => {
    ctx.clock.set(START)
    const { p1, p2 } = await seats()
    const { id } = await activeSubscription(ctx, p1)
    // On P1: 3 seats from Mar 15 (the price of its day), and a move to P2 with 2 seats from
    // Feb 15 (the merchant's choice, the price it bills once the move applies).
    const quantityOnly = await oldStyleChange(id, p1, 3, new Date('2025-03-15T09:00:00Z'), START)
    const explicit = await oldStyleChange(id, p2, 2, new Date('2025-02-15T09:00:00Z'), START)
    // And 6 seats of P2 from Apr 15, asked on Jan 20 (P2 the merchant's choice too).
    const sixOfP2 = await oldStyleChange(
      id,
      p2,
      6,
      new Date('2025-04-15T09:00:00Z'),
      new Date('2025-01-20T09:00:00Z'),
    )
    // The move to P2 applies on Feb 15, before the upgrade.
    ctx.clock.set(new Date('2025-02-15T09:00:00Z'))
    await renewAndEndIncomplete(ctx)
    expect(await getSubscription(ctx, id)).toMatchObject({ price_id: p2, quantity: 2 })

    await up0015(ctx.db as never)
    await up0020(ctx.db as never)
    // Made while it billed P1: the quantity alone.
    expect(await priceOf(quantityOnly)).toBeNull()
    // Applied already: untouched.
    expect(await priceOf(explicit)).toBe(p2)
    // Made on Jan 20 while it billed P1, naming P2 (the price it bills now): the merchant's
    // choice, kept (0015 cleared it when it compared with the price billed at the upgrade).
    expect(await priceOf(sixOfP2)).toBe(p2)

    expect(await renewedOn(id, '2025-03-15T09:00:00Z')).toMatchObject({
      price_id: p2,
      quantity: 3,
      amount: '45.00',
    })
  })
})
