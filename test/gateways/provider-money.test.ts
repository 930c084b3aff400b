import { describe, expect, test } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import { fromCheckoutAmount, toCheckoutAmount } from '../../src/gateways/checkout/checkout.money.ts'
import { fromStripeAmount, toStripeAmount } from '../../src/gateways/stripe/stripe.money.ts'

type Exact = readonly [string, bigint, number]
type Refused = readonly [string, bigint, RegExp]

/** Each provider's conversion: amounts there and back, and amounts it cannot take. */
const PROVIDERS: {
  name: string
  to: (amount: bigint, currency: string) => number
  from: (amount: number, currency: string) => bigint
  exact: Exact[]
  refused: Refused[]
}[] = [
  {
    name: 'Stripe',
    to: toStripeAmount,
    from: fromStripeAmount,
    // currency, Payrail minor units, the provider's
    exact: [
      ['usd', 1234n, 1234],
      ['jpy', 500n, 500],
      ['isk', 5000n, 500_000],
      ['mga', 500_000n, 5000],
      ['kwd', 1230n, 1230],
    ],
    refused: [
      ['mga', 500_050n, /whole units/],
      ['kwd', 1234n, /last decimal is 0/],
    ],
  },
  {
    name: 'Checkout.com',
    to: toCheckoutAmount,
    from: fromCheckoutAmount,
    exact: [
      ['usd', 1234n, 1234],
      ['jpy', 500n, 500],
      ['isk', 5000n, 5000],
      ['clp', 5000n, 500_000],
      ['uyi', 70n, 7000],
      ['kwd', 1230n, 1230],
      ['clf', 12_300n, 123],
    ],
    refused: [
      ['bhd', 1234n, /last decimal is 0/],
      ['clf', 12_345n, /with 2 decimals/],
      ['usd', 1_000_000_000n, /at most 999999999/],
    ],
  },
]

describe.each(PROVIDERS)("amounts in $name's units", ({ name, to, from, exact, refused }) => {
  test.each(exact)(`%s %s is %s at ${name}, and back`, (currency, payrail, provider) => {
    expect(to(payrail, currency)).toBe(provider)
    expect(from(provider, currency)).toBe(payrail)
  })

  test.each(refused)('%s %s cannot be sent exactly: a 400', (currency, amount, message) => {
    let error: unknown
    try {
      to(amount, currency)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(AppError)
    expect((error as AppError).status).toBe(400)
    expect((error as AppError).message).toMatch(message)
  })
})
