import { invalidRequest, resourceMissing } from '../errors.ts'
import { type EventOrigin, previousAttributes } from '../events.ts'
import { template } from '../fixtures.ts'
import { newId, randomToken } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { attachPaymentMethod, resolvePaymentMethod } from './payment-methods.ts'

export interface CustomerRecord extends StoredRecord {
  email: string | null
  name: string | null
  phone: string | null
  description: string | null
  metadata: Metadata
  invoicePrefix: string
  defaultPaymentMethod: string | null
  deleted: boolean
}

const CREATE_PARAMS = [
  'address',
  'balance',
  'business_name',
  'cash_balance',
  'description',
  'email',
  'individual_name',
  'invoice_prefix',
  'invoice_settings',
  'metadata',
  'name',
  'next_invoice_sequence',
  'payment_method',
  'phone',
  'preferred_locales',
  'shipping',
  'source',
  'tax',
  'tax_exempt',
  'tax_id_data',
  'test_clock',
  'validate',
] as const

const UPDATE_PARAMS = [
  ...CREATE_PARAMS.filter((name) => name !== 'payment_method' && name !== 'tax_id_data'),
  'default_source',
] as const

export interface NewCustomer {
  id?: string
  email?: string | null
  name?: string | null
  phone?: string | null
  description?: string | null
  metadata?: Metadata
  created?: number
}

/** Stores a customer without any request: the test's way to start from existing data. */
export function insertCustomer(state: EmulatorState, fields: NewCustomer = {}): CustomerRecord {
  const record: CustomerRecord = {
    id: fields.id ?? newId('customer'),
    created: fields.created ?? state.nowSeconds(),
    seq: state.nextSeq(),
    email: fields.email ?? null,
    name: fields.name ?? null,
    phone: fields.phone ?? null,
    description: fields.description ?? null,
    metadata: fields.metadata ?? {},
    invoicePrefix: randomToken(8).toUpperCase(),
    defaultPaymentMethod: null,
    deleted: false,
  }
  state.customers.set(record.id, record)
  return record
}

export function renderCustomer(record: CustomerRecord): JsonObject {
  if (record.deleted) return { id: record.id, object: 'customer', deleted: true }
  return withFields(template('customer'), {
    id: record.id,
    object: 'customer',
    address: null,
    balance: 0,
    created: record.created,
    currency: null,
    customer_account: null,
    default_source: null,
    delinquent: false,
    description: record.description,
    discount: null,
    email: record.email,
    invoice_prefix: record.invoicePrefix,
    invoice_settings: {
      custom_fields: null,
      default_payment_method: record.defaultPaymentMethod,
      footer: null,
      rendering_options: null,
    },
    livemode: false,
    metadata: record.metadata,
    name: record.name,
    next_invoice_sequence: 1,
    phone: record.phone,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
  })
}

/** A live (not deleted) customer, or Stripe's 404 naming `param`. */
export function requireCustomer(state: EmulatorState, id: string, param = 'id'): CustomerRecord {
  const record = requireRecord(state.customers, 'customer', id, param)
  if (record.deleted) throw resourceMissing('customer', id, param)
  return record
}

function createCustomer(state: EmulatorState, params: Params, origin: EventOrigin): JsonObject {
  params.rejectUnknown(CREATE_PARAMS)
  const record = insertCustomer(state, {
    email: params.nullableString('email') ?? null,
    name: params.nullableString('name') ?? null,
    phone: params.nullableString('phone') ?? null,
    description: params.nullableString('description') ?? null,
    metadata: params.metadata(),
  })
  state.events.emit('customer.created', renderCustomer(record), origin)
  const paymentMethodId = params.string('payment_method')
  if (paymentMethodId !== undefined) {
    const paymentMethod = resolvePaymentMethod(state, paymentMethodId, 'payment_method')
    attachPaymentMethod(state, paymentMethod, record, origin)
  }
  const settings = params.object('invoice_settings')
  if (settings !== undefined) applyInvoiceSettings(state, record, settings)
  return renderCustomer(record)
}

function updateCustomer(
  state: EmulatorState,
  record: CustomerRecord,
  params: Params,
  origin: EventOrigin,
): JsonObject {
  params.rejectUnknown(UPDATE_PARAMS)
  const before = renderCustomer(record)
  const email = params.nullableString('email')
  if (email !== undefined) record.email = email
  const name = params.nullableString('name')
  if (name !== undefined) record.name = name
  const phone = params.nullableString('phone')
  if (phone !== undefined) record.phone = phone
  const description = params.nullableString('description')
  if (description !== undefined) record.description = description
  record.metadata = params.metadata(record.metadata)
  const settings = params.object('invoice_settings')
  if (settings !== undefined) applyInvoiceSettings(state, record, settings)
  const after = renderCustomer(record)
  const changed = previousAttributes(before, after)
  if (changed !== null) state.events.emit('customer.updated', after, origin, changed)
  return after
}

/** `invoice_settings[default_payment_method]`: must be attached to this customer, or empty. */
function applyInvoiceSettings(state: EmulatorState, record: CustomerRecord, settings: Params) {
  const param = settings.path('default_payment_method')
  const id = settings.nullableString('default_payment_method')
  if (id === undefined) return
  if (id === null) {
    record.defaultPaymentMethod = null
    return
  }
  const paymentMethod = requireRecord(state.paymentMethods, 'PaymentMethod', id, param)
  if (paymentMethod.customer !== record.id) {
    throw invalidRequest(
      `The customer does not have a payment method with the ID ${id}. The payment method must be attached to the customer.`,
      param,
      'resource_missing',
    )
  }
  record.defaultPaymentMethod = id
}

export function registerCustomerRoutes(router: Router): void {
  router.post('/v1/customers', ({ state, params, origin }) => createCustomer(state, params, origin))
  router.get('/v1/customers', ({ state, params }) =>
    listResponse({
      params,
      url: '/v1/customers',
      objectName: 'customer',
      records: state.customers.values(),
      filter: (record) => {
        const email = params.string('email')
        return !record.deleted && (email === undefined || record.email === email)
      },
      render: renderCustomer,
    }),
  )
  router.get('/v1/customers/:id', ({ state, pathParam }) =>
    renderCustomer(requireRecord(state.customers, 'customer', pathParam('id'))),
  )
  router.post('/v1/customers/:id', ({ state, params, origin, pathParam }) =>
    updateCustomer(state, requireCustomer(state, pathParam('id')), params, origin),
  )
  router.delete('/v1/customers/:id', ({ state, origin, pathParam }) => {
    const record = requireCustomer(state, pathParam('id'))
    const before = renderCustomer(record)
    record.deleted = true
    for (const paymentMethod of state.paymentMethods.values()) {
      if (paymentMethod.customer === record.id) paymentMethod.customer = null
    }
    state.events.emit('customer.deleted', before, origin)
    return renderCustomer(record)
  })
}
