import { describe, expect, test } from 'vitest'
import { addIntervals, periodEndAfter } from '../../src/core/billing-period.ts'

const d = (iso: string) => new Date(iso)

describe('billing periods', () => {
  test.each([
    ['2025-01-15T10:00:00Z', 'month', 1, '2025-02-15T10:00:00.000Z'],
    ['2025-01-31T00:00:00Z', 'month', 1, '2025-02-28T00:00:00.000Z'],
    ['2024-01-31T00:00:00Z', 'month', 1, '2024-02-29T00:00:00.000Z'],
    ['2025-01-31T00:00:00Z', 'month', 2, '2025-03-31T00:00:00.000Z'],
    ['2025-12-15T00:00:00Z', 'month', 1, '2026-01-15T00:00:00.000Z'],
    ['2024-02-29T00:00:00Z', 'year', 1, '2025-02-28T00:00:00.000Z'],
    ['2025-01-01T00:00:00Z', 'week', 2, '2025-01-15T00:00:00.000Z'],
    ['2025-01-01T00:00:00Z', 'day', 1, '2025-01-02T00:00:00.000Z'],
  ] as const)('%s + %s × %i = %s', (start, interval, count, end) => {
    expect(addIntervals(d(start), interval, count).toISOString()).toBe(end)
  })

  test('periods are counted from the anchor: Jan 31 → Feb 28 → Mar 31', () => {
    const anchor = d('2025-01-31T00:00:00Z')
    const first = periodEndAfter(anchor, 'month', 1, anchor)
    const second = periodEndAfter(anchor, 'month', 1, first)
    expect([first.toISOString(), second.toISOString()]).toEqual([
      '2025-02-28T00:00:00.000Z',
      '2025-03-31T00:00:00.000Z',
    ])
  })

  test('quarterly with interval_count 3', () => {
    const anchor = d('2025-01-10T00:00:00Z')
    expect(periodEndAfter(anchor, 'month', 3, anchor).toISOString()).toBe(
      '2025-04-10T00:00:00.000Z',
    )
  })
})
