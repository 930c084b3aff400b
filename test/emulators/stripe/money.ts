/** `1099, 'usd'` → `$10.99`: minor units shown the way Stripe's error messages show them. */
export function formatMinorUnits(amount: number, currency: string): string {
  const format = currencyFormat(currency)
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2
  return format.format(amount / 10 ** digits)
}

function currencyFormat(currency: string): Intl.NumberFormat {
  try {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() })
  } catch {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' })
  }
}

/**
 * The smallest charge Stripe accepts per settlement currency, in minor units
 * (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts); 50 elsewhere.
 */
const MINIMUM_CHARGE: Readonly<Record<string, number>> = {
  usd: 50,
  aed: 200,
  aud: 50,
  bgn: 100,
  brl: 50,
  cad: 50,
  chf: 50,
  czk: 1500,
  dkk: 250,
  eur: 50,
  gbp: 30,
  hkd: 400,
  huf: 17500,
  inr: 50,
  jpy: 50,
  mxn: 1000,
  myr: 200,
  nok: 300,
  nzd: 50,
  pln: 200,
  ron: 200,
  sek: 300,
  sgd: 50,
  thb: 1000,
}

export function minimumChargeAmount(currency: string): number {
  return MINIMUM_CHARGE[currency] ?? 50
}
