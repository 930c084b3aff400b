import { invalidRequest, resourceMissing } from '../errors.ts'
import type { EventOrigin } from '../events.ts'
import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import {
  displayBrand,
  fingerprint,
  isTestCardAlias,
  lastFour,
  TEST_CARDS,
  type TestCard,
  type TestCardAlias,
} from '../test-cards.ts'
import { requireCustomer } from './customers.ts'

export interface BillingDetails {
  name: string | null
  email: string | null
  phone: string | null
}

export interface PaymentMethodRecord extends StoredRecord {
  /** The test card behind this PaymentMethod; decides how charges on it end. */
  card: TestCardAlias
  expMonth: number
  expYear: number
  customer: string | null
  metadata: Metadata
  billingDetails: BillingDetails
  allowRedisplay: 'always' | 'limited' | 'unspecified'
  /** Used for a payment without being saved to a customer: Stripe refuses to reuse it. */
  consumed: boolean
}

const UPDATE_PARAMS = ['allow_redisplay', 'billing_details', 'card', 'metadata'] as const

/** A new `pm_…` for a test card, like Stripe makes each time an alias is used. */
export function createPaymentMethod(
  state: EmulatorState,
  alias: TestCardAlias,
): PaymentMethodRecord {
  const now = state.clock.now()
  const record: PaymentMethodRecord = {
    id: newId('payment_method'),
    created: state.nowSeconds(),
    seq: state.nextSeq(),
    card: alias,
    expMonth: now.getUTCMonth() + 1,
    expYear: now.getUTCFullYear() + 1,
    customer: null,
    metadata: {},
    billingDetails: { name: null, email: null, phone: null },
    allowRedisplay: 'unspecified',
    consumed: false,
  }
  state.paymentMethods.set(record.id, record)
  return record
}

/** `pm_…` → the stored PaymentMethod; `pm_card_…` alias → a fresh one; else Stripe's 404. */
export function resolvePaymentMethod(
  state: EmulatorState,
  idOrAlias: string,
  param: string,
): PaymentMethodRecord {
  if (isTestCardAlias(idOrAlias)) return createPaymentMethod(state, idOrAlias)
  const record = state.paymentMethods.get(idOrAlias)
  if (record === undefined) throw resourceMissing('PaymentMethod', idOrAlias, param)
  return record
}

export function testCardOf(record: PaymentMethodRecord): TestCard {
  return TEST_CARDS[record.card]
}

/** Saves the card to `customer` (`payment_method.attached`); a card has one owner for life. */
export function attachPaymentMethod(
  state: EmulatorState,
  record: PaymentMethodRecord,
  customer: { id: string },
  origin: EventOrigin,
): void {
  if (record.customer === customer.id) return
  if (record.customer !== null) {
    throw invalidRequest(
      'The payment method you provided has already been attached to a customer.',
      'payment_method',
    )
  }
  if (record.consumed) {
    throw invalidRequest(
      'This PaymentMethod was previously used without being attached to a Customer or was detached from a Customer, and may not be used again.',
      'payment_method',
    )
  }
  record.customer = customer.id
  state.events.emit('payment_method.attached', renderPaymentMethod(record), origin)
}

function detachPaymentMethod(
  state: EmulatorState,
  record: PaymentMethodRecord,
  origin: EventOrigin,
): JsonObject {
  const customerId = record.customer
  if (customerId === null) {
    throw invalidRequest(
      `The payment method ${record.id} is not attached to a customer so detachment is impossible.`,
    )
  }
  record.customer = null
  record.consumed = true
  const customer = state.customers.get(customerId)
  if (customer?.defaultPaymentMethod === record.id) customer.defaultPaymentMethod = null
  const rendered = renderPaymentMethod(record)
  state.events.emit('payment_method.detached', rendered, origin, { customer: customerId })
  return rendered
}

function updatePaymentMethod(record: PaymentMethodRecord, params: Params): void {
  params.rejectUnknown(UPDATE_PARAMS)
  record.metadata = params.metadata(record.metadata)
  const redisplay = params.oneOf('allow_redisplay', ['always', 'limited', 'unspecified'] as const)
  if (redisplay !== undefined) record.allowRedisplay = redisplay
  const billing = params.object('billing_details')
  if (billing !== undefined) {
    for (const field of ['name', 'email', 'phone'] as const) {
      const value = billing.nullableString(field)
      if (value !== undefined) record.billingDetails[field] = value
    }
  }
  const card = params.object('card')
  if (card !== undefined) {
    record.expMonth = card.integer('exp_month') ?? record.expMonth
    record.expYear = card.integer('exp_year') ?? record.expYear
  }
}

export function renderPaymentMethod(record: PaymentMethodRecord): JsonObject {
  const card = testCardOf(record)
  return withFields(template('payment_method'), {
    id: record.id,
    object: 'payment_method',
    allow_redisplay: record.allowRedisplay,
    billing_details: {
      address: nullAddress(),
      email: record.billingDetails.email,
      name: record.billingDetails.name,
      phone: record.billingDetails.phone,
      tax_id: null,
    },
    card: {
      brand: card.brand,
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: null },
      country: card.country,
      display_brand: displayBrand(card.brand),
      exp_month: record.expMonth,
      exp_year: record.expYear,
      fingerprint: fingerprint(card),
      funding: card.funding,
      generated_from: null,
      last4: lastFour(card),
      networks: { available: [card.brand], preferred: null },
      regulated_status: 'unregulated',
      three_d_secure_usage: { supported: true },
      wallet: null,
    },
    created: record.created,
    customer: record.customer,
    customer_account: null,
    livemode: false,
    metadata: record.metadata,
    type: 'card',
  })
}

export function nullAddress(): JsonObject {
  return { city: null, country: null, line1: null, line2: null, postal_code: null, state: null }
}

function listForCustomer(state: EmulatorState, customerId: string, params: Params, url: string) {
  const type = params.string('type')
  return listResponse({
    params,
    url,
    objectName: 'payment_method',
    records: state.paymentMethods.values(),
    filter: (record) => record.customer === customerId && (type === undefined || type === 'card'),
    render: renderPaymentMethod,
  })
}

export function registerPaymentMethodRoutes(router: Router): void {
  router.get('/v1/payment_methods/:id', ({ state, pathParam }) =>
    renderPaymentMethod(resolvePaymentMethod(state, pathParam('id'), 'payment_method')),
  )
  router.post('/v1/payment_methods/:id', ({ state, params, pathParam }) => {
    const record = requireRecord(state.paymentMethods, 'PaymentMethod', pathParam('id'))
    updatePaymentMethod(record, params)
    return renderPaymentMethod(record)
  })
  router.post('/v1/payment_methods/:id/attach', ({ state, params, origin, pathParam }) => {
    params.rejectUnknown(['customer', 'customer_account'])
    const customer = requireCustomer(state, params.requiredString('customer'), 'customer')
    const record = resolvePaymentMethod(state, pathParam('id'), 'payment_method')
    attachPaymentMethod(state, record, customer, origin)
    return renderPaymentMethod(record)
  })
  router.post('/v1/payment_methods/:id/detach', ({ state, origin, pathParam }) =>
    detachPaymentMethod(
      state,
      requireRecord(state.paymentMethods, 'PaymentMethod', pathParam('id')),
      origin,
    ),
  )
  router.get('/v1/payment_methods', ({ state, params }) => {
    const customer = requireCustomer(state, params.requiredString('customer'), 'customer')
    return listForCustomer(state, customer.id, params, '/v1/payment_methods')
  })
  router.get('/v1/customers/:id/payment_methods', ({ state, params, pathParam }) => {
    const customer = requireCustomer(state, pathParam('id'))
    return listForCustomer(
      state,
      customer.id,
      params,
      `/v1/customers/${customer.id}/payment_methods`,
    )
  })
  router.get('/v1/customers/:customer/payment_methods/:id', ({ state, pathParam }) => {
    const customer = requireCustomer(state, pathParam('customer'), 'customer')
    const record = requireRecord(state.paymentMethods, 'PaymentMethod', pathParam('id'))
    if (record.customer !== customer.id) throw resourceMissing('PaymentMethod', record.id)
    return renderPaymentMethod(record)
  })
}
