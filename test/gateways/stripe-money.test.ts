import { describe, expect, test } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import { fromStripeAmount, toStripeAmount } from '../../src/gateways/stripe/stripe.money.ts'

describe("amounts in Stripe's units", () => {
  test.each([
    // currency, Payrail minor units, Stripe's
    ['usd', 1234n, 1234],
    ['jpy', 500n, 500],
    ['isk', 5000n, 500_000],
    ['mga', 500_000n, 5000],
    ['kwd', 1230n, 1230],
  ] as const)('%s %s is %s at Stripe, and back', (currency, payrail, stripe) => {
    expect(toStripeAmount(payrail, currency)).toBe(stripe)
    expect(fromStripeAmount(stripe, currency)).toBe(payrail)
  })

  test.each([
    ['mga', 500_050n, /whole units/],
    ['kwd', 1234n, /last decimal is 0/],
  ] as const)('%s %s cannot be sent exactly: a 400', (currency, amount, message) => {
    let error: unknown
    try {
      toStripeAmount(amount, currency)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(AppError)
    expect((error as AppError).status).toBe(400)
    expect((error as AppError).message).toMatch(message)
  })
})
