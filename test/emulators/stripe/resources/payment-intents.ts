import { errorBody, invalidRequest, parameterMissing, StripeHttpError } from '../errors.ts'
import type { EventOrigin } from '../events.ts'
import { template } from '../fixtures.ts'
import { clientSecret, newId, randomToken } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import { formatMinorUnits, minimumChargeAmount } from '../money.ts'
import type { Metadata, Params } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { AUTHENTICATION_REQUIRED, type CardDecline } from '../test-cards.ts'
import { cardProcessingFee, insertBalanceTransaction } from './balance-transactions.ts'
import { type ChargeRecord, insertCharge, renderCharge } from './charges.ts'
import { requireCustomer } from './customers.ts'
import {
  attachPaymentMethod,
  type PaymentMethodRecord,
  renderPaymentMethod,
  resolvePaymentMethod,
  testCardOf,
} from './payment-methods.ts'

export const PAYMENT_INTENT_STATUSES = [
  'requires_payment_method',
  'requires_confirmation',
  'requires_action',
  'processing',
  'requires_capture',
  'canceled',
  'succeeded',
] as const
export type PaymentIntentStatus = (typeof PAYMENT_INTENT_STATUSES)[number]

export const SETUP_FUTURE_USAGES = ['on_session', 'off_session'] as const
export type SetupFutureUsage = (typeof SETUP_FUTURE_USAGES)[number]

export const CAPTURE_METHODS = ['automatic', 'automatic_async', 'manual'] as const
export type CaptureMethod = (typeof CAPTURE_METHODS)[number]

const CANCELLATION_REASONS = [
  'abandoned',
  'duplicate',
  'fraudulent',
  'requested_by_customer',
] as const

export interface PaymentIntentRecord extends StoredRecord {
  amount: number
  amountReceived: number
  amountCapturable: number
  currency: string
  customer: string | null
  paymentMethod: string | null
  status: PaymentIntentStatus
  latestCharge: string | null
  metadata: Metadata
  description: string | null
  setupFutureUsage: SetupFutureUsage | null
  captureMethod: CaptureMethod
  clientSecret: string
  /** The error of the last failed attempt, as `last_payment_error` shows it. */
  lastPaymentError: JsonObject | null
  nextAction: JsonObject | null
  canceledAt: number | null
  cancellationReason: string | null
  receiptEmail: string | null
  statementDescriptor: string | null
  statementDescriptorSuffix: string | null
}

const CREATE_PARAMS = [
  'amount',
  'amount_details',
  'application_fee_amount',
  'automatic_payment_methods',
  'capture_method',
  'confirm',
  'confirmation_method',
  'confirmation_token',
  'currency',
  'customer',
  'customer_account',
  'description',
  'error_on_requires_action',
  'excluded_payment_method_types',
  'hooks',
  'mandate',
  'mandate_data',
  'metadata',
  'off_session',
  'on_behalf_of',
  'payment_details',
  'payment_method',
  'payment_method_configuration',
  'payment_method_data',
  'payment_method_options',
  'payment_method_types',
  'radar_options',
  'receipt_email',
  'return_url',
  'setup_future_usage',
  'shipping',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'transfer_data',
  'transfer_group',
  'use_stripe_sdk',
] as const

const UPDATE_PARAMS = [
  'amount',
  'amount_details',
  'application_fee_amount',
  'capture_method',
  'currency',
  'customer',
  'customer_account',
  'description',
  'excluded_payment_method_types',
  'hooks',
  'metadata',
  'payment_details',
  'payment_method',
  'payment_method_configuration',
  'payment_method_data',
  'payment_method_options',
  'payment_method_types',
  'receipt_email',
  'setup_future_usage',
  'shipping',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'transfer_data',
  'transfer_group',
] as const

const CONFIRM_PARAMS = [
  'capture_method',
  'confirmation_token',
  'error_on_requires_action',
  'excluded_payment_method_types',
  'hooks',
  'mandate',
  'mandate_data',
  'off_session',
  'payment_details',
  'payment_method',
  'payment_method_data',
  'payment_method_options',
  'payment_method_types',
  'radar_options',
  'receipt_email',
  'return_url',
  'setup_future_usage',
  'shipping',
  'use_stripe_sdk',
] as const

export interface NewPaymentIntent {
  amount: number
  currency: string
  customer: string | null
  paymentMethod: string | null
  metadata: Metadata
  description: string | null
  setupFutureUsage: SetupFutureUsage | null
  captureMethod: CaptureMethod
  receiptEmail: string | null
  statementDescriptor?: string | null
  statementDescriptorSuffix?: string | null
}

/** Stores a PaymentIntent in `requires_payment_method` / `requires_confirmation` and emits `payment_intent.created`. */
export function insertPaymentIntent(
  state: EmulatorState,
  fields: NewPaymentIntent,
  origin: EventOrigin,
): PaymentIntentRecord {
  const id = newId('payment_intent')
  const record: PaymentIntentRecord = {
    id,
    created: state.nowSeconds(),
    seq: state.nextSeq(),
    amount: fields.amount,
    amountReceived: 0,
    amountCapturable: 0,
    currency: fields.currency,
    customer: fields.customer,
    paymentMethod: fields.paymentMethod,
    status: fields.paymentMethod === null ? 'requires_payment_method' : 'requires_confirmation',
    latestCharge: null,
    metadata: { ...fields.metadata },
    description: fields.description,
    setupFutureUsage: fields.setupFutureUsage,
    captureMethod: fields.captureMethod,
    clientSecret: clientSecret(id),
    lastPaymentError: null,
    nextAction: null,
    canceledAt: null,
    cancellationReason: null,
    receiptEmail: fields.receiptEmail,
    statementDescriptor: fields.statementDescriptor ?? null,
    statementDescriptorSuffix: fields.statementDescriptorSuffix ?? null,
  }
  state.paymentIntents.set(id, record)
  state.events.emit('payment_intent.created', renderPaymentIntent(record), origin)
  return record
}

export function renderPaymentIntent(record: PaymentIntentRecord): JsonObject {
  return withFields(template('payment_intent'), {
    id: record.id,
    object: 'payment_intent',
    amount: record.amount,
    amount_capturable: record.amountCapturable,
    amount_details: { tip: {} },
    amount_received: record.amountReceived,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: record.canceledAt,
    cancellation_reason: record.cancellationReason,
    capture_method: record.captureMethod,
    client_secret: record.clientSecret,
    confirmation_method: 'automatic',
    created: record.created,
    currency: record.currency,
    customer: record.customer,
    customer_account: null,
    description: record.description,
    excluded_payment_method_types: null,
    last_payment_error: record.lastPaymentError,
    latest_charge: record.latestCharge,
    livemode: false,
    managed_payments: null,
    metadata: record.metadata,
    next_action: record.nextAction,
    on_behalf_of: null,
    payment_method: record.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: {
      card: {
        installments: null,
        mandate_options: null,
        network: null,
        request_three_d_secure: 'automatic',
      },
    },
    payment_method_types: ['card'],
    processing: null,
    receipt_email: record.receiptEmail,
    review: null,
    setup_future_usage: record.setupFutureUsage,
    shipping: null,
    source: null,
    statement_descriptor: record.statementDescriptor,
    statement_descriptor_suffix: record.statementDescriptorSuffix,
    status: record.status,
    transfer_data: null,
    transfer_group: null,
  })
}

export interface ConfirmOptions {
  offSession: boolean
  origin: EventOrigin
  returnUrl?: string | null
  /** The customer already passed 3D Secure (hosted Checkout, or the test control). */
  authenticated?: boolean
}

/** How a confirmation ended; a decline is data here, the API handler turns it into a 402. */
export type ConfirmOutcome =
  | { kind: 'succeeded' | 'requires_capture' | 'requires_action' }
  | { kind: 'declined'; error: StripeHttpError }

/**
 * Charges the PaymentIntent's card and moves it on, as Stripe does on confirm:
 * succeeded (or requires_capture), requires_action (3D Secure on-session), or back to
 * requires_payment_method with `last_payment_error` and a failed charge.
 */
export function confirmPaymentIntent(
  state: EmulatorState,
  record: PaymentIntentRecord,
  options: ConfirmOptions,
): ConfirmOutcome {
  if (record.paymentMethod === null) {
    throw invalidRequest(
      "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method or ConfirmationToken.",
      undefined,
      'payment_intent_unexpected_state',
    )
  }
  const paymentMethod = requireRecord(
    state.paymentMethods,
    'PaymentMethod',
    record.paymentMethod,
    'payment_method',
  )
  checkPaymentMethodUsable(paymentMethod, record.customer)
  const outcome = testCardOf(paymentMethod).outcome
  switch (outcome.kind) {
    case 'succeeds':
      return chargeSucceeds(state, record, paymentMethod, options.origin)
    case 'declines':
      return chargeDeclines(state, record, paymentMethod, outcome.decline, options.origin)
    case 'requires_authentication':
      if (options.authenticated === true) {
        return chargeSucceeds(state, record, paymentMethod, options.origin)
      }
      if (options.offSession) {
        return chargeDeclines(state, record, paymentMethod, AUTHENTICATION_REQUIRED, options.origin)
      }
      return requireAction(state, record, options)
  }
}

/**
 * The outcome of the customer's 3D Secure challenge on a `requires_action` PaymentIntent
 * (what Stripe.js reports after the customer passes or fails it).
 */
export function completeAuthentication(
  state: EmulatorState,
  record: PaymentIntentRecord,
  passed: boolean,
  origin: EventOrigin,
): ConfirmOutcome {
  if (record.status !== 'requires_action') {
    throw invalidRequest(
      `PaymentIntent ${record.id} has status ${record.status}; only requires_action can be authenticated.`,
      undefined,
      'payment_intent_unexpected_state',
    )
  }
  record.nextAction = null
  if (passed) {
    return confirmPaymentIntent(state, record, { offSession: false, origin, authenticated: true })
  }
  const paymentMethod = requireRecord(
    state.paymentMethods,
    'PaymentMethod',
    record.paymentMethod ?? '',
  )
  const failure = {
    type: 'invalid_request_error',
    code: 'payment_intent_authentication_failure',
    message:
      'The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.',
  } as const
  record.status = 'requires_payment_method'
  record.paymentMethod = null
  record.lastPaymentError = errorBody({
    ...failure,
    payment_method: renderPaymentMethod(paymentMethod),
  })
  state.events.emit('payment_intent.payment_failed', renderPaymentIntent(record), origin)
  return {
    kind: 'declined',
    error: new StripeHttpError(400, { ...failure, payment_intent: renderPaymentIntent(record) }),
  }
}

/**
 * Stripe's rules for reusing a card: one saved to a customer only pays for that customer,
 * and one used once without being saved cannot be used again.
 */
function checkPaymentMethodUsable(paymentMethod: PaymentMethodRecord, customer: string | null) {
  if (paymentMethod.customer !== null && paymentMethod.customer !== customer) {
    throw invalidRequest(
      customer === null
        ? 'The provided PaymentMethod was previously attached to a Customer. To use it with a PaymentIntent, you must also supply the ID of the Customer that owns it.'
        : `The provided PaymentMethod ${paymentMethod.id} belongs to a different Customer than ${customer}.`,
      'payment_method',
    )
  }
  if (paymentMethod.customer === null && paymentMethod.consumed) {
    throw invalidRequest(
      'The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, shared with a connected account without Customer attachment, or was detached from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first.',
      'payment_method',
    )
  }
}

function chargeSucceeds(
  state: EmulatorState,
  record: PaymentIntentRecord,
  paymentMethod: PaymentMethodRecord,
  origin: EventOrigin,
): ConfirmOutcome {
  const capture = record.captureMethod !== 'manual'
  const charge = insertCharge(state, {
    amount: record.amount,
    currency: record.currency,
    customer: record.customer,
    paymentIntent: record.id,
    paymentMethod,
    description: record.description,
    metadata: record.metadata,
    failure: null,
    captured: capture,
  })
  if (capture) recordSettlement(state, charge, charge.amount)
  record.latestCharge = charge.id
  record.lastPaymentError = null
  record.nextAction = null
  if (
    record.setupFutureUsage !== null &&
    record.customer !== null &&
    paymentMethod.customer === null
  ) {
    attachPaymentMethod(state, paymentMethod, { id: record.customer }, origin)
  }
  if (paymentMethod.customer === null) paymentMethod.consumed = true
  state.events.emit('charge.succeeded', renderCharge(state, charge), origin)
  if (capture) {
    record.status = 'succeeded'
    record.amountReceived = record.amount
    state.events.emit('payment_intent.succeeded', renderPaymentIntent(record), origin)
    return { kind: 'succeeded' }
  }
  record.status = 'requires_capture'
  record.amountCapturable = record.amount
  state.events.emit('payment_intent.amount_capturable_updated', renderPaymentIntent(record), origin)
  return { kind: 'requires_capture' }
}

/** The balance transaction of captured money, less Stripe's fee. */
function recordSettlement(state: EmulatorState, charge: ChargeRecord, amount: number): void {
  const transaction = insertBalanceTransaction(state, {
    amount,
    currency: charge.currency,
    type: 'charge',
    source: charge.id,
    fee: cardProcessingFee(amount),
    description: charge.description,
    status: 'pending',
    availableOn: state.nowSeconds() + 2 * 24 * 60 * 60,
  })
  charge.balanceTransaction = transaction.id
}

function chargeDeclines(
  state: EmulatorState,
  record: PaymentIntentRecord,
  paymentMethod: PaymentMethodRecord,
  decline: CardDecline,
  origin: EventOrigin,
): ConfirmOutcome {
  const charge = insertCharge(state, {
    amount: record.amount,
    currency: record.currency,
    customer: record.customer,
    paymentIntent: record.id,
    paymentMethod,
    description: record.description,
    metadata: record.metadata,
    failure: decline,
    captured: false,
  })
  if (paymentMethod.customer === null) paymentMethod.consumed = true
  const fields = {
    type: 'card_error',
    code: decline.code,
    decline_code: decline.declineCode,
    message: decline.message,
    charge: charge.id,
    payment_method: renderPaymentMethod(paymentMethod),
    ...(decline.param === undefined ? {} : { param: decline.param }),
  } as const
  record.status = 'requires_payment_method'
  record.paymentMethod = null
  record.latestCharge = charge.id
  record.lastPaymentError = errorBody(fields)
  record.nextAction = null
  state.events.emit('charge.failed', renderCharge(state, charge), origin)
  state.events.emit('payment_intent.payment_failed', renderPaymentIntent(record), origin)
  return {
    kind: 'declined',
    error: new StripeHttpError(402, { ...fields, payment_intent: renderPaymentIntent(record) }),
  }
}

function requireAction(
  state: EmulatorState,
  record: PaymentIntentRecord,
  options: ConfirmOptions,
): ConfirmOutcome {
  const challengeUrl = `${state.baseUrl}/_emulator/3ds/${record.id}`
  record.status = 'requires_action'
  record.nextAction =
    options.returnUrl === undefined || options.returnUrl === null
      ? {
          type: 'use_stripe_sdk',
          use_stripe_sdk: {
            type: 'three_d_secure_redirect',
            source: `src_${randomToken(24)}`,
            stripe_js: challengeUrl,
          },
        }
      : {
          type: 'redirect_to_url',
          redirect_to_url: { return_url: options.returnUrl, url: challengeUrl },
        }
  state.events.emit('payment_intent.requires_action', renderPaymentIntent(record), options.origin)
  return { kind: 'requires_action' }
}

function unexpectedState(record: PaymentIntentRecord, action: string, allowed: string[]) {
  return new StripeHttpError(400, {
    type: 'invalid_request_error',
    code: 'payment_intent_unexpected_state',
    message: `You cannot ${action} this PaymentIntent because it has a status of ${record.status}. Only a PaymentIntent with one of the following statuses may be ${action === 'capture' ? 'captured' : `${action}ed`}: ${allowed.join(', ')}.`,
    payment_intent: renderPaymentIntent(record),
  })
}

function readAmount(params: Params, currency: string, name = 'amount'): number {
  const amount = params.requiredInteger(name)
  const minimum = minimumChargeAmount(currency)
  if (amount < minimum) {
    throw invalidRequest(
      `Amount must be at least ${formatMinorUnits(minimum, currency)} ${currency}`,
      params.path(name),
      'amount_too_small',
    )
  }
  if (amount > 99_999_999) {
    throw invalidRequest(
      `Amount must be no more than ${formatMinorUnits(99_999_999, currency)}`,
      params.path(name),
      'amount_too_large',
    )
  }
  return amount
}

/** `off_session=true` or `off_session=one_off|recurring`. */
function readOffSession(params: Params): boolean | undefined {
  const value = params.string('off_session')
  if (value === undefined) return undefined
  if (value === 'one_off' || value === 'recurring') return true
  return params.boolean('off_session')
}

function createPaymentIntent(state: EmulatorState, params: Params, origin: EventOrigin) {
  params.rejectUnknown(CREATE_PARAMS)
  const currency = params.requiredCurrency()
  const amount = readAmount(params, currency)
  const confirm = params.boolean('confirm') ?? false
  const offSession = readOffSession(params)
  if (offSession !== undefined && !confirm) {
    throw invalidRequest('You can only set `off_session` when `confirm` is true.', 'off_session')
  }
  const customerId = params.string('customer')
  const customer =
    customerId === undefined ? null : requireCustomer(state, customerId, 'customer').id
  const paymentMethodId = params.string('payment_method')
  const paymentMethod =
    paymentMethodId === undefined
      ? null
      : resolvePaymentMethod(state, paymentMethodId, 'payment_method')
  if (paymentMethod !== null) checkPaymentMethodUsable(paymentMethod, customer)
  if (confirm && paymentMethod === null) throw parameterMissing('payment_method')
  const record = insertPaymentIntent(
    state,
    {
      amount,
      currency,
      customer,
      paymentMethod: paymentMethod?.id ?? null,
      metadata: params.metadata(),
      description: params.nullableString('description') ?? null,
      setupFutureUsage: params.oneOf('setup_future_usage', SETUP_FUTURE_USAGES) ?? null,
      captureMethod: params.oneOf('capture_method', CAPTURE_METHODS) ?? 'automatic_async',
      receiptEmail: params.nullableString('receipt_email') ?? null,
      statementDescriptor: params.nullableString('statement_descriptor') ?? null,
      statementDescriptorSuffix: params.nullableString('statement_descriptor_suffix') ?? null,
    },
    origin,
  )
  if (confirm) {
    const outcome = confirmPaymentIntent(state, record, {
      offSession: offSession ?? false,
      origin,
      returnUrl: params.string('return_url') ?? null,
    })
    if (outcome.kind === 'declined') throw outcome.error
  }
  return renderPaymentIntent(record)
}

function updatePaymentIntent(state: EmulatorState, record: PaymentIntentRecord, params: Params) {
  params.rejectUnknown(UPDATE_PARAMS)
  const settled = record.status === 'succeeded' || record.status === 'canceled'
  for (const name of ['amount', 'currency', 'payment_method', 'customer'] as const) {
    if (settled && params.has(name)) {
      throw invalidRequest(
        `You cannot update ${name} on a PaymentIntent with status ${record.status}.`,
        name,
        'payment_intent_unexpected_state',
      )
    }
  }
  const currency = params.currency() ?? record.currency
  if (params.has('amount')) record.amount = readAmount(params, currency)
  record.currency = currency
  const customerId = params.string('customer')
  if (customerId !== undefined) record.customer = requireCustomer(state, customerId, 'customer').id
  const paymentMethodId = params.string('payment_method')
  if (paymentMethodId !== undefined) {
    const paymentMethod = resolvePaymentMethod(state, paymentMethodId, 'payment_method')
    checkPaymentMethodUsable(paymentMethod, record.customer)
    record.paymentMethod = paymentMethod.id
    if (record.status === 'requires_payment_method') record.status = 'requires_confirmation'
  }
  record.metadata = params.metadata(record.metadata)
  const description = params.nullableString('description')
  if (description !== undefined) record.description = description
  const receiptEmail = params.nullableString('receipt_email')
  if (receiptEmail !== undefined) record.receiptEmail = receiptEmail
  const setupFutureUsage = params.oneOf('setup_future_usage', SETUP_FUTURE_USAGES)
  if (setupFutureUsage !== undefined) record.setupFutureUsage = setupFutureUsage
  return renderPaymentIntent(record)
}

function confirmFromApi(
  state: EmulatorState,
  record: PaymentIntentRecord,
  params: Params,
  origin: EventOrigin,
) {
  params.rejectUnknown(CONFIRM_PARAMS)
  const confirmable = ['requires_payment_method', 'requires_confirmation', 'requires_action']
  if (!confirmable.includes(record.status)) throw unexpectedState(record, 'confirm', confirmable)
  const paymentMethodId = params.string('payment_method')
  if (paymentMethodId !== undefined) {
    record.paymentMethod = resolvePaymentMethod(state, paymentMethodId, 'payment_method').id
  }
  const setupFutureUsage = params.oneOf('setup_future_usage', SETUP_FUTURE_USAGES)
  if (setupFutureUsage !== undefined) record.setupFutureUsage = setupFutureUsage
  const outcome = confirmPaymentIntent(state, record, {
    offSession: readOffSession(params) ?? false,
    origin,
    returnUrl: params.string('return_url') ?? null,
  })
  if (outcome.kind === 'declined') throw outcome.error
  return renderPaymentIntent(record)
}

function capturePaymentIntent(
  state: EmulatorState,
  record: PaymentIntentRecord,
  params: Params,
  origin: EventOrigin,
) {
  params.rejectUnknown([
    'amount_to_capture',
    'application_fee_amount',
    'final_capture',
    'hooks',
    'metadata',
    'payment_details',
    'statement_descriptor',
    'statement_descriptor_suffix',
    'transfer_data',
  ])
  if (record.status !== 'requires_capture') {
    throw unexpectedState(record, 'capture', ['requires_capture'])
  }
  const amount = params.integer('amount_to_capture') ?? record.amountCapturable
  if (amount < 1 || amount > record.amountCapturable) {
    throw invalidRequest(
      `amount_to_capture must be between 1 and the capturable amount (${record.amountCapturable}).`,
      'amount_to_capture',
    )
  }
  const charge = requireRecord(state.charges, 'charge', record.latestCharge ?? '')
  charge.captured = true
  charge.amountCaptured = amount
  charge.amountRefunded = charge.amount - amount
  recordSettlement(state, charge, amount)
  record.metadata = params.metadata(record.metadata)
  record.status = 'succeeded'
  record.amountReceived = amount
  record.amountCapturable = 0
  state.events.emit('charge.captured', renderCharge(state, charge), origin)
  state.events.emit('payment_intent.succeeded', renderPaymentIntent(record), origin)
  return renderPaymentIntent(record)
}

function cancelPaymentIntent(
  state: EmulatorState,
  record: PaymentIntentRecord,
  params: Params,
  origin: EventOrigin,
) {
  params.rejectUnknown(['cancellation_reason'])
  const cancelable = [
    'requires_payment_method',
    'requires_capture',
    'requires_confirmation',
    'requires_action',
    'processing',
  ]
  if (!cancelable.includes(record.status)) throw unexpectedState(record, 'cancel', cancelable)
  if (record.status === 'requires_capture' && record.latestCharge !== null) {
    const charge = requireRecord(state.charges, 'charge', record.latestCharge)
    charge.amountRefunded = charge.amount
  }
  record.status = 'canceled'
  record.canceledAt = state.nowSeconds()
  record.cancellationReason = params.oneOf('cancellation_reason', CANCELLATION_REASONS) ?? null
  record.amountCapturable = 0
  record.nextAction = null
  state.events.emit('payment_intent.canceled', renderPaymentIntent(record), origin)
  return renderPaymentIntent(record)
}

export function requirePaymentIntent(
  state: EmulatorState,
  id: string,
  param = 'id',
): PaymentIntentRecord {
  return requireRecord(state.paymentIntents, 'payment_intent', id, param)
}

export function registerPaymentIntentRoutes(router: Router): void {
  router.post('/v1/payment_intents', ({ state, params, origin }) =>
    createPaymentIntent(state, params, origin),
  )
  router.get('/v1/payment_intents', ({ state, params }) => {
    const customer = params.string('customer')
    return listResponse({
      params,
      url: '/v1/payment_intents',
      objectName: 'payment_intent',
      records: state.paymentIntents.values(),
      filter: (record) => customer === undefined || record.customer === customer,
      render: renderPaymentIntent,
    })
  })
  router.get('/v1/payment_intents/:id', ({ state, pathParam }) =>
    renderPaymentIntent(requirePaymentIntent(state, pathParam('id'))),
  )
  router.post('/v1/payment_intents/:id', ({ state, params, pathParam }) =>
    updatePaymentIntent(state, requirePaymentIntent(state, pathParam('id')), params),
  )
  router.post('/v1/payment_intents/:id/confirm', ({ state, params, origin, pathParam }) =>
    confirmFromApi(state, requirePaymentIntent(state, pathParam('id')), params, origin),
  )
  router.post('/v1/payment_intents/:id/capture', ({ state, params, origin, pathParam }) =>
    capturePaymentIntent(state, requirePaymentIntent(state, pathParam('id')), params, origin),
  )
  router.post('/v1/payment_intents/:id/cancel', ({ state, params, origin, pathParam }) =>
    cancelPaymentIntent(state, requirePaymentIntent(state, pathParam('id')), params, origin),
  )
}
