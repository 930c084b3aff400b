import { randomInt } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  createPayment,
  createSandboxLink,
  invoiceToPay,
  type PaymentBody,
} from '../payments-helpers.ts'

// The draws of `human_id` (src/modules/payments/service.ts), steered by each test.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>()
  return { ...actual, randomInt: vi.fn(actual.randomInt) }
})

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

/** A draw of 0 spells 222222; 1 spells 322222 (the alphabet's first and second symbols). */
const FIRST = 0
const SECOND = 1

describe('human_id', () => {
  test('a taken human_id is drawn again, and nothing of the first try stays', async () => {
    const draws = vi.mocked(randomInt) as unknown as ReturnType<typeof vi.fn>
    draws.mockReturnValueOnce(FIRST)
    const first = await invoiceToPay(ctx)
    const taken = await createPayment(ctx, {
      destination_id: first.invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(taken.status).toBe(201)
    expect((taken.body as PaymentBody).human_id).toBe('222222')

    // The next payment draws the taken id first: its transaction fails at the commit
    // that writes it, and runs again with the second draw.
    draws.mockReturnValueOnce(FIRST).mockReturnValueOnce(SECOND)
    const { invoice } = await invoiceToPay(ctx)
    const res = await createPayment(ctx, {
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '100.00',
    })
    expect(res.status).toBe(201)
    const payment = res.body as PaymentBody
    expect(payment.human_id).toBe('322222')
    expect(payment.payment_status).toBe('SUCCEEDED')

    const { rows } = await ctx.pool.query<{ payments: number; events: number; history: number }>(
      `select (select count(*)::int from payments where destination_id = $1) as payments,
              (select count(*)::int from events where object_id = $1 and type = 'invoice.paid') as events,
              (select count(*)::int from payment_transitions t join payments p on p.id = t.payment_id
                where p.destination_id = $1) as history`,
      [invoice.id],
    )
    expect(rows).toEqual([{ payments: 1, events: 1, history: 2 }])
    const paid = await ctx.get<{ amount_paid: string }>(`/v1/invoices/${invoice.id}`)
    expect(paid.body.amount_paid).toBe('100.00')
  })

  test('a payment link created on a taken human_id is drawn again too', async () => {
    const draws = vi.mocked(randomInt) as unknown as ReturnType<typeof vi.fn>
    draws.mockReturnValueOnce(SECOND).mockReturnValueOnce(2)
    const { invoice } = await invoiceToPay(ctx)
    const res = await createSandboxLink(ctx, invoice)
    expect(res.status).toBe(201)
    const link = res.body as PaymentBody
    expect(link.human_id).toBe('422222')
    expect(link.payment_status).toBe('PENDING')
    const { rows } = await ctx.pool.query<{ n: number }>(
      'select count(*)::int as n from payments where destination_id = $1',
      [invoice.id],
    )
    expect(rows).toEqual([{ n: 1 }])
  })
})
