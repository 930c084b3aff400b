import { describe, expect, test } from 'vitest'
import { withDeadline } from '../../src/gateways/checkout/checkout.client.ts'

describe("Checkout.com calls' deadline", () => {
  /** An SDK-shaped client: API groups whose methods read their own `this`. */
  const client = () => ({
    payments: {
      answer: 'captured',
      async request() {
        return this.answer
      },
      hang: () => new Promise<never>(() => {}),
      failSoon: () =>
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(Object.assign(new Error('refused'), { http_code: 422 })), 5),
        ),
    },
    version: 'v1',
  })

  test('a call that answers in time answers, with its group as `this`', async () => {
    const wrapped = withDeadline(client(), 200)
    expect(await wrapped.payments.request()).toBe('captured')
    expect(wrapped.version).toBe('v1')
  })

  test('a call Checkout.com never answers fails at the deadline, as an answer lost (no http_code)', async () => {
    const wrapped = withDeadline(client(), 50)
    const started = Date.now()
    const error = await wrapped.payments.hang().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/did not answer within 0.05 s/)
    expect((error as { http_code?: number }).http_code).toBeUndefined()
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  test("a call's own failure is its own", async () => {
    const wrapped = withDeadline(client(), 200)
    const error = await wrapped.payments.failSoon().catch((e: unknown) => e)
    expect((error as { http_code?: number }).http_code).toBe(422)
  })
})
