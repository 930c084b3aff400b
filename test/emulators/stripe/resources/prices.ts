import { invalidRequest } from '../errors.ts'
import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'

export const PRICE_INTERVALS = ['day', 'week', 'month', 'year'] as const
export type PriceInterval = (typeof PRICE_INTERVALS)[number]

export interface Recurring {
  interval: PriceInterval
  intervalCount: number
}

export interface PriceRecord extends StoredRecord {
  product: string
  unitAmount: number
  currency: string
  recurring: Recurring | null
  active: boolean
  nickname: string | null
  lookupKey: string | null
  metadata: Metadata
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewPrice {
  id?: string
  product: string
  unitAmount: number
  currency?: string
  recurring?: Recurring | null
  active?: boolean
  nickname?: string | null
  lookupKey?: string | null
  metadata?: Metadata
  created?: number
  overrides?: JsonObject
}

export function insertPrice(state: EmulatorState, fields: NewPrice): PriceRecord {
  if (!state.products.has(fields.product)) {
    throw invalidRequest(`No such product: '${fields.product}'`, 'product', 'resource_missing')
  }
  const record: PriceRecord = {
    id: fields.id ?? newId('price'),
    created: fields.created ?? state.nowSeconds(),
    seq: state.nextSeq(),
    product: fields.product,
    unitAmount: fields.unitAmount,
    currency: fields.currency ?? 'usd',
    recurring: fields.recurring ?? null,
    active: fields.active ?? true,
    nickname: fields.nickname ?? null,
    lookupKey: fields.lookupKey ?? null,
    metadata: fields.metadata ?? {},
    overrides: fields.overrides ?? {},
  }
  state.prices.set(record.id, record)
  return record
}

export function renderPrice(record: PriceRecord): JsonObject {
  const rendered = withFields(template('price'), {
    id: record.id,
    object: 'price',
    active: record.active,
    billing_scheme: 'per_unit',
    created: record.created,
    currency: record.currency,
    custom_unit_amount: null,
    livemode: false,
    lookup_key: record.lookupKey,
    metadata: record.metadata,
    nickname: record.nickname,
    product: record.product,
    recurring:
      record.recurring === null
        ? null
        : {
            interval: record.recurring.interval,
            interval_count: record.recurring.intervalCount,
            meter: null,
            trial_period_days: null,
            usage_type: 'licensed',
          },
    tax_behavior: 'unspecified',
    tiers_mode: null,
    transform_quantity: null,
    type: record.recurring === null ? 'one_time' : 'recurring',
    unit_amount: record.unitAmount,
    unit_amount_decimal: String(record.unitAmount),
  })
  return withFields(rendered, record.overrides)
}

/** The legacy `plan` view of a recurring price, still embedded in subscription items. */
export function renderPlan(record: PriceRecord): JsonObject | null {
  if (record.recurring === null) return null
  return {
    id: record.id,
    object: 'plan',
    active: record.active,
    amount: record.unitAmount,
    amount_decimal: String(record.unitAmount),
    billing_scheme: 'per_unit',
    created: record.created,
    currency: record.currency,
    interval: record.recurring.interval,
    interval_count: record.recurring.intervalCount,
    livemode: false,
    metadata: record.metadata,
    meter: null,
    nickname: record.nickname,
    product: record.product,
    tiers_mode: null,
    transform_usage: null,
    trial_period_days: null,
    usage_type: 'licensed',
  }
}

export function registerPriceRoutes(router: Router): void {
  router.get('/v1/prices', ({ state, params }) => {
    const active = params.boolean('active')
    const product = params.string('product')
    const currency = params.currency()
    const type = params.oneOf('type', ['one_time', 'recurring'] as const)
    const lookupKeys = params.strings('lookup_keys')
    return listResponse({
      params,
      url: '/v1/prices',
      objectName: 'price',
      records: state.prices.values(),
      filter: (record) =>
        (active === undefined || record.active === active) &&
        (product === undefined || record.product === product) &&
        (currency === undefined || record.currency === currency) &&
        (type === undefined || (type === 'recurring') === (record.recurring !== null)) &&
        (lookupKeys.length === 0 ||
          (record.lookupKey !== null && lookupKeys.includes(record.lookupKey))),
      render: renderPrice,
    })
  })
  router.get('/v1/prices/:id', ({ state, pathParam }) =>
    renderPrice(requireRecord(state.prices, 'price', pathParam('id'))),
  )
}
