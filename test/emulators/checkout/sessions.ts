import { newId } from './ids.ts'
import { compact, type JsonObject } from './json.ts'
import {
  authorizePayment,
  endPayment,
  insertPendingPayment,
  resolveCustomer,
  storeCard,
} from './payments.ts'
import { RequestFields } from './request-fields.ts'
import type { CheckoutSessionKind, CheckoutState, PaymentRecord, SessionRecord } from './state.ts'
import type { CheckoutTestCard } from './test-cards.ts'

const DAY_MS = 24 * 60 * 60 * 1000

/**
 * `POST /hosted-payments`, `POST /payment-links`, `POST /payment-sessions`. Hosted pages and
 * payment sessions need `success_url` and `failure_url`; a payment link takes `return_url`.
 * All three need `billing.address.country`, as Checkout.com does.
 */
export function createSession(
  state: CheckoutState,
  kind: CheckoutSessionKind,
  body: JsonObject,
): SessionRecord {
  const fields = new RequestFields(body)
  const amount = fields.requiredAmount('amount')
  const currency = fields.requiredCurrency()
  const billing = fields.requiredObject('billing')
  const address = new RequestFields(billing).requiredObject('address')
  new RequestFields(address).requiredString('country')
  const needsResultUrls = kind !== 'payment_link'
  const now = state.clock.now()
  const session: SessionRecord = {
    kind,
    id: newId(kind),
    sessionId: newId('session'),
    status: 'Payment Pending',
    amount,
    currency,
    reference: fields.optionalString('reference'),
    description: fields.optionalString('description'),
    customer: fields.optionalObject('customer'),
    billing,
    metadata: fields.metadata(),
    successUrl: needsResultUrls
      ? fields.requiredUrl('success_url')
      : fields.optionalUrl('success_url'),
    failureUrl: needsResultUrls
      ? fields.requiredUrl('failure_url')
      : fields.optionalUrl('failure_url'),
    cancelUrl: fields.optionalUrl('cancel_url'),
    returnUrl: fields.optionalUrl('return_url'),
    paymentType: fields.paymentType(),
    capture: fields.optionalBoolean('capture') ?? true,
    paymentId: null,
    createdOn: now,
    expiresOn: new Date(now.getTime() + (kind === 'payment_link' ? 7 * DAY_MS : DAY_MS)),
  }
  state.sessions.set(session.id, session)
  return session
}

export interface CompleteSessionOptions {
  /** The card the customer enters (default `4242424242424242`). */
  card?: CheckoutTestCard | (string & {})
  expiryMonth?: number
  expiryYear?: number
}

export interface SessionCompletion {
  paymentId: string
  approved: boolean
  /** Where the customer's browser is sent: `success_url` or `failure_url` with Checkout.com's query. */
  redirectUrl: string
}

/**
 * The customer pays on the hosted page. An approved card marks the session
 * `Payment Received`; a declined one leaves it open (the customer may try another card).
 */
export function completeSession(
  state: CheckoutState,
  session: SessionRecord,
  options: CompleteSessionOptions = {},
): SessionCompletion {
  if (session.status !== 'Payment Pending') {
    throw new Error(`${session.id} is ${session.status}; it cannot be paid`)
  }
  const now = state.clock.now()
  const card = storeCard(state, {
    number: options.card ?? '4242424242424242',
    expiryMonth: options.expiryMonth ?? 12,
    expiryYear: options.expiryYear ?? now.getUTCFullYear() + 3,
  })
  const payment = authorizePayment(state, {
    amount: session.amount,
    currency: session.currency,
    reference: session.reference,
    description: session.description,
    card,
    customer: resolveCustomer(state, session.customer),
    metadata: session.metadata,
    paymentType: session.paymentType,
    merchantInitiated: false,
    capture: session.capture,
    sessionId: session.sessionId,
  })
  if (payment.approved) {
    session.status = 'Payment Received'
    session.paymentId = payment.id
  }
  const target = payment.approved ? session.successUrl : session.failureUrl
  return {
    paymentId: payment.id,
    approved: payment.approved,
    redirectUrl: redirectWithIds(session, target ?? session.returnUrl, payment),
  }
}

/**
 * The page's link lapses. Checkout.com creates no payment for an abandoned page; the
 * emulator records one `Expired` payment (`payment_expired`) so a gateway can see the
 * outcome through `GET /payments/{id}` and a webhook, as for an abandoned APM payment.
 */
export function expireSession(state: CheckoutState, session: SessionRecord): PaymentRecord {
  if (session.status !== 'Payment Pending') {
    throw new Error(`${session.id} is ${session.status}; it cannot expire`)
  }
  session.status = 'Expired'
  const payment = insertPendingPayment(state, {
    amount: session.amount,
    currency: session.currency,
    reference: session.reference,
    description: session.description,
    card: storeCard(state, { number: '4242424242424242', expiryMonth: 12, expiryYear: 2099 }),
    customer: null,
    metadata: session.metadata,
    paymentType: session.paymentType,
    merchantInitiated: false,
    capture: session.capture,
    sessionId: session.sessionId,
  })
  endPayment(state, payment, 'Expired')
  session.paymentId = payment.id
  return payment
}

/** The customer clicks “back” on the page: no payment, just the way to `cancel_url`. */
export function cancelSessionUrl(session: SessionRecord): string {
  const target = session.cancelUrl ?? session.returnUrl ?? session.failureUrl
  if (target === null) throw new Error(`${session.id} has no cancel_url`)
  return target
}

/**
 * Checkout.com appends `cko-session-id` to a hosted page's redirect and
 * `cko-payment-session-id` + `cko-payment-id` to a payment session's; the emulator adds
 * `cko-payment-id` to every one so a gateway can `GET /payments/{id}` directly.
 */
function redirectWithIds(
  session: SessionRecord,
  target: string | null,
  payment: PaymentRecord,
): string {
  if (target === null) throw new Error(`${session.id} has no URL to redirect to`)
  const url = new URL(target)
  if (session.kind === 'payment_session') url.searchParams.set('cko-payment-session-id', session.id)
  else url.searchParams.set('cko-session-id', session.sessionId)
  url.searchParams.set('cko-payment-id', payment.id)
  return url.toString()
}

export function hostedPageUrl(state: CheckoutState, session: SessionRecord): string {
  return `${state.baseUrl}/pay/${session.id}`
}

function selfUrl(state: CheckoutState, session: SessionRecord): string {
  const collection = {
    hosted_payment: 'hosted-payments',
    payment_link: 'payment-links',
    payment_session: 'payment-sessions',
  }[session.kind]
  return `${state.baseUrl}/${collection}/${session.id}`
}

/** The 201 answer of the create call. */
export function renderCreatedSession(state: CheckoutState, session: SessionRecord): JsonObject {
  const links = {
    self: { href: selfUrl(state, session) },
    redirect: { href: hostedPageUrl(state, session) },
  }
  if (session.kind === 'payment_session') {
    return {
      id: session.id,
      payment_session_token: Buffer.from(session.id).toString('base64'),
      payment_session_secret: `pss_${crypto.randomUUID()}`,
      _links: links,
    }
  }
  return compact({
    id: session.id,
    reference: session.reference ?? undefined,
    expires_on: session.kind === 'payment_link' ? session.expiresOn.toISOString() : undefined,
    _links: links,
  })
}

/** `GET /hosted-payments/{id}` and `GET /payment-links/{id}`. */
export function renderSession(state: CheckoutState, session: SessionRecord): JsonObject {
  const links: JsonObject = {
    self: { href: selfUrl(state, session) },
    redirect: { href: hostedPageUrl(state, session) },
  }
  if (session.paymentId !== null) {
    links.payment = { href: `${state.baseUrl}/payments/${session.paymentId}` }
  }
  const status =
    session.kind === 'payment_link' && session.status === 'Payment Pending'
      ? 'Active'
      : session.status
  return compact({
    id: session.id,
    status,
    payment_id: session.paymentId ?? undefined,
    amount: session.amount,
    currency: session.currency,
    reference: session.reference ?? undefined,
    description: session.description ?? undefined,
    customer: session.customer ?? undefined,
    billing: session.billing ?? undefined,
    metadata: session.metadata,
    success_url: session.successUrl ?? undefined,
    failure_url: session.failureUrl ?? undefined,
    cancel_url: session.cancelUrl ?? undefined,
    return_url: session.returnUrl ?? undefined,
    created_on: session.createdOn.toISOString(),
    expires_on: session.expiresOn.toISOString(),
    _links: links,
  })
}
