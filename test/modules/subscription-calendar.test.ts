// Subscriptions over time, against the clock: periods across month ends and leap years,
// scheduled changes, status moves, cancels and renewals billed as Stripe Billing would.
/** Bug hunt: subscriptions after creation (changes, cancels, renewals, periods). */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer, createProduct, eventsOf, type List, payInvoice } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import { getInvoice } from '../payments-helpers.ts'
import {
  activeSubscription,
  createPlan,
  getSubscription,
  invoicesOf,
  orderSubscription,
  renewAndEndIncomplete,
  type SubscriptionBody,
} from '../subscription-helpers.ts'

let ctx: TestContext
const START = new Date('2025-01-31T10:00:00Z')

beforeAll(async () => {
  ctx = await createTestContext({ start: START })
})
afterAll(() => ctx.close())

describe('periods', () => {
  test('a monthly plan from Jan 31 ends its periods Feb 28, Mar 31, Apr 30, May 31, one invoice each', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx)
    const { id } = await activeSubscription(ctx, priceId)
    const ends = [(await getSubscription(ctx, id)).current_period_end]
    for (let i = 0; i < 3; i++) {
      ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
      await renewAndEndIncomplete(ctx)
      ends.push((await getSubscription(ctx, id)).current_period_end)
    }
    expect(ends).toEqual([
      '2025-02-28T10:00:00.000Z',
      '2025-03-31T10:00:00.000Z',
      '2025-04-30T10:00:00.000Z',
      '2025-05-31T10:00:00.000Z',
    ])
    expect((await invoicesOf(ctx, id)).map((i) => i.total)).toEqual([
      '20.00',
      '20.00',
      '20.00',
      '20.00',
    ])
  })

  test('interval_count 3 from Nov 30 2023 -> Feb 29 2024 -> May 30', async () => {
    const start = new Date('2023-11-30T00:00:00Z')
    ctx.clock.set(start)
    const { priceId } = await createPlan(ctx, '30.00', 'month', { interval_count: 3 })
    const { id } = await activeSubscription(ctx, priceId)
    expect((await getSubscription(ctx, id)).current_period_end).toBe('2024-02-29T00:00:00.000Z')
    ctx.clock.set(new Date('2024-02-29T00:00:00Z'))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).current_period_end).toBe('2024-05-30T00:00:00.000Z')
  })
})

describe('changes', () => {
  test('price and quantity changes apply at the period end, renewal invoice billed with them', async () => {
    ctx.clock.set(START)
    const product = await createProduct(ctx, {
      name: 'Seats',
      type: 'recurring',
      prices: [
        { amount: '10.00', currency: 'usd', interval: 'month' },
        { amount: '15.00', currency: 'usd', interval: 'month' },
      ],
    })
    const [p1, p2] = product.prices
    const { id } = await activeSubscription(ctx, p1!.id, { order: { quantity: 2 } })
    const a = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, { price_id: p2!.id })
    expect(a.status, a.text).toBe(200)
    const b = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, { quantity: 3 })
    expect(b.status, b.text).toBe(200)
    expect((await getSubscription(ctx, id)).amount).toBe('20.00')
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, id)
    expect(s.price_id).toBe(p2!.id)
    expect(s.quantity).toBe(3)
    expect(s.amount).toBe('45.00')
    const inv = await getInvoice(ctx, s.latest_invoice_id)
    expect(inv.total).toBe('45.00')
    expect(s.scheduled_changes.every((c) => c.status === 'applied')).toBe(true)
  })

  test('PATCH with an unknown price is 404 not_found and schedules nothing', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx)
    const { id } = await activeSubscription(ctx, priceId)
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, { price_id: 'price_nope' })
    expect(res.status, res.text).toBe(404)
    expect(res.body.error.code).toBe('not_found')
    const s = await getSubscription(ctx, id)
    expect(s.price_id).toBe(priceId)
    expect(s.scheduled_changes).toEqual([])
  })

  test('PATCH with an invalid change_at is 400 and schedules nothing', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx)
    const { id } = await activeSubscription(ctx, priceId)
    const res = await ctx.patch<ErrorBody>(`/v1/subscriptions/${id}`, {
      quantity: 2,
      change_at: 'tomorrow-ish',
    })
    expect(res.status, res.text).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect((await getSubscription(ctx, id)).scheduled_changes).toEqual([])
  })
})

describe('zero totals', () => {
  test('a subscription order paid by a 100% code is active', async () => {
    ctx.clock.set(START)
    const code = `FREE${Date.now()}`
    const d = await ctx.post('/v1/discounts', { code, percent_off: 100 })
    expect(d.status, d.text).toBe(201)
    const { priceId } = await createPlan(ctx)
    const cid = (await createCustomer(ctx)).id
    const o = await orderSubscription(ctx, cid, priceId, { discount_code: code })
    const s = await getSubscription(ctx, o.subscription_id)
    expect(s.status).toBe('active')
    expect(s.started_at).not.toBeNull()
    expect(await getInvoice(ctx, o.invoice_id)).toMatchObject({
      total: '0.00',
      payment_status: 'SUCCEEDED',
    })
  })

  test('a free plan renews, its 0.00 renewal invoice paid, and stays active', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '0.00')
    const cid = (await createCustomer(ctx)).id
    const o = await orderSubscription(ctx, cid, priceId)
    expect((await getSubscription(ctx, o.subscription_id)).status).toBe('active')
    ctx.clock.set(new Date((await getSubscription(ctx, o.subscription_id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, o.subscription_id)
    expect(s.status).toBe('active')
    expect(s.latest_invoice_id).not.toBe(o.invoice_id)
    const inv = await getInvoice(ctx, s.latest_invoice_id)
    expect(inv.total).toBe('0.00')
    expect(inv.payment_status).toBe('SUCCEEDED')
  })
})

describe('cancel', () => {
  test('cancel at period end ends at renewal, no new invoice, one subscription.canceled', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx)
    const { id } = await activeSubscription(ctx, priceId)
    const res = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`, {
      at_period_end: true,
    })
    expect(res.status, res.text).toBe(200)
    expect(res.body.status).toBe('active')
    const end = res.body.current_period_end
    ctx.clock.set(new Date(end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, id)
    expect(s.status).toBe('canceled')
    expect(s.ended_at).toBe(end)
    expect(await invoicesOf(ctx, id)).toHaveLength(1)
    expect(await eventsOf(ctx, id, 'subscription.canceled')).toHaveLength(1)
    const again = await ctx.post<ErrorBody>(`/v1/subscriptions/${id}/cancel`, {})
    expect(again.status).toBe(422)
  })
})

describe('status, periods and scheduled changes over time', () => {
  test('past_due after an unpaid renewal, active once everything is paid', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).status).toBe('active')
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, id)
    expect(s.status).toBe('past_due')
    const invs = await invoicesOf(ctx, id)
    expect(invs).toHaveLength(3)
    // pay the latest first: still past_due
    await payInvoice(ctx, s.latest_invoice_id, 2000n)
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    const older = invs.find(
      (i) => i.payment_status !== 'SUCCEEDED' && i.id !== s.latest_invoice_id,
    )!
    await payInvoice(ctx, older.id, 2000n)
    expect((await getSubscription(ctx, id)).status).toBe('active')
  })

  test('weekly and Feb 29 yearly periods', async () => {
    ctx.clock.set(new Date('2024-02-29T12:00:00Z'))
    const { priceId } = await createPlan(ctx, '100.00', 'year')
    const { id } = await activeSubscription(ctx, priceId)
    expect((await getSubscription(ctx, id)).current_period_end).toBe('2025-02-28T12:00:00.000Z')
    ctx.clock.set(new Date('2028-03-01T00:00:00Z'))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, id)
    expect(s.current_period_start).toBe('2028-02-29T12:00:00.000Z')
    expect(s.current_period_end).toBe('2029-02-28T12:00:00.000Z')
    expect(await invoicesOf(ctx, id)).toHaveLength(5)
    ctx.clock.set(START)
    const w = await createPlan(ctx, '5.00', 'week', { interval_count: 2 })
    const { id: wid } = await activeSubscription(ctx, w.priceId)
    expect((await getSubscription(ctx, wid)).current_period_end).toBe('2025-02-14T10:00:00.000Z')
  })

  test('late first payment restarts the periods', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const cid = (await createCustomer(ctx)).id
    const o = await orderSubscription(ctx, cid, priceId)
    const late = new Date('2025-03-10T00:00:00Z')
    ctx.clock.set(late)
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, o.subscription_id)).status).toBe('incomplete')
    await payInvoice(ctx, o.invoice_id, 2000n)
    const s = await getSubscription(ctx, o.subscription_id)
    expect(s.status).toBe('active')
    expect(s.current_period_start).toBe(late.toISOString())
    expect(s.current_period_end).toBe('2025-04-10T00:00:00.000Z')
    await renewAndEndIncomplete(ctx)
    expect(await invoicesOf(ctx, o.subscription_id)).toHaveLength(1)
  })

  test('change_at after the period end applies at the renewal after it', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const res = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      quantity: 4,
      change_at: '2025-03-15T00:00:00Z',
    })
    expect(res.status, res.text).toBe(200)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).amount).toBe('20.00')
    // Feb 28 -> Mar 31 starts before Mar 15: old amount; Mar 31 renewal is the first on or after it.
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, id)).amount).toBe('80.00')
  })

  test('cancel_scheduled_changes cancels a pending quantity change: the renewal bills the old amount', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const change = await ctx.patch(`/v1/subscriptions/${id}`, { quantity: 4 })
    expect(change.status, change.text).toBe(200)
    const r = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${id}`, {
      cancel_scheduled_changes: true,
    })
    expect(r.status, r.text).toBe(200)
    expect(r.body.scheduled_changes.map((c) => [c.quantity, c.status])).toEqual([[4, 'cancelled']])
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const renewed = await getSubscription(ctx, id)
    expect(renewed.quantity).toBe(1)
    expect(renewed.amount).toBe('20.00')
    expect((await getInvoice(ctx, renewed.latest_invoice_id)).total).toBe('20.00')
  })

  test('cancel now leaves the unpaid renewal invoice open; one subscription.renewed, one subscription.canceled', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, id)
    const r = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${id}/cancel`)
    expect(r.status, r.text).toBe(200)
    expect(r.body.status).toBe('canceled')
    const inv = await getInvoice(ctx, s.latest_invoice_id)
    expect(inv.invoice_status).toBe('FINALIZED')
    expect(inv.amount_remaining).toBe('20.00')
    expect(await eventsOf(ctx, id, 'subscription.renewed')).toHaveLength(1)
    expect(await eventsOf(ctx, id, 'subscription.canceled')).toHaveLength(1)
  })

  test('the list filters by status and sorts by -current_period_end; an unknown status or sort is 400', async () => {
    // A past_due subscription to find: its second renewal finds the first unpaid.
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    for (let i = 0; i < 2; i++) {
      ctx.clock.set(new Date((await getSubscription(ctx, id)).current_period_end))
      await renewAndEndIncomplete(ctx)
    }
    expect((await getSubscription(ctx, id)).status).toBe('past_due')
    const res = await ctx.get<List<SubscriptionBody>>(
      '/v1/subscriptions?status=past_due&sort=-current_period_end&limit=100',
    )
    expect(res.status, res.text).toBe(200)
    expect(res.body.items.map((s) => s.id)).toContain(id)
    for (const s of res.body.items) expect(s.status).toBe('past_due')
    const ends = res.body.items.map((s) => s.current_period_end)
    expect(ends).toEqual([...ends].sort().reverse())
    const bad = await ctx.get<ErrorBody>('/v1/subscriptions?status=weird')
    expect(bad.status).toBe(400)
    const bad2 = await ctx.get<ErrorBody>('/v1/subscriptions?sort=amount')
    expect(bad2.status).toBe(400)
    const dated = await ctx.get<ErrorBody>('/v1/subscriptions?from_date=2025-01-01')
    expect(dated.status, dated.text).toBe(200)
  })
})

describe('cancels, currencies and incomplete subscriptions', () => {
  test('cancel with an Idempotency-Key replays the first response', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const { id } = await activeSubscription(ctx, priceId)
    const key = `cancel-${id}`
    const a = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${id}/cancel`,
      {},
      { idempotencyKey: key },
    )
    const b = await ctx.post<SubscriptionBody>(
      `/v1/subscriptions/${id}/cancel`,
      {},
      { idempotencyKey: key },
    )
    expect(a.status).toBe(200)
    expect(b.status, b.text).toBe(200)
    expect(b.body).toEqual(a.body)
  })

  test('BHD bills in 3 decimals: 3 × 1.234 is 3.702, a change to 5 renews at 6.170', async () => {
    ctx.clock.set(START)
    const product = await createProduct(ctx, {
      name: 'BHD',
      type: 'recurring',
      prices: [{ amount: '1.234', currency: 'bhd', interval: 'month' }],
    })
    const cid = (await createCustomer(ctx)).id
    const o = await orderSubscription(ctx, cid, product.prices[0]!.id, { quantity: 3 })
    const inv = await getInvoice(ctx, o.invoice_id)
    expect(inv.total).toBe('3.702')
    await payInvoice(ctx, inv.id, 3702n)
    expect((await getSubscription(ctx, o.subscription_id)).amount).toBe('3.702')
    const change = await ctx.patch(`/v1/subscriptions/${o.subscription_id}`, { quantity: 5 })
    expect(change.status, change.text).toBe(200)
    ctx.clock.set(new Date((await getSubscription(ctx, o.subscription_id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    const s = await getSubscription(ctx, o.subscription_id)
    expect(s.amount).toBe('6.170')
    expect((await getInvoice(ctx, s.latest_invoice_id)).total).toBe('6.170')
  })

  test('incomplete + quantity change, paid on time, renewal bills it; one canceled event on cancel of incomplete', async () => {
    ctx.clock.set(START)
    const { priceId } = await createPlan(ctx, '20.00')
    const cid = (await createCustomer(ctx)).id
    const o = await orderSubscription(ctx, cid, priceId)
    const p = await ctx.patch<SubscriptionBody>(`/v1/subscriptions/${o.subscription_id}`, {
      quantity: 2,
      change_at: String(Math.floor(START.getTime() / 1000) + 86400),
    })
    expect(p.status, p.text).toBe(200)
    await payInvoice(ctx, o.invoice_id, 2000n)
    ctx.clock.set(new Date((await getSubscription(ctx, o.subscription_id)).current_period_end))
    await renewAndEndIncomplete(ctx)
    expect((await getSubscription(ctx, o.subscription_id)).amount).toBe('40.00')

    ctx.clock.set(START)
    const o2 = await orderSubscription(ctx, cid, priceId)
    const c = await ctx.post<SubscriptionBody>(`/v1/subscriptions/${o2.subscription_id}/cancel`)
    expect(c.status, c.text).toBe(200)
    expect(c.body.status).toBe('canceled')
    expect(await eventsOf(ctx, o2.subscription_id, 'subscription.canceled')).toHaveLength(1)
    expect((await getInvoice(ctx, o2.invoice_id)).invoice_status).toBe('VOIDED')
  })
})
