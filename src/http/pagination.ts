import type { FastifyReply } from 'fastify'
import { type Static, type TSchema, Type } from 'typebox'
import { validationError } from '../core/errors.ts'

export const DEFAULT_LIMIT = 50
export const MAX_LIMIT = 1000
/** The furthest a list reads: past a billion items, a client should filter, not page. */
export const MAX_OFFSET = 1_000_000_000

/** Both pagination styles clients already use: Stripe-like `limit`/`offset` and Flexprice-like `size`/`page` (0-based). */
export const PaginationQuery = Type.Object({
  limit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: MAX_LIMIT,
      description: 'Items per page (1–1000, default 50)',
    }),
  ),
  offset: Type.Optional(
    Type.Integer({ minimum: 0, maximum: MAX_OFFSET, description: 'Items to skip' }),
  ),
  size: Type.Optional(
    Type.Integer({ minimum: 1, maximum: MAX_LIMIT, description: 'Page size, with `page`' }),
  ),
  page: Type.Optional(
    Type.Integer({ minimum: 0, description: '0-based page number, with `size`' }),
  ),
})
export type PaginationQuery = Static<typeof PaginationQuery>

export interface Page {
  limit: number
  offset: number
}

/**
 * Reads a page from either style. Mixing them (`offset` with `page`) is refused
 * rather than guessed.
 *
 * @example
 * pageFrom({ size: 20, page: 2 }) // { limit: 20, offset: 40 }
 */
export function pageFrom(query: PaginationQuery): Page {
  if (query.page !== undefined && query.offset !== undefined) {
    throw validationError('Use either offset or page, not both', { fields: ['offset', 'page'] })
  }
  if (query.size !== undefined && query.limit !== undefined && query.size !== query.limit) {
    throw validationError('Use either limit or size, not both', { fields: ['limit', 'size'] })
  }
  const limit = query.limit ?? query.size ?? DEFAULT_LIMIT
  const offset = query.offset ?? (query.page ?? 0) * limit
  if (offset > MAX_OFFSET) {
    throw validationError(
      `A page may start at most ${MAX_OFFSET} items in; filter the list instead`,
      {
        field: query.page !== undefined ? 'page' : 'offset',
        max_offset: MAX_OFFSET,
      },
    )
  }
  return { limit, offset }
}

export interface Paginated<T> {
  items: T[]
  pagination: { total: number; limit: number; offset: number }
}

export function paginated<T>(items: T[], total: number, page: Page): Paginated<T> {
  return { items, pagination: { total, limit: page.limit, offset: page.offset } }
}

/**
 * Sends `paginated` for items that are already a JSON array's text (built by
 * PostgreSQL), as is: Fastify does not serialize a string sent as JSON.
 */
export function sendPaginatedJson(
  reply: FastifyReply,
  itemsJson: string,
  total: number,
  page: Page,
): FastifyReply {
  return reply
    .type('application/json; charset=utf-8')
    .send(
      `{"items":${itemsJson},"pagination":{"total":${total},"limit":${page.limit},"offset":${page.offset}}}`,
    )
}

/** The response schema of a list: `{"items":[...],"pagination":{"total","limit","offset"}}`. */
export function PaginatedSchema<T extends TSchema>(item: T) {
  return Type.Object({
    items: Type.Array(item),
    pagination: Type.Object({
      total: Type.Integer(),
      limit: Type.Integer(),
      offset: Type.Integer(),
    }),
  })
}
