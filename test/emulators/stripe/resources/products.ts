import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'

export interface ProductRecord extends StoredRecord {
  name: string
  active: boolean
  description: string | null
  defaultPrice: string | null
  metadata: Metadata
  updated: number
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewProduct {
  id?: string
  name?: string
  active?: boolean
  description?: string | null
  defaultPrice?: string | null
  metadata?: Metadata
  created?: number
  overrides?: JsonObject
}

export function insertProduct(state: EmulatorState, fields: NewProduct = {}): ProductRecord {
  const created = fields.created ?? state.nowSeconds()
  const record: ProductRecord = {
    id: fields.id ?? newId('product'),
    created,
    seq: state.nextSeq(),
    name: fields.name ?? 'Emulated product',
    active: fields.active ?? true,
    description: fields.description ?? null,
    defaultPrice: fields.defaultPrice ?? null,
    metadata: fields.metadata ?? {},
    updated: created,
    overrides: fields.overrides ?? {},
  }
  state.products.set(record.id, record)
  return record
}

export function renderProduct(record: ProductRecord): JsonObject {
  const rendered = withFields(template('product'), {
    id: record.id,
    object: 'product',
    active: record.active,
    created: record.created,
    default_price: record.defaultPrice,
    description: record.description,
    images: [],
    livemode: false,
    marketing_features: [],
    metadata: record.metadata,
    name: record.name,
    package_dimensions: null,
    shippable: null,
    statement_descriptor: null,
    tax_code: null,
    type: 'service',
    unit_label: null,
    updated: record.updated,
    url: null,
  })
  return withFields(rendered, record.overrides)
}

export function registerProductRoutes(router: Router): void {
  router.get('/v1/products', ({ state, params }) => {
    const active = params.boolean('active')
    const ids = params.strings('ids')
    return listResponse({
      params,
      url: '/v1/products',
      objectName: 'product',
      records: state.products.values(),
      filter: (record) =>
        (active === undefined || record.active === active) &&
        (ids.length === 0 || ids.includes(record.id)),
      render: renderProduct,
    })
  })
  router.get('/v1/products/:id', ({ state, pathParam }) =>
    renderProduct(requireRecord(state.products, 'product', pathParam('id'))),
  )
}
