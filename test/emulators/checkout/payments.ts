import { createHash } from 'node:crypto'
import { actionNotAllowed, requestInvalid } from './errors.ts'
import { newId } from './ids.ts'
import { compact, type JsonObject, type JsonValue } from './json.ts'
import { RequestFields } from './request-fields.ts'
import type {
  ActionRecord,
  CheckoutActionType,
  CheckoutPaymentStatus,
  CheckoutState,
  CheckoutWebhookEventType,
  CustomerRef,
  PaymentRecord,
  StoredCard,
} from './state.ts'
import { APPROVED_RESPONSE, cardOutcome, REFUND_DECLINED } from './test-cards.ts'

export interface NewPayment {
  amount: number
  currency: string
  reference: string | null
  description: string | null
  card: StoredCard
  customer: CustomerRef | null
  metadata: JsonObject
  paymentType: string
  merchantInitiated: boolean
  capture: boolean
  sessionId: string | null
}

/** `POST /payments`: reads the body, resolves the source and customer, authorizes. */
export function requestPayment(state: CheckoutState, body: JsonObject): PaymentRecord {
  const fields = new RequestFields(body)
  const amount = fields.requiredAmount('amount')
  const currency = fields.requiredCurrency()
  const input: NewPayment = {
    amount,
    currency,
    reference: fields.optionalString('reference'),
    description: fields.optionalString('description'),
    card: resolveSource(state, fields.requiredObject('source')),
    customer: resolveCustomer(state, fields.optionalObject('customer')),
    metadata: fields.metadata(),
    paymentType: fields.paymentType(),
    merchantInitiated: fields.optionalBoolean('merchant_initiated') ?? false,
    capture: fields.optionalBoolean('capture') ?? true,
    sessionId: null,
  }
  return authorizePayment(state, input)
}

/**
 * Authorizes (and, with `capture`, captures) a card payment the way the sandbox does: the
 * test card decides approval; a decline is a `Declined` payment answered 201, not an error.
 */
export function authorizePayment(state: CheckoutState, input: NewPayment): PaymentRecord {
  const outcome = cardOutcome(input.card.number)
  const decline = outcome?.decline ?? null
  const now = state.clock.now()
  const response = decline ?? APPROVED_RESPONSE
  const authorization: ActionRecord = {
    id: newId('action'),
    type: 'Authorization',
    amount: input.amount,
    processedOn: now,
    approved: decline === null,
    responseCode: response.code,
    responseSummary: response.summary,
    reference: input.reference,
    metadata: input.metadata,
  }
  const payment: PaymentRecord = {
    id: newId('payment'),
    sessionId: input.sessionId,
    amount: input.amount,
    currency: input.currency,
    reference: input.reference,
    description: input.description,
    status: decline === null ? 'Authorized' : 'Declined',
    approved: decline === null,
    responseCode: response.code,
    responseSummary: response.summary,
    card: input.card,
    customer: input.customer,
    metadata: input.metadata,
    paymentType: input.paymentType,
    merchantInitiated: input.merchantInitiated,
    requestedOn: now,
    actions: [authorization],
  }
  state.payments.set(payment.id, payment)
  if (decline !== null) {
    emit(state, 'payment_declined', payment, authorization)
    return payment
  }
  emit(state, 'payment_approved', payment, authorization)
  if (!input.capture) return payment
  if (state.capturesToDefer > 0) {
    // Checkout.com processes the automatic capture after answering: the payment is
    // `Authorized` until `payment_captured` follows.
    state.capturesToDefer -= 1
    state.deferredCaptures.add(payment.id)
    return payment
  }
  capturePayment(state, payment, { amount: null, reference: input.reference })
  return payment
}

/** A `Pending` payment with no authorization yet (an abandoned page, a test's seed); no event. */
export function insertPendingPayment(state: CheckoutState, input: NewPayment): PaymentRecord {
  const payment: PaymentRecord = {
    id: newId('payment'),
    sessionId: input.sessionId,
    amount: input.amount,
    currency: input.currency,
    reference: input.reference,
    description: input.description,
    status: 'Pending',
    approved: false,
    responseCode: '10000',
    responseSummary: 'Pending',
    card: input.card,
    customer: input.customer,
    metadata: input.metadata,
    paymentType: input.paymentType,
    merchantInitiated: input.merchantInitiated,
    requestedOn: state.clock.now(),
    actions: [],
  }
  state.payments.set(payment.id, payment)
  return payment
}

export interface ActionRequest {
  amount: number | null
  reference: string | null
  metadata?: JsonObject
}

export function readActionRequest(body: JsonObject): ActionRequest {
  const fields = new RequestFields(body)
  return {
    amount: fields.optionalAmount('amount'),
    reference: fields.optionalString('reference'),
    metadata: fields.metadata(),
  }
}

/** `POST /payments/{id}/captures`: the whole remaining authorization unless `amount` is less. */
export function capturePayment(
  state: CheckoutState,
  payment: PaymentRecord,
  request: ActionRequest,
): ActionRecord {
  if (payment.status !== 'Authorized') throw actionNotAllowed('payment_not_capturable')
  const amount = request.amount ?? payment.amount
  if (amount === 0 || amount > payment.amount) throw requestInvalid('amount_invalid')
  const action = addAction(state, payment, 'Capture', amount, request)
  state.deferredCaptures.delete(payment.id)
  payment.status = amount < payment.amount ? 'Partially Captured' : 'Captured'
  emit(state, 'payment_captured', payment, action)
  return action
}

/** `POST /payments/{id}/refunds`: up to what was captured and not yet refunded. */
export function refundPayment(
  state: CheckoutState,
  payment: PaymentRecord,
  request: ActionRequest,
): ActionRecord {
  const refundable = balances(payment).available_to_refund
  if (refundable === 0) throw actionNotAllowed('payment_not_refundable')
  const amount = request.amount ?? refundable
  if (amount === 0) throw requestInvalid('amount_invalid')
  if (amount > refundable) throw requestInvalid('refund_amount_exceeds_balance')
  const action = addAction(state, payment, 'Refund', amount, request)
  // Accepted with 202 like every refund, and declined by the acquirer afterwards: the action
  // stays on the payment, not approved, and nothing is refunded.
  if (state.refundsToDecline > 0) {
    state.refundsToDecline -= 1
    action.approved = false
    action.responseCode = REFUND_DECLINED.code
    action.responseSummary = REFUND_DECLINED.summary
    emit(state, 'payment_refund_declined', payment, action)
    return action
  }
  payment.status = amount === refundable ? 'Refunded' : 'Partially Refunded'
  emit(state, 'payment_refunded', payment, action)
  return action
}

/** `POST /payments/{id}/voids`: only an authorization nothing was captured from. */
export function voidPayment(
  state: CheckoutState,
  payment: PaymentRecord,
  request: ActionRequest,
): ActionRecord {
  if (payment.status !== 'Authorized') throw actionNotAllowed('payment_not_voidable')
  const action = addAction(state, payment, 'Void', payment.amount, request)
  state.deferredCaptures.delete(payment.id)
  payment.status = 'Voided'
  emit(state, 'payment_voided', payment, action)
  return action
}

/** Test control: a `Pending` or `Authorized` payment ends `Expired` or `Canceled`. */
export function endPayment(
  state: CheckoutState,
  payment: PaymentRecord,
  status: Extract<CheckoutPaymentStatus, 'Expired' | 'Canceled'>,
): void {
  if (payment.status !== 'Pending' && payment.status !== 'Authorized') {
    throw new Error(`Payment ${payment.id} is ${payment.status}; it cannot become ${status}`)
  }
  state.deferredCaptures.delete(payment.id)
  payment.status = status
  emit(state, status === 'Expired' ? 'payment_expired' : 'payment_canceled', payment, null)
}

function addAction(
  state: CheckoutState,
  payment: PaymentRecord,
  type: CheckoutActionType,
  amount: number,
  request: ActionRequest,
): ActionRecord {
  const action: ActionRecord = {
    id: newId('action'),
    type,
    amount,
    processedOn: state.clock.now(),
    approved: true,
    responseCode: APPROVED_RESPONSE.code,
    responseSummary: APPROVED_RESPONSE.summary,
    reference: request.reference,
    metadata: request.metadata ?? {},
  }
  payment.actions.push(action)
  return action
}

function emit(
  state: CheckoutState,
  type: CheckoutWebhookEventType,
  payment: PaymentRecord,
  action: ActionRecord | null,
): void {
  state.emit({ id: newId('event'), type, createdOn: state.clock.now(), payment, action })
}

/** `source`: `{type: 'card', number, expiry_month, expiry_year}` or `{type: 'id', id: 'src_…'}`. */
export function resolveSource(state: CheckoutState, source: JsonObject): StoredCard {
  const fields = new RequestFields(source)
  const type = fields.requiredString('type')
  if (type === 'id') {
    const card = state.cards.get(fields.requiredString('id'))
    if (card === undefined) throw requestInvalid('source_id_invalid')
    return card
  }
  if (type !== 'card') throw requestInvalid('source_type_invalid')
  return storeCard(state, {
    number: fields.requiredString('number'),
    expiryMonth: fields.optionalAmount('expiry_month') ?? 12,
    expiryYear: fields.optionalAmount('expiry_year') ?? state.clock.now().getUTCFullYear() + 3,
  })
}

/** A card kept as a `src_…` source, reusable for merchant-initiated payments. */
export function storeCard(
  state: CheckoutState,
  card: { number: string; expiryMonth: number; expiryYear: number },
): StoredCard {
  const outcome = cardOutcome(card.number)
  if (outcome === null) throw requestInvalid('card_number_invalid')
  if (card.expiryMonth < 1 || card.expiryMonth > 12)
    throw requestInvalid('card_expiry_month_invalid')
  const stored: StoredCard = { sourceId: newId('source'), scheme: outcome.scheme, ...card }
  state.cards.set(stored.sourceId, stored)
  return stored
}

/** `customer`: `{id: 'cus_…'}`, or `{email, name}` which creates one. */
export function resolveCustomer(
  state: CheckoutState,
  customer: JsonObject | null,
): CustomerRef | null {
  if (customer === null) return null
  const fields = new RequestFields(customer)
  const id = fields.optionalString('id')
  if (id !== null) {
    const known = state.customers.get(id)
    if (known === undefined) throw requestInvalid('customer_id_invalid')
    return known
  }
  const created: CustomerRef = {
    id: newId('customer'),
    email: fields.optionalString('email'),
    name: fields.optionalString('name'),
  }
  state.customers.set(created.id, created)
  return created
}

export function balances(payment: PaymentRecord): {
  total_authorized: number
  total_voided: number
  available_to_void: number
  total_captured: number
  available_to_capture: number
  total_refunded: number
  available_to_refund: number
} {
  const sum = (type: CheckoutActionType) =>
    payment.actions
      .filter((action) => action.type === type && action.approved)
      .reduce((t, a) => t + a.amount, 0)
  const authorized = payment.approved ? payment.amount : 0
  const voided = sum('Void')
  const captured = sum('Capture')
  const refunded = sum('Refund')
  const open = payment.status === 'Authorized'
  return {
    total_authorized: authorized,
    total_voided: voided,
    available_to_void: open ? authorized - voided : 0,
    total_captured: captured,
    available_to_capture: open ? authorized - captured - voided : 0,
    total_refunded: refunded,
    available_to_refund: captured - refunded,
  }
}

export function renderSource(card: StoredCard): JsonObject {
  return {
    id: card.sourceId,
    type: 'card',
    expiry_month: card.expiryMonth,
    expiry_year: card.expiryYear,
    scheme: card.scheme,
    last4: card.number.slice(-4),
    fingerprint: createHash('sha256').update(card.number).digest('hex').toUpperCase(),
    bin: card.number.slice(0, 6),
    card_type: 'CREDIT',
    card_category: 'CONSUMER',
    issuer_country: 'GB',
  }
}

function renderCustomer(customer: CustomerRef | null): JsonValue | undefined {
  if (customer === null) return undefined
  return compact({
    id: customer.id,
    email: customer.email ?? undefined,
    name: customer.name ?? undefined,
  })
}

function paymentLinks(state: CheckoutState, payment: PaymentRecord): JsonObject {
  const self = `${state.baseUrl}/payments/${payment.id}`
  const links: JsonObject = { self: { href: self }, actions: { href: `${self}/actions` } }
  if (payment.status === 'Authorized') {
    links.capture = { href: `${self}/captures` }
    links.void = { href: `${self}/voids` }
  }
  if (balances(payment).available_to_refund > 0) links.refund = { href: `${self}/refunds` }
  return links
}

/** `GET /payments/{id}`. */
export function renderPayment(state: CheckoutState, payment: PaymentRecord): JsonObject {
  return compact({
    id: payment.id,
    requested_on: payment.requestedOn.toISOString(),
    source: renderSource(payment.card),
    amount: payment.amount,
    amount_requested: payment.amount,
    currency: payment.currency,
    payment_type: payment.paymentType,
    merchant_initiated: payment.merchantInitiated,
    reference: payment.reference ?? undefined,
    description: payment.description ?? undefined,
    status: payment.status,
    approved: payment.approved,
    balances: balances(payment),
    risk: { flagged: false },
    customer: renderCustomer(payment.customer),
    metadata: payment.metadata,
    scheme_id: '114041110000',
    _links: paymentLinks(state, payment),
  })
}

/** The 201 answer of `POST /payments` (and of a hosted payment's completion). */
export function renderPaymentResponse(state: CheckoutState, payment: PaymentRecord): JsonObject {
  const authorization = payment.actions[0]
  return compact({
    id: payment.id,
    action_id: authorization?.id,
    amount: payment.amount,
    currency: payment.currency,
    approved: payment.approved,
    status: payment.status,
    auth_code: payment.approved ? '770687' : undefined,
    response_code: payment.responseCode,
    response_summary: payment.responseSummary,
    balances: balances(payment),
    risk: { flagged: false },
    source: renderSource(payment.card),
    customer: renderCustomer(payment.customer),
    processed_on: payment.requestedOn.toISOString(),
    reference: payment.reference ?? undefined,
    metadata: payment.metadata,
    _links: paymentLinks(state, payment),
  })
}

/** `GET /payments/{id}/actions`: newest first, as Checkout.com lists them. */
export function renderActions(payment: PaymentRecord): JsonObject[] {
  return [...payment.actions].reverse().map((action) =>
    compact({
      id: action.id,
      type: action.type,
      processed_on: action.processedOn.toISOString(),
      amount: action.amount,
      approved: action.approved,
      response_code: action.responseCode,
      response_summary: action.responseSummary,
      reference: action.reference ?? undefined,
      metadata: action.metadata,
    }),
  )
}

/**
 * Events about an authorization carry the card, customer and payment type; the others
 * (captures, refunds, voids, expiry) only the payment's ids, amounts and balances, as in
 * Checkout.com's examples (https://www.checkout.com/docs/developer-resources/event-notifications/event-types).
 */
const AUTHORIZATION_EVENTS: ReadonlySet<CheckoutWebhookEventType> = new Set([
  'payment_approved',
  'payment_pending',
  'payment_declined',
])

/**
 * The `data` of a webhook about this payment (and the action that caused it), as it is at
 * the moment of the event. Like Checkout.com's, it has no `status` or `approved`: the event
 * `type` says what happened.
 */
export function renderEventData(
  type: CheckoutWebhookEventType,
  payment: PaymentRecord,
  action: ActionRecord | null,
): JsonObject {
  const approved = action?.approved ?? payment.approved
  const authorization = AUTHORIZATION_EVENTS.has(type)
  return compact({
    id: payment.id,
    action_id: action?.id,
    reference: payment.reference ?? undefined,
    amount: action?.amount ?? payment.amount,
    currency: payment.currency,
    processed_on: (action?.processedOn ?? payment.requestedOn).toISOString(),
    response_code: action?.responseCode ?? payment.responseCode,
    response_summary: action?.responseSummary ?? payment.responseSummary,
    balances: balances(payment),
    metadata: payment.metadata,
    auth_code: authorization && approved ? '770687' : undefined,
    payment_type: authorization ? payment.paymentType : undefined,
    customer: authorization ? renderCustomer(payment.customer) : undefined,
    risk: authorization ? { flagged: false, score: 0 } : undefined,
    scheme_id: authorization ? '114041110000' : undefined,
    source: authorization ? renderEventSource(payment.card) : undefined,
  })
}

/** The card as webhooks show it: `last_4` where the API says `last4`. */
function renderEventSource(card: StoredCard): JsonObject {
  const { last4, ...rest } = renderSource(card)
  return { ...rest, last_4: last4 ?? null }
}
