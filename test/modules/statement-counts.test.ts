import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { createTestContext, type TestContext } from '../harness.ts'
import { createPayment, invoiceToPay } from '../payments-helpers.ts'

/**
 * The round trips of the hot paths, as docs/architecture.md and docs/performance.md count
 * them: a change that adds a statement to one of them shows here first.
 */
let ctx: TestContext

beforeAll(async () => {
  ctx = await createTestContext()
  // The key is then served from the process's cache.
  for (let i = 0; i < 200 && !ctx.deps.apiKeys?.live; i++)
    await new Promise((r) => setTimeout(r, 10))
  expect((await ctx.get('/v1/payments?limit=1')).status).toBe(200)
})
afterAll(() => ctx.close())

async function statementsOf(run: () => Promise<unknown>): Promise<string[]> {
  const texts: string[] = []
  const original = pg.Client.prototype.query
  const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
    this: pg.Client,
    ...args: unknown[]
  ) {
    const [first] = args
    const text = typeof first === 'string' ? first : String((first as { text: string }).text)
    texts.push(text.replace(/\s+/g, ' ').trim().slice(0, 60))
    return Reflect.apply(original, this, args)
  } as never)
  try {
    await run()
  } finally {
    spy.mockRestore()
  }
  return texts
}

describe('statements per request', () => {
  // The invoice's lines are already in this process's cache (it wrote them); cold, add one read.
  test('an OFFLINE payment of an invoice in full: 6, in one transaction', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const texts = await statementsOf(async () => {
      const res = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'OFFLINE',
        amount: invoice.amount_due,
      })
      expect(res.status).toBe(201)
      expect(res.body.payment_status).toBe('SUCCEEDED')
    })
    expect(texts.filter((t) => t === 'begin')).toHaveLength(1)
    expect(texts.filter((t) => t === 'commit')).toHaveLength(1)
    expect(texts, texts.join('\n')).toHaveLength(6)
  })

  test('a sandbox PAYMENT_LINK: 12, in two transactions around the gateway call', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const texts = await statementsOf(async () => {
      const res = await createPayment(ctx, {
        destination_id: invoice.id,
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: 'sandbox',
        amount: invoice.amount_due,
      })
      expect(res.status).toBe(201)
      expect(res.body.payment_url).toMatch(/^http/)
    })
    expect(texts.filter((t) => t === 'begin')).toHaveLength(2)
    expect(texts, texts.join('\n')).toHaveLength(12)
  })

  test('GET /v1/payments: 1', async () => {
    const texts = await statementsOf(async () => {
      const res = await ctx.get('/v1/payments?status=SUCCEEDED&limit=50')
      expect(res.status).toBe(200)
    })
    expect(texts, texts.join('\n')).toHaveLength(1)
  })
})
