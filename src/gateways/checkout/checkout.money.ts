import {
  fromProviderAmount,
  type ProviderUnits,
  THREE_DECIMAL_CURRENCIES,
  toProviderAmount,
  ZERO_DECIMAL_CURRENCIES,
} from '../../core/money.ts'

/**
 * Currencies Checkout.com's API takes as the full amount
 * (https://www.checkout.com/docs/payments/accept-payments/format-the-amount-value): Payrail's
 * whole-unit currencies but CLP and UYI. Every other currency but the three-decimal ones is
 * in hundredths, whatever ISO 4217 says: 5,000 CLP is `500000`, and CLF (four decimals in
 * ISO 4217) is in hundredths too.
 */
const CHECKOUT_FULL_AMOUNT: ReadonlySet<string> = new Set(
  [...ZERO_DECIMAL_CURRENCIES].filter((currency) => currency !== 'clp' && currency !== 'uyi'),
)

const CHECKOUT_UNITS: ProviderUnits = {
  name: 'Checkout.com',
  digits(currency) {
    if (CHECKOUT_FULL_AMOUNT.has(currency)) return 0
    if (THREE_DECIMAL_CURRENCIES.has(currency)) return 3
    return 2
  },
  // "Not contain more than nine digits."
  max: 999_999_999n,
}

/**
 * A Payrail amount (minor units of ISO 4217) as Checkout.com's API takes it: the full
 * amount, thousandths whose last digit is 0, or hundredths. One Checkout.com cannot take
 * exactly, or past nine digits, is a 400, before anything is asked of Checkout.com.
 */
export function toCheckoutAmount(amount: bigint, currency: string): number {
  return Number(toProviderAmount(CHECKOUT_UNITS, amount, currency))
}

/** An amount Checkout.com reports (its API's units) in Payrail's minor units. */
export function fromCheckoutAmount(amount: number, currency: string): bigint {
  return fromProviderAmount(CHECKOUT_UNITS, amount, currency)
}
