import { invalidRequest, resourceMissing } from './errors.ts'
import type { JsonObject } from './json.ts'
import type { Params } from './params.ts'
import type { StoredRecord } from './state.ts'

export interface ListRequest<T extends StoredRecord> {
  params: Params
  /** The list's own path, echoed as `url` (`/v1/invoices`). */
  url: string
  /** Stripe's name for the object in `No such …` errors. */
  objectName: string
  records: Iterable<T>
  /** Resource-specific filters (`customer`, `status`…); `created` is handled here. */
  filter?: (record: T) => boolean
  render: (record: T) => JsonObject
}

/**
 * Stripe's cursor pagination: newest first, `limit` (1–100, default 10), `starting_after` /
 * `ending_before` an object id, answered as `{object: 'list', data, has_more, url}`.
 */
export function listResponse<T extends StoredRecord>(request: ListRequest<T>): JsonObject {
  const { params } = request
  const limit = params.integer('limit') ?? 10
  if (limit < 1 || limit > 100) {
    throw invalidRequest(
      'Invalid limit: must be between 1 and 100',
      'limit',
      'parameter_invalid_integer',
    )
  }
  const matchesCreated = createdFilter(params)
  const sorted = [...request.records]
    .filter((record) => matchesCreated(record.created) && (request.filter?.(record) ?? true))
    .sort(newestFirst)

  const startingAfter = params.string('starting_after')
  const endingBefore = params.string('ending_before')
  let page: T[]
  let hasMore: boolean
  if (startingAfter !== undefined) {
    const index = indexOf(sorted, startingAfter, request.objectName, 'starting_after')
    page = sorted.slice(index + 1, index + 1 + limit)
    hasMore = index + 1 + limit < sorted.length
  } else if (endingBefore !== undefined) {
    const index = indexOf(sorted, endingBefore, request.objectName, 'ending_before')
    const start = Math.max(0, index - limit)
    page = sorted.slice(start, index)
    hasMore = start > 0
  } else {
    page = sorted.slice(0, limit)
    hasMore = limit < sorted.length
  }
  return {
    object: 'list',
    data: page.map((record) => request.render(record)),
    has_more: hasMore,
    url: request.url,
  }
}

export function newestFirst(a: StoredRecord, b: StoredRecord): number {
  return b.created - a.created || b.seq - a.seq
}

function indexOf(records: StoredRecord[], id: string, objectName: string, param: string): number {
  const index = records.findIndex((record) => record.id === id)
  if (index < 0) throw resourceMissing(objectName, id, param)
  return index
}

/** `created=123` or `created[gte]=…&created[lt]=…`, as every Stripe list accepts. */
function createdFilter(params: Params): (created: number) => boolean {
  if (!params.isObject('created')) {
    const exact = params.integer('created')
    return (created) => exact === undefined || created === exact
  }
  const range = params.object('created')
  if (range === undefined) return () => true
  const gt = range.integer('gt')
  const gte = range.integer('gte')
  const lt = range.integer('lt')
  const lte = range.integer('lte')
  return (created) =>
    (gt === undefined || created > gt) &&
    (gte === undefined || created >= gte) &&
    (lt === undefined || created < lt) &&
    (lte === undefined || created <= lte)
}
