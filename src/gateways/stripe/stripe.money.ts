import { validationError } from '../../core/errors.ts'
import { formatMinorUnits, minorUnitDigits, ZERO_DECIMAL_CURRENCIES } from '../../core/money.ts'

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

/** How many decimals Stripe's API amounts have in `currency`. */
function stripeDigits(currency: string): number {
  if (STRIPE_TWO_DECIMAL_WHOLE.has(currency)) return 2
  if (STRIPE_ZERO_DECIMAL.has(currency)) return 0
  return minorUnitDigits(currency)
}

/**
 * A Payrail amount (minor units of ISO 4217) as Stripe's API takes it: ISK times 100, MGA
 * in whole ariary, three-decimal currencies with their last digit 0 (Stripe's rule). An
 * amount Stripe cannot take exactly is a 400, before anything is asked of Stripe.
 */
export function toStripeAmount(amount: bigint, currency: string): number {
  const shift = stripeDigits(currency) - minorUnitDigits(currency)
  const scale = 10n ** BigInt(Math.abs(shift))
  if (shift < 0 && amount % scale !== 0n) {
    throw validationError(
      `Stripe takes ${currency.toUpperCase()} in whole units: ${formatMinorUnits(amount, currency)} has a fraction`,
      { field: 'amount', currency },
    )
  }
  const stripe = shift >= 0 ? amount * scale : amount / scale
  if (stripeDigits(currency) === 3 && stripe % 10n !== 0n) {
    throw validationError(
      `Stripe takes ${currency.toUpperCase()} amounts whose last decimal is 0: ${formatMinorUnits(amount, currency)} is not one`,
      { field: 'amount', currency },
    )
  }
  return Number(stripe)
}

/** An amount Stripe reports (its API's units) in Payrail's minor units. */
export function fromStripeAmount(amount: number, currency: string): bigint {
  const lower = currency.toLowerCase()
  const shift = stripeDigits(lower) - minorUnitDigits(lower)
  const scale = 10n ** BigInt(Math.abs(shift))
  const value = BigInt(amount)
  return shift >= 0 ? value / scale : value * scale
}
