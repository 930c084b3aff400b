import {
  fromProviderAmount,
  minorUnitDigits,
  type ProviderUnits,
  toProviderAmount,
  ZERO_DECIMAL_CURRENCIES,
} from '../../core/money.ts'

/**
 * Currencies Stripe's API takes in whole units (its zero-decimal list): Payrail's, but
 * ISK (`STRIPE_TWO_DECIMAL_WHOLE`), and with MGA, which ISO 4217 gives two decimals.
 */
const STRIPE_ZERO_DECIMAL: ReadonlySet<string> = new Set([
  // UYI is not one of Stripe's currencies: left out, Stripe refuses it as it does any other.
  ...[...ZERO_DECIMAL_CURRENCIES].filter((currency) => currency !== 'isk' && currency !== 'uyi'),
  'mga',
])
/**
 * Zero-decimal currencies Stripe's API still takes as two-decimal amounts, always ending
 * in 00 (its special case: 5 ISK is `500`).
 */
const STRIPE_TWO_DECIMAL_WHOLE: ReadonlySet<string> = new Set(['isk'])

const STRIPE_UNITS: ProviderUnits = {
  name: 'Stripe',
  digits(currency) {
    if (STRIPE_TWO_DECIMAL_WHOLE.has(currency)) return 2
    if (STRIPE_ZERO_DECIMAL.has(currency)) return 0
    return minorUnitDigits(currency)
  },
}

/**
 * A Payrail amount (minor units of ISO 4217) as Stripe's API takes it: ISK times 100, MGA
 * in whole ariary, three-decimal currencies with their last digit 0 (Stripe's rule). An
 * amount Stripe cannot take exactly is a 400, before anything is asked of Stripe.
 */
export function toStripeAmount(amount: bigint, currency: string): number {
  return Number(toProviderAmount(STRIPE_UNITS, amount, currency))
}

/** An amount Stripe reports (its API's units) in Payrail's minor units. */
export function fromStripeAmount(amount: number, currency: string): bigint {
  return fromProviderAmount(STRIPE_UNITS, amount, currency)
}
