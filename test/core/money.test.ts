import { describe, expect, test } from 'vitest'
import {
  formatMinorUnits,
  minorUnitDigits,
  normalizeCurrency,
  percentOf,
  toMinorUnits,
} from '../../src/core/money.ts'

describe('money', () => {
  test.each([
    ['12.50', 'usd', 1250n],
    ['12.5', 'usd', 1250n],
    ['0.01', 'usd', 1n],
    ['100', 'usd', 10000n],
    ['1.500', 'usd', 150n],
    [12.5, 'usd', 1250n],
    [0.1, 'usd', 10n],
    ['500', 'jpy', 500n],
    ['1.234', 'bhd', 1234n],
    ['-3.00', 'eur', -300n],
    ['9999999999999.99', 'usd', 999999999999999n],
    // Numbers JavaScript writes in exponent notation, read exactly.
    [1e-2, 'usd', 1n],
    [1e-4, 'clf', 1n],
    [-2.5e-1, 'usd', -25n],
  ] as const)('toMinorUnits(%j, %s) = %s', (value, currency, minor) => {
    expect(toMinorUnits(value, currency)).toBe(minor)
  })

  test.each([
    ['1.001', 'usd'],
    ['1.5', 'jpy'],
    ['abc', 'usd'],
    ['1,00', 'usd'],
    ['', 'usd'],
    ['1e3', 'usd'],
    ['.5', 'usd'],
    ['10000000000000.01', 'usd'],
    // Below the currency's smallest unit, however small: before, a number under 5e-21 was
    // rounded to 0 (a free line) instead of being refused for its decimals.
    [1e-7, 'usd'],
    [1e-21, 'usd'],
    [-1e-21, 'usd'],
    [4e-21, 'jpy'],
    [1.5e-300, 'usd'],
    [1e21, 'usd'],
  ])('toMinorUnits(%j, %s) is a validation error', (value, currency) => {
    expect(() => toMinorUnits(value, currency)).toThrow(/amount/)
  })

  test.each([
    [1250n, 'usd', '12.50'],
    [1n, 'usd', '0.01'],
    [0n, 'usd', '0.00'],
    [-5n, 'usd', '-0.05'],
    [500n, 'jpy', '500'],
    [1234n, 'kwd', '1.234'],
    [12345n, 'clf', '1.2345'],
    [12345n, 'uyw', '1.2345'],
    [500n, 'uyi', '500'],
  ])('formatMinorUnits(%s, %s) = %s', (minor, currency, text) => {
    expect(formatMinorUnits(minor, currency)).toBe(text)
  })

  test('currencies are checked and lowercased', () => {
    expect(normalizeCurrency('USD')).toBe('usd')
    expect(() => normalizeCurrency('XYZ')).toThrow(/ISO 4217/)
    expect(minorUnitDigits('JPY')).toBe(0)
    // ISO 4217's units of account: UYI whole, CLF and UYW to four decimals.
    expect(normalizeCurrency('CLF')).toBe('clf')
    expect(normalizeCurrency('uyw')).toBe('uyw')
    expect(minorUnitDigits('UYI')).toBe(0)
    expect(minorUnitDigits('CLF')).toBe(4)
    expect(toMinorUnits('1.2345', 'clf')).toBe(12345n)
    expect(() => toMinorUnits('1.5', 'uyi')).toThrow(/decimals/)
  })

  test('percentOf rounds half up in minor units', () => {
    expect(percentOf(1000n, 1250n)).toBe(125n)
    expect(percentOf(999n, 5000n)).toBe(500n)
    expect(percentOf(1n, 3333n)).toBe(0n)
  })
})
