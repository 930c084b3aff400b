/** Every amount is kept in units of 10⁻⁸ (satoshis for BTC), CoinPayments' precision. */
export const AMOUNT_SCALE = 100_000_000n

/** `"10.5"` → 1_050_000_000n; null when it is not a plain decimal with at most 8 places. */
export function parseAmount(text: string): bigint | null {
  const match = /^(\d+)(?:\.(\d{1,8}))?$/.exec(text)
  if (match === null) return null
  const fraction = (match[2] ?? '').padEnd(8, '0')
  return BigInt(match[1]!) * AMOUNT_SCALE + BigInt(fraction)
}

/** 1_050_000_000n → `"10.50000000"`, CoinPayments' formatting of every amount. */
export function formatAmount(units: bigint): string {
  const whole = units / AMOUNT_SCALE
  const fraction = (units % AMOUNT_SCALE).toString().padStart(8, '0')
  return `${whole}.${fraction}`
}

/** `units` × `fraction`, rounded to the nearest unit. */
export function scaleAmount(units: bigint, fraction: number): bigint {
  return (units * BigInt(Math.round(fraction * 1_000_000))) / 1_000_000n
}

/** Default USD value of one unit of each currency the emulated account accepts. */
export const DEFAULT_USD_RATES: Readonly<Record<string, number>> = {
  USD: 1,
  EUR: 1.1,
  GBP: 1.25,
  BTC: 50_000,
  LTC: 100,
  LTCT: 100,
  ETH: 2_500,
  USDT: 1,
}

/** `amount1` of `currency1` expressed in `currency2`, through the USD rates. */
export function convertAmount(
  amount1: bigint,
  currency1: string,
  currency2: string,
  usdRates: Readonly<Record<string, number>>,
): bigint | null {
  if (currency1 === currency2) return amount1
  const from = usdRates[currency1]
  const to = usdRates[currency2]
  if (from === undefined || to === undefined) return null
  const micro = (rate: number) => BigInt(Math.round(rate * 1_000_000))
  return (amount1 * micro(from)) / micro(to)
}
