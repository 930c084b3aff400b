import type { PriceInterval } from '../db/database.ts'

/**
 * `anchor` plus `count` intervals, in UTC. Months keep the anchor's day when the
 * month has it and fall back to the month's last day otherwise (Jan 31 → Feb 28 → Mar 31),
 * because every period is counted from the anchor, not from the previous end.
 *
 * @example
 * addIntervals(new Date('2025-01-31T00:00:00Z'), 'month', 1) // 2025-02-28
 */
export function addIntervals(anchor: Date, interval: PriceInterval, count: number): Date {
  const date = new Date(anchor.getTime())
  switch (interval) {
    case 'day':
      return new Date(date.getTime() + count * 86_400_000)
    case 'week':
      return new Date(date.getTime() + count * 7 * 86_400_000)
    case 'month':
      return addMonths(date, count)
    case 'year':
      return addMonths(date, count * 12)
  }
}

function addMonths(anchor: Date, months: number): Date {
  const year = anchor.getUTCFullYear()
  const month = anchor.getUTCMonth() + months
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate()
  const day = Math.min(anchor.getUTCDate(), lastDay)
  return new Date(
    Date.UTC(
      year,
      month,
      day,
      anchor.getUTCHours(),
      anchor.getUTCMinutes(),
      anchor.getUTCSeconds(),
      anchor.getUTCMilliseconds(),
    ),
  )
}

/** The end of the period that starts at `periodStart`: the first anchor boundary after it. */
export function periodEndAfter(
  anchor: Date,
  interval: PriceInterval,
  intervalCount: number,
  periodStart: Date,
): Date {
  // Periods are short enough (≥ 1 day) that walking from the anchor stays cheap even for years of history.
  let n = 1
  let end = addIntervals(anchor, interval, intervalCount * n)
  while (end.getTime() <= periodStart.getTime()) {
    n += 1
    end = addIntervals(anchor, interval, intervalCount * n)
  }
  return end
}
