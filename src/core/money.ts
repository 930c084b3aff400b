import { validationError } from './errors.ts'

/** An amount in the currency's minor units (cents, yen, fils) with its lowercase ISO 4217 code. */
export interface Money {
  amount: bigint
  currency: string
}

/**
 * Currencies Payrail keeps in whole units (ISO 4217 exponent 0). A gateway whose API counts
 * otherwise converts at its edge (`ProviderUnits`: Stripe's `stripe.money.ts`, Checkout.com's
 * `checkout.money.ts`).
 */
export const ZERO_DECIMAL_CURRENCIES: ReadonlySet<string> = new Set([
  'bif',
  'clp',
  'djf',
  'gnf',
  'isk',
  'jpy',
  'kmf',
  'krw',
  'pyg',
  'rwf',
  'ugx',
  'uyi',
  'vnd',
  'vuv',
  'xaf',
  'xof',
  'xpf',
])
/** ISO 4217 currencies with three decimals. */
export const THREE_DECIMAL_CURRENCIES: ReadonlySet<string> = new Set([
  'bhd',
  'iqd',
  'jod',
  'kwd',
  'lyd',
  'omr',
  'tnd',
])
/** ISO 4217 currencies with four decimals (units of account: Chile's UF, Uruguay's UW). */
export const FOUR_DECIMAL_CURRENCIES: ReadonlySet<string> = new Set(['clf', 'uyw'])
/** ISO 4217's codes as ICU lists them, and its units of account some ICU builds leave out. */
const KNOWN = new Set([
  ...Intl.supportedValuesOf('currency').map((code) => code.toLowerCase()),
  'clf',
  'uyi',
  'uyw',
])

export function isCurrency(code: string): boolean {
  return KNOWN.has(code.toLowerCase())
}

/** Lowercases and checks an ISO 4217 code; a 400 names the field otherwise. */
export function normalizeCurrency(code: string, field = 'currency'): string {
  const lower = code.trim().toLowerCase()
  if (!KNOWN.has(lower))
    throw validationError(`${field} must be an ISO 4217 currency code, got '${code}'`, { field })
  return lower
}

export function minorUnitDigits(currency: string): number {
  const lower = currency.toLowerCase()
  if (ZERO_DECIMAL_CURRENCIES.has(lower)) return 0
  if (THREE_DECIMAL_CURRENCIES.has(lower)) return 3
  if (FOUR_DECIMAL_CURRENCIES.has(lower)) return 4
  return 2
}

/**
 * Parses a decimal amount from the API edge into minor units, exactly (no floats).
 * Numbers are accepted as Flexprice clients send them, but must not carry more
 * precision than the currency has.
 *
 * @example
 * toMinorUnits('12.50', 'usd') // 1250n
 * toMinorUnits('500', 'jpy')   // 500n
 */
export function toMinorUnits(value: string | number, currency: string, field = 'amount'): bigint {
  const text = typeof value === 'number' ? numberToPlainString(value) : value.trim()
  const match = /^(-)?(\d+)(?:\.(\d+))?$/.exec(text)
  if (!match)
    throw validationError(
      `${field} must be a decimal number like "12.50", got '${String(value)}'`,
      { field },
    )
  const [, sign, whole = '0', fraction = ''] = match
  const digits = minorUnitDigits(currency)
  const significant = fraction.replace(/0+$/, '')
  if (significant.length > digits) {
    throw validationError(
      `${field} has more decimals than ${currency.toUpperCase()} allows (${digits})`,
      {
        field,
        decimals: digits,
      },
    )
  }
  const minor = BigInt(whole + fraction.padEnd(digits, '0').slice(0, digits))
  return assertWithinLimit(sign ? -minor : minor, field)
}

/**
 * Formats minor units as the decimal string the API returns.
 *
 * @example
 * formatMinorUnits(1250n, 'usd') // '12.50'
 */
export function formatMinorUnits(amount: bigint, currency: string): string {
  const digits = minorUnitDigits(currency)
  const negative = amount < 0n
  const abs = (negative ? -amount : amount).toString()
  if (digits === 0) return `${negative ? '-' : ''}${abs}`
  const padded = abs.padStart(digits + 1, '0')
  return `${negative ? '-' : ''}${padded.slice(0, -digits)}.${padded.slice(-digits)}`
}

/**
 * The largest amount Payrail takes, in minor units (10^15: ten trillion dollars),
 * so sums of lines and quantities stay far inside PostgreSQL's bigint.
 */
export const MAX_MINOR_AMOUNT = 10n ** 15n

/** Refuses an amount beyond `MAX_MINOR_AMOUNT` with a 400 naming the field. */
export function assertWithinLimit(amount: bigint, field = 'amount'): bigint {
  if (amount > MAX_MINOR_AMOUNT || amount < -MAX_MINOR_AMOUNT) {
    throw validationError(`${field} is larger than Payrail accepts`, {
      field,
      max_minor_units: String(MAX_MINOR_AMOUNT),
    })
  }
  return amount
}

/** `amount × percent / 100`, rounded half up, with percent given to two decimals (12.5 → 1250 hundredths). */
export function percentOf(amount: bigint, percentHundredths: bigint): bigint {
  return (amount * percentHundredths + 5000n) / 10000n
}

/**
 * The number as the client wrote it (JavaScript's shortest round-trip form), in plain
 * notation: `1e-7` → `0.0000001`, `1.5e21` → `1500000000000000000000`. Exactly: rounding to a
 * fixed number of decimals made `1e-21` a free `0`, not a 400 for its decimals.
 */
function numberToPlainString(value: number): string {
  const text = String(value)
  const match = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text)
  if (!match) return text
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = match
  const digits = whole + fraction
  const point = whole.length + Number(exponent)
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`
}

/**
 * How a provider's API counts an amount: its decimals in each currency, which may differ
 * from ISO 4217's (Stripe takes ISK times 100, Checkout.com CLP times 100), and the largest
 * amount it takes, if it says.
 */
export interface ProviderUnits {
  /** The provider's name, for the 400 of an amount it cannot take. */
  name: string
  digits(currency: string): number
  max?: bigint
}

/**
 * A Payrail amount (minor units of ISO 4217) in a provider's units. One the provider
 * cannot take exactly (a fraction of its unit, a three-decimal amount whose last digit is
 * not 0, which Stripe and Checkout.com both refuse, or past its largest) is a 400, before
 * anything is asked of the provider.
 */
export function toProviderAmount(units: ProviderUnits, amount: bigint, currency: string): bigint {
  const digits = units.digits(currency)
  const shift = digits - minorUnitDigits(currency)
  const scale = 10n ** BigInt(Math.abs(shift))
  const shown = () => `${formatMinorUnits(amount, currency)} ${currency.toUpperCase()}`
  if (shift < 0 && amount % scale !== 0n) {
    throw validationError(
      `${units.name} takes ${currency.toUpperCase()} ${digits === 0 ? 'in whole units' : `with ${digits} decimals`}: ${shown()} has more`,
      { field: 'amount', currency },
    )
  }
  const converted = shift >= 0 ? amount * scale : amount / scale
  if (digits === 3 && converted % 10n !== 0n) {
    throw validationError(
      `${units.name} takes ${currency.toUpperCase()} amounts whose last decimal is 0: ${shown()} is not one`,
      { field: 'amount', currency },
    )
  }
  if (units.max !== undefined && converted > units.max) {
    throw validationError(
      `${units.name} takes at most ${units.max} in its units: ${shown()} is more`,
      {
        field: 'amount',
        currency,
      },
    )
  }
  return converted
}

/** An amount a provider reports (in its units) in Payrail's minor units. */
export function fromProviderAmount(
  units: ProviderUnits,
  amount: number | bigint,
  currency: string,
): bigint {
  const lower = currency.toLowerCase()
  const shift = units.digits(lower) - minorUnitDigits(lower)
  const scale = 10n ** BigInt(Math.abs(shift))
  const value = BigInt(amount)
  return shift >= 0 ? value / scale : value * scale
}
