import { invalidRequest, parameterMissing } from '../errors.ts'
import { AUTOMATIC, type EventOrigin } from '../events.ts'
import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import { formatMinorUnits, minimumChargeAmount } from '../money.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import type { TestCardAlias } from '../test-cards.ts'
import { insertCustomer, renderCustomer, requireCustomer } from './customers.ts'
import {
  CAPTURE_METHODS,
  type CaptureMethod,
  type ConfirmOutcome,
  completeAuthentication,
  confirmPaymentIntent,
  insertPaymentIntent,
  type PaymentIntentRecord,
  renderPaymentIntent,
  SETUP_FUTURE_USAGES,
  type SetupFutureUsage,
} from './payment-intents.ts'
import { createPaymentMethod, nullAddress } from './payment-methods.ts'
import { insertPrice, renderPrice } from './prices.ts'
import { insertProduct } from './products.ts'

export type CheckoutSessionStatus = 'open' | 'complete' | 'expired'

export interface CheckoutLineItemRecord {
  id: string
  description: string
  price: string
  quantity: number
  amount: number
  currency: string
}

export interface PaymentIntentData {
  setupFutureUsage: SetupFutureUsage | null
  captureMethod: CaptureMethod
  metadata: Metadata
  description: string | null
  receiptEmail: string | null
  statementDescriptor: string | null
  statementDescriptorSuffix: string | null
}

export interface CheckoutSessionRecord extends StoredRecord {
  mode: 'payment'
  status: CheckoutSessionStatus
  paymentStatus: 'paid' | 'unpaid'
  customer: string | null
  customerEmail: string | null
  customerCreation: 'always' | 'if_required' | null
  customerDetails: { email: string | null; name: string | null } | null
  successUrl: string | null
  cancelUrl: string | null
  clientReferenceId: string | null
  locale: string | null
  submitType: string | null
  metadata: Metadata
  expiresAt: number
  lineItems: CheckoutLineItemRecord[]
  currency: string
  amountTotal: number
  paymentIntent: string | null
  paymentIntentData: PaymentIntentData
}

const CREATE_PARAMS = [
  'adaptive_pricing',
  'after_expiration',
  'allow_promotion_codes',
  'automatic_tax',
  'billing_address_collection',
  'branding_settings',
  'cancel_url',
  'client_reference_id',
  'consent_collection',
  'currency',
  'custom_fields',
  'custom_text',
  'customer',
  'customer_account',
  'customer_creation',
  'customer_email',
  'customer_update',
  'discounts',
  'excluded_payment_method_types',
  'expires_at',
  'integration_identifier',
  'invoice_creation',
  'line_items',
  'locale',
  'managed_payments',
  'metadata',
  'mode',
  'name_collection',
  'optional_items',
  'origin_context',
  'payment_intent_data',
  'payment_method_collection',
  'payment_method_configuration',
  'payment_method_data',
  'payment_method_options',
  'payment_method_types',
  'permissions',
  'phone_number_collection',
  'redirect_on_completion',
  'return_url',
  'saved_payment_method_options',
  'setup_intent_data',
  'shipping_address_collection',
  'shipping_options',
  'submit_type',
  'subscription_data',
  'success_url',
  'tax_id_collection',
  'ui_mode',
  'wallet_options',
] as const

const PAYMENT_INTENT_DATA_PARAMS = [
  'application_fee_amount',
  'capture_method',
  'description',
  'metadata',
  'on_behalf_of',
  'receipt_email',
  'setup_future_usage',
  'shipping',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'transfer_data',
  'transfer_group',
] as const

const MINUTE = 60
const HOUR = 60 * MINUTE

export function renderCheckoutSession(
  state: EmulatorState,
  record: CheckoutSessionRecord,
  options: { lineItems?: boolean } = {},
): JsonObject {
  const completed = record.status === 'complete'
  const rendered = withFields(template('checkout.session'), {
    id: record.id,
    object: 'checkout.session',
    adaptive_pricing: { enabled: false },
    after_expiration: null,
    allow_promotion_codes: null,
    amount_subtotal: record.amountTotal,
    amount_total: record.amountTotal,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: record.cancelUrl,
    client_reference_id: record.clientReferenceId,
    client_secret: null,
    collected_information: completed
      ? { business_name: null, individual_name: null, shipping_details: null }
      : null,
    consent: null,
    consent_collection: null,
    created: record.created,
    currency: record.currency,
    currency_conversion: null,
    custom_fields: [],
    custom_text: {
      after_submit: null,
      shipping_address: null,
      submit: null,
      terms_of_service_acceptance: null,
    },
    customer: record.customer,
    customer_account: null,
    customer_creation: record.customerCreation,
    customer_details:
      record.customerDetails === null
        ? null
        : {
            address: nullAddress(),
            business_name: null,
            email: record.customerDetails.email,
            individual_name: null,
            name: record.customerDetails.name,
            phone: null,
            tax_exempt: 'none',
            tax_ids: [],
          },
    customer_email: record.customerEmail,
    discounts: [],
    expires_at: record.expiresAt,
    integration_identifier: null,
    invoice: null,
    invoice_creation: {
      enabled: false,
      invoice_data: {
        account_tax_ids: null,
        custom_fields: null,
        description: null,
        footer: null,
        issuer: null,
        metadata: {},
        rendering_options: null,
      },
    },
    livemode: false,
    locale: record.locale,
    managed_payments: null,
    metadata: record.metadata,
    mode: record.mode,
    origin_context: null,
    payment_intent: record.paymentIntent,
    payment_link: null,
    payment_method_collection: 'if_required',
    payment_method_configuration_details: null,
    payment_method_options: { card: { request_three_d_secure: 'automatic' } },
    payment_method_types: ['card'],
    payment_status: record.paymentStatus,
    permissions: null,
    phone_number_collection: { enabled: false },
    recovered_from: null,
    saved_payment_method_options:
      record.customer === null
        ? null
        : {
            allow_redisplay_filters: ['always'],
            payment_method_remove: 'disabled',
            payment_method_save: null,
          },
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    shipping_options: [],
    status: record.status,
    submit_type: record.submitType,
    subscription: null,
    success_url: record.successUrl,
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted_page',
    url: record.status === 'open' ? hostedPageUrl(state, record.id) : null,
    wallet_options: null,
  })
  if (options.lineItems === true) rendered.line_items = renderLineItems(state, record)
  return rendered
}

/** Where the emulator serves its stand-in for Stripe's hosted payment page. */
export function hostedPageUrl(state: EmulatorState, id: string): string {
  return `${state.baseUrl}/c/pay/${id}`
}

function renderLineItems(state: EmulatorState, record: CheckoutSessionRecord): JsonObject {
  return {
    object: 'list',
    data: record.lineItems.map((item) =>
      withFields(template('item'), {
        id: item.id,
        object: 'item',
        adjustable_quantity: null,
        amount_discount: 0,
        amount_subtotal: item.amount,
        amount_tax: 0,
        amount_total: item.amount,
        currency: item.currency,
        description: item.description,
        metadata: {},
        price: renderPrice(requireRecord(state.prices, 'price', item.price)),
        quantity: item.quantity,
      }),
    ),
    has_more: false,
    url: `/v1/checkout/sessions/${record.id}/line_items`,
  }
}

/** One `line_items[n]`: a stored `price`, or `price_data` that creates the price inline. */
function readLineItem(state: EmulatorState, item: Params): CheckoutLineItemRecord {
  const quantity = item.requiredInteger('quantity')
  if (quantity < 1) throw invalidRequest('Quantity must be at least 1.', item.path('quantity'))
  const priceId = item.string('price')
  const priceData = item.object('price_data')
  if (priceId !== undefined && priceData !== undefined) {
    throw invalidRequest(
      'You may only specify one of these parameters: price, price_data.',
      item.path('price'),
    )
  }
  let price: { id: string; unitAmount: number; currency: string; product: string }
  if (priceId !== undefined) {
    const stored = requireRecord(state.prices, 'price', priceId, item.path('price'))
    if (stored.recurring !== null) {
      throw invalidRequest(
        'You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.',
        item.path('price'),
      )
    }
    price = stored
  } else if (priceData !== undefined) {
    price = inlinePrice(state, priceData)
  } else {
    throw parameterMissing(item.path('price'))
  }
  const product = state.products.get(price.product)
  return {
    id: newId('checkout_line_item'),
    description: product?.name ?? 'Item',
    price: price.id,
    quantity,
    amount: price.unitAmount * quantity,
    currency: price.currency,
  }
}

/** `price_data`: Stripe creates an (inactive) Price, and a Product for `product_data`. */
function inlinePrice(state: EmulatorState, data: Params) {
  data.rejectUnknown([
    'currency',
    'product',
    'product_data',
    'recurring',
    'tax_behavior',
    'unit_amount',
    'unit_amount_decimal',
  ])
  const currency = data.requiredCurrency()
  const decimal = data.string('unit_amount_decimal')
  const unitAmount =
    data.integer('unit_amount') ?? (decimal === undefined ? undefined : Math.round(Number(decimal)))
  if (unitAmount === undefined || Number.isNaN(unitAmount)) {
    throw parameterMissing(data.path('unit_amount'))
  }
  if (data.has('recurring')) {
    throw invalidRequest(
      'You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.',
      data.path('recurring'),
    )
  }
  let productId = data.string('product')
  if (productId !== undefined) {
    requireRecord(state.products, 'product', productId, data.path('product'))
  } else {
    const productData = data.object('product_data')
    if (productData === undefined) throw parameterMissing(data.path('product_data'))
    productData.rejectUnknown([
      'description',
      'images',
      'metadata',
      'name',
      'tax_code',
      'unit_label',
    ])
    productId = insertProduct(state, {
      name: productData.requiredString('name'),
      description: productData.nullableString('description') ?? null,
      metadata: productData.metadata(),
      active: false,
    }).id
  }
  return insertPrice(state, { product: productId, unitAmount, currency, active: false })
}

function readPaymentIntentData(params: Params): PaymentIntentData {
  const data = params.object('payment_intent_data')
  data?.rejectUnknown(PAYMENT_INTENT_DATA_PARAMS)
  return {
    setupFutureUsage: data?.oneOf('setup_future_usage', SETUP_FUTURE_USAGES) ?? null,
    captureMethod: data?.oneOf('capture_method', CAPTURE_METHODS) ?? 'automatic_async',
    metadata: data?.metadata() ?? {},
    description: data?.nullableString('description') ?? null,
    receiptEmail: data?.nullableString('receipt_email') ?? null,
    statementDescriptor: data?.nullableString('statement_descriptor') ?? null,
    statementDescriptorSuffix: data?.nullableString('statement_descriptor_suffix') ?? null,
  }
}

function readExpiresAt(state: EmulatorState, params: Params): number {
  const now = state.nowSeconds()
  const expiresAt = params.integer('expires_at')
  if (expiresAt === undefined) return now + 24 * HOUR
  if (expiresAt < now + 30 * MINUTE) {
    throw invalidRequest(
      'The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.',
      'expires_at',
    )
  }
  if (expiresAt > now + 24 * HOUR) {
    throw invalidRequest(
      'The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.',
      'expires_at',
    )
  }
  return expiresAt
}

function createCheckoutSession(state: EmulatorState, params: Params): JsonObject {
  params.rejectUnknown(CREATE_PARAMS)
  const mode = params.oneOf('mode', ['payment', 'setup', 'subscription'] as const)
  if (mode === undefined) throw parameterMissing('mode')
  if (mode !== 'payment') {
    throw invalidRequest(
      `The Stripe emulator supports mode=payment only (got mode=${mode}).`,
      'mode',
    )
  }
  const customerId = params.string('customer')
  const customerEmail = params.string('customer_email')
  if (customerId !== undefined && customerEmail !== undefined) {
    throw invalidRequest(
      'You may only specify one of these parameters: customer, customer_email.',
      'customer_email',
    )
  }
  const customer = customerId === undefined ? null : requireCustomer(state, customerId, 'customer')
  const customerCreation = params.oneOf('customer_creation', ['always', 'if_required'] as const)
  if (customer !== null && customerCreation !== undefined) {
    throw invalidRequest(
      '`customer_creation` can only be used when `customer` is not set.',
      'customer_creation',
    )
  }
  const items = params.objects('line_items')
  if (items.length === 0) throw parameterMissing('line_items')
  const expiresAt = readExpiresAt(state, params)
  const paymentIntentData = readPaymentIntentData(params)
  const lineItems = items.map((item) => readLineItem(state, item))
  const currency = lineItems[0]?.currency ?? 'usd'
  if (lineItems.some((item) => item.currency !== currency)) {
    throw invalidRequest('All line items must have the same currency.', 'line_items')
  }
  const amountTotal = lineItems.reduce((sum, item) => sum + item.amount, 0)
  const minimum = minimumChargeAmount(currency)
  if (amountTotal < minimum) {
    throw invalidRequest(
      `The Checkout Session's total amount due must add up to at least ${formatMinorUnits(minimum, currency)} ${currency}`,
      undefined,
      'amount_too_small',
    )
  }
  const record: CheckoutSessionRecord = {
    id: newId('checkout_session'),
    created: state.nowSeconds(),
    seq: state.nextSeq(),
    mode,
    status: 'open',
    paymentStatus: 'unpaid',
    customer: customer?.id ?? null,
    customerEmail: customerEmail ?? null,
    customerCreation: customer === null ? (customerCreation ?? 'if_required') : null,
    customerDetails: null,
    successUrl: params.string('success_url') ?? null,
    cancelUrl: params.string('cancel_url') ?? null,
    clientReferenceId: params.string('client_reference_id') ?? null,
    locale: params.string('locale') ?? null,
    submitType: params.string('submit_type') ?? null,
    metadata: params.metadata(),
    expiresAt,
    lineItems,
    currency,
    amountTotal,
    paymentIntent: null,
    paymentIntentData,
  }
  state.checkoutSessions.set(record.id, record)
  return renderCheckoutSession(state, record, { lineItems: wantsLineItems(params) })
}

function wantsLineItems(params: Params): boolean {
  return params.strings('expand').includes('line_items')
}

/** A session past `expires_at` expires the moment anyone looks, as Stripe's sweeper would. */
export function expireIfDue(state: EmulatorState, record: CheckoutSessionRecord): void {
  if (record.status === 'open' && state.nowSeconds() >= record.expiresAt) {
    expire(state, record, AUTOMATIC)
  }
}

function expire(state: EmulatorState, record: CheckoutSessionRecord, origin: EventOrigin): void {
  record.status = 'expired'
  const paymentIntent =
    record.paymentIntent === null ? undefined : state.paymentIntents.get(record.paymentIntent)
  if (paymentIntent !== undefined && paymentIntent.status === 'requires_payment_method') {
    paymentIntent.status = 'canceled'
    paymentIntent.canceledAt = state.nowSeconds()
    paymentIntent.cancellationReason = 'abandoned'
    state.events.emit('payment_intent.canceled', renderPaymentIntent(paymentIntent), origin)
  }
  state.events.emit('checkout.session.expired', renderCheckoutSession(state, record), origin)
}

export function requireCheckoutSession(state: EmulatorState, id: string): CheckoutSessionRecord {
  const record = requireRecord(state.checkoutSessions, 'checkout.session', id)
  expireIfDue(state, record)
  return record
}

/** `POST /v1/checkout/sessions/:id/expire`; only an open session can expire. */
export function expireCheckoutSession(
  state: EmulatorState,
  id: string,
  origin: EventOrigin = AUTOMATIC,
): JsonObject {
  const record = requireCheckoutSession(state, id)
  if (record.status !== 'open') {
    throw invalidRequest(
      `Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a status of "${record.status}".`,
    )
  }
  expire(state, record, origin)
  return renderCheckoutSession(state, record)
}

export interface CompleteCheckoutOptions {
  /** The test card the customer pays with; `pm_card_visa` by default. */
  paymentMethod?: TestCardAlias
  email?: string
  name?: string
  /** Whether the customer passes 3D Secure when the card asks for it (default true). */
  passAuthentication?: boolean
}

export interface CheckoutCompletion {
  session: JsonObject
  paymentIntent: JsonObject
  /** The decline shown to the customer when the card failed; the session stays open. */
  error: JsonObject | null
}

/**
 * What happens when the customer pays on the hosted page: a PaymentIntent is created and
 * confirmed with the card; on success the session is `complete`, the card is saved when
 * `setup_future_usage` asked for it, and `checkout.session.completed` follows the
 * `payment_intent.*` / `charge.*` events. A decline leaves the session open.
 */
export function completeCheckoutSession(
  state: EmulatorState,
  id: string,
  options: CompleteCheckoutOptions = {},
  origin: EventOrigin = AUTOMATIC,
): CheckoutCompletion {
  const record = requireCheckoutSession(state, id)
  if (record.status !== 'open') {
    throw invalidRequest(
      `Checkout Session ${id} has status ${record.status}; only an open session can be paid.`,
    )
  }
  let customer = record.customer === null ? undefined : state.customers.get(record.customer)
  const email =
    options.email ?? record.customerEmail ?? customer?.email ?? 'jenny.rosen@example.com'
  const name = options.name ?? customer?.name ?? 'Jenny Rosen'
  const data = record.paymentIntentData
  if (
    customer === undefined &&
    (record.customerCreation === 'always' || data.setupFutureUsage !== null)
  ) {
    customer = insertCustomer(state, { email, name })
    state.events.emit('customer.created', renderCustomer(customer), origin)
    record.customer = customer.id
  }
  const paymentMethod = createPaymentMethod(state, options.paymentMethod ?? 'pm_card_visa')
  paymentMethod.billingDetails = { email, name, phone: null }
  const paymentIntent = paymentIntentFor(state, record, paymentMethod.id, origin)
  record.paymentIntent = paymentIntent.id
  let outcome: ConfirmOutcome = confirmPaymentIntent(state, paymentIntent, {
    offSession: false,
    origin,
    authenticated: options.passAuthentication ?? true,
  })
  if (outcome.kind === 'requires_action') {
    outcome = completeAuthentication(state, paymentIntent, false, origin)
  }
  if (outcome.kind === 'declined') {
    return {
      session: renderCheckoutSession(state, record),
      paymentIntent: renderPaymentIntent(paymentIntent),
      error: outcome.error.body,
    }
  }
  record.status = 'complete'
  record.paymentStatus = outcome.kind === 'succeeded' ? 'paid' : 'unpaid'
  record.customerDetails = { email, name }
  const session = renderCheckoutSession(state, record)
  state.events.emit('checkout.session.completed', session, origin)
  return { session, paymentIntent: renderPaymentIntent(paymentIntent), error: null }
}

/** The session's PaymentIntent: the one a declined attempt left behind, or a new one. */
function paymentIntentFor(
  state: EmulatorState,
  record: CheckoutSessionRecord,
  paymentMethodId: string,
  origin: EventOrigin,
): PaymentIntentRecord {
  const existing =
    record.paymentIntent === null ? undefined : state.paymentIntents.get(record.paymentIntent)
  if (existing !== undefined && existing.status === 'requires_payment_method') {
    existing.paymentMethod = paymentMethodId
    existing.customer = record.customer
    return existing
  }
  const data = record.paymentIntentData
  return insertPaymentIntent(
    state,
    {
      amount: record.amountTotal,
      currency: record.currency,
      customer: record.customer,
      paymentMethod: paymentMethodId,
      metadata: data.metadata,
      description: data.description,
      setupFutureUsage: data.setupFutureUsage,
      captureMethod: data.captureMethod,
      receiptEmail: data.receiptEmail,
      statementDescriptor: data.statementDescriptor,
      statementDescriptorSuffix: data.statementDescriptorSuffix,
    },
    origin,
  )
}

export function registerCheckoutSessionRoutes(router: Router): void {
  router.post('/v1/checkout/sessions', ({ state, params }) => createCheckoutSession(state, params))
  router.get('/v1/checkout/sessions', ({ state, params }) => {
    for (const record of state.checkoutSessions.values()) expireIfDue(state, record)
    const customer = params.string('customer')
    const paymentIntent = params.string('payment_intent')
    const status = params.oneOf('status', ['open', 'complete', 'expired'] as const)
    return listResponse({
      params,
      url: '/v1/checkout/sessions',
      objectName: 'checkout.session',
      records: state.checkoutSessions.values(),
      filter: (record) =>
        (customer === undefined || record.customer === customer) &&
        (paymentIntent === undefined || record.paymentIntent === paymentIntent) &&
        (status === undefined || record.status === status),
      render: (record) => renderCheckoutSession(state, record),
    })
  })
  router.get('/v1/checkout/sessions/:id', ({ state, params, pathParam }) =>
    renderCheckoutSession(state, requireCheckoutSession(state, pathParam('id')), {
      lineItems: wantsLineItems(params),
    }),
  )
  router.get('/v1/checkout/sessions/:id/line_items', ({ state, pathParam }) =>
    renderLineItems(state, requireCheckoutSession(state, pathParam('id'))),
  )
  router.post('/v1/checkout/sessions/:id/expire', ({ state, origin, pathParam }) =>
    expireCheckoutSession(state, pathParam('id'), origin),
  )
}
