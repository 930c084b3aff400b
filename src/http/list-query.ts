import { type Static, type TProperties, Type } from 'typebox'
import { validationError } from '../core/errors.ts'
import { type Page, PaginationQuery, pageFrom } from './pagination.ts'

/** The query every list accepts: both pagination styles, a creation-date range and a sort. */
export const ListQueryFields = {
  ...PaginationQuery.properties,
  from_date: Type.Optional(
    Type.String({ description: 'Created at or after: unix seconds or ISO 8601' }),
  ),
  to_date: Type.Optional(
    Type.String({ description: 'Created at or before: unix seconds or ISO 8601' }),
  ),
  sort: Type.Optional(Type.String({ description: 'Field to sort by; `-field` for descending' })),
}

/**
 * A list's query string: the common fields and the list's own filters, and no other. A
 * misspelt filter (`payment_staus=FAILED`) is a 400 naming it, as an unknown body field is,
 * not a list of everything that a script then acts on as if it were filtered.
 */
export function ListQuery<P extends TProperties>(filters: P) {
  return Type.Object({ ...ListQueryFields, ...filters }, { additionalProperties: false })
}
const BaseListQuery = Type.Object(ListQueryFields)
export type BaseListQuery = Static<typeof BaseListQuery>

export interface TimeRange {
  from?: Date
  to?: Date
}

export type SortDirection = 'asc' | 'desc'
export interface Sort<F extends string> {
  field: F
  direction: SortDirection
}

export interface ListRequest<F extends string> {
  page: Page
  sort: Sort<F>
  created: TimeRange
}

/**
 * Reads pagination, `from_date`/`to_date` and `sort` (only the given fields;
 * newest first by default).
 *
 * @example
 * listRequestFrom({ sort: '-total', size: 10 }, ['created_at', 'total'])
 */
export function listRequestFrom<F extends string>(
  query: BaseListQuery,
  sortable: readonly F[],
  fallback: Sort<F>,
): ListRequest<F> {
  const created: TimeRange = {}
  if (query.from_date !== undefined) created.from = parseTimeBound(query.from_date, 'from_date')
  if (query.to_date !== undefined) created.to = parseTimeBound(query.to_date, 'to_date')
  if (created.from && created.to && created.from > created.to) {
    throw validationError('from_date must not be after to_date', {
      fields: ['from_date', 'to_date'],
    })
  }
  return { page: pageFrom(query), sort: parseSort(query.sort, sortable, fallback), created }
}

/**
 * The value of a filter a list takes under two names (`status` and `payment_status`): either
 * one, or both when they agree. Two that disagree are refused, as `limit` and `size` are,
 * rather than one of them silently preferred.
 *
 * @example
 * aliasedFilter(query, 'payment_status', 'status') // 'SUCCEEDED' for ?status=SUCCEEDED
 */
export function aliasedFilter<Q, K extends keyof Q & string>(query: Q, name: K, alias: K): Q[K] {
  const value = query[name]
  const other = query[alias]
  if (value !== undefined && other !== undefined && value !== other) {
    throw validationError(`Use either ${name} or ${alias}, or both with the same value`, {
      fields: [name, alias],
    })
  }
  return value === undefined ? other : value
}

/**
 * Unix seconds (`1735689600`) or ISO 8601 (`2025-01-01`, `2025-01-01T00:00:00Z`). A time
 * without a zone is UTC, as a day alone is: `Date` reads it in the server's own time zone.
 */
export function parseTimeBound(raw: string, field: string): Date {
  const value = raw.trim()
  if (/^\d{1,12}$/.test(value)) return new Date(Number(value) * 1000)
  const iso = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.exec(value)
  if (iso) {
    const date = new Date(iso[1] !== undefined && iso[2] === undefined ? `${value}Z` : value)
    if (!Number.isNaN(date.getTime()) && isCalendarDay(value)) return date
  }
  throw validationError(`${field} must be unix seconds or an ISO 8601 date, got '${raw}'`, {
    field,
  })
}

/** Whether the date's `YYYY-MM-DD` is a day of the calendar: `Date` reads 2025-02-30 as 2 March. */
function isCalendarDay(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number)
  if (year === undefined || month === undefined || day === undefined) return false
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
  return days !== undefined && day >= 1 && day <= days
}

function parseSort<F extends string>(
  raw: string | undefined,
  sortable: readonly F[],
  fallback: Sort<F>,
): Sort<F> {
  if (raw === undefined || raw.trim() === '') return fallback
  const descending = raw.startsWith('-')
  const name = descending ? raw.slice(1) : raw
  const field = sortable.find((f) => f === name)
  if (!field) {
    throw validationError(`sort must be one of ${sortable.join(', ')} (prefix - for descending)`, {
      field: 'sort',
      allowed: sortable,
    })
  }
  return { field, direction: descending ? 'desc' : 'asc' }
}

/**
 * A list's page of rows a route already holds in full (an environment's few gateway
 * connections, a customer's saved cards), with the same date range, order (by creation,
 * ties by id) and pagination as a list the database pages.
 */
export function pageInMemory<T extends { id: string; created_at: Date }>(
  rows: T[],
  request: ListRequest<'created_at'>,
): { items: T[]; total: number } {
  const { from, to } = request.created
  const sign = request.sort.direction === 'asc' ? 1 : -1
  const kept = rows
    .filter((row) => (!from || row.created_at >= from) && (!to || row.created_at <= to))
    .sort(
      (a, b) =>
        sign *
        (a.created_at.getTime() - b.created_at.getTime() ||
          (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    )
  const { offset, limit } = request.page
  return { items: kept.slice(offset, offset + limit), total: kept.length }
}
