import { assertNever } from '../../core/errors.ts'
import type { CardDetails, DeclineCode, PaymentUpdate } from '../gateway.ts'
import { fromCheckoutAmount } from './checkout.money.ts'

/**
 * Pure mappings between Checkout.com's objects and Payrail's. Amounts are read in Checkout.com's
 * units and kept in Payrail's minor units (`checkout.money.ts`: 5,000 CLP is `500000` there).
 */

export const PAYRAIL_PAYMENT_ID = 'payrail_payment_id'
/** Metadata flag on a hosted payment whose card the customer asked to save (`save_card_and_make_default`). */
export const PAYRAIL_SAVE_CARD = 'payrail_save_card'
/** Metadata flag on an off-session payment on a stored source, whose answer already told its outcome. */
export const PAYRAIL_OFF_SESSION = 'payrail_off_session'

/** Checkout.com payment statuses, as documented. */
export const CHECKOUT_STATUSES = [
  'Pending',
  'Authorized',
  'Card Verified',
  'Captured',
  'Partially Captured',
  'Declined',
  'Expired',
  'Canceled',
  'Voided',
  'Paid',
  'Refunded',
  'Partially Refunded',
] as const
export type CheckoutPaymentStatus = (typeof CHECKOUT_STATUSES)[number]

export interface CheckoutPaymentView {
  id: string
  status: CheckoutPaymentStatus
  amount: bigint
  currency: string
  reference: string | null
  paymentId: string | null
  responseCode: string | null
  responseSummary: string | null
  sourceId: string | null
  last4: string | null
  scheme: string | null
  /** The stored source (`src_…`) as a card Payrail can save, when the payment carries one. */
  card: CardDetails | null
  /** The payment was made on a page whose card the customer asked to save. */
  saveCard: boolean
  /** A merchant-initiated payment Payrail made on a stored source (`chargeSavedMethod`). */
  offSession: boolean
  /** `balances.total_captured`, when the object carries it. */
  totalCaptured: bigint | null
  /** The action the object reports (a webhook's, such as a refund's `act_…`), when it names one. */
  actionId: string | null
}

/** Reads the fields Payrail uses from a `GET /payments/{id}` or `POST /payments` answer, checked rather than assumed. */
export function readCheckoutPayment(value: unknown): CheckoutPaymentView | undefined {
  const fields = readPaymentFields(value)
  const status = CHECKOUT_STATUSES.find((s) => s === asRecord(value)?.status)
  if (!fields || !status) return undefined
  return { ...fields, status }
}

/** The fields an API payment and a webhook's `data` share (a webhook has no `status`). */
function readPaymentFields(value: unknown): Omit<CheckoutPaymentView, 'status'> | undefined {
  const o = asRecord(value)
  if (
    !o ||
    typeof o.id !== 'string' ||
    typeof o.amount !== 'number' ||
    !Number.isSafeInteger(o.amount) ||
    typeof o.currency !== 'string'
  )
    return undefined
  const metadata = asRecord(o.metadata) ?? {}
  const source = asRecord(o.source) ?? {}
  const captured = asRecord(o.balances)?.total_captured
  const currency = o.currency.toLowerCase()
  const sourceId = text(source.id)
  // The API says `last4`; webhooks say `last_4`.
  const last4 = text(source.last4) ?? text(source.last_4)
  const scheme = text(source.scheme)
  return {
    id: o.id,
    amount: fromCheckoutAmount(o.amount, currency),
    currency,
    reference: text(o.reference),
    paymentId: text(metadata[PAYRAIL_PAYMENT_ID]) ?? text(o.reference),
    responseCode: text(o.response_code),
    responseSummary: text(o.response_summary),
    sourceId,
    last4,
    scheme,
    card:
      sourceId?.startsWith('src_') === true
        ? {
            brand: scheme?.toLowerCase() ?? null,
            last4,
            expMonth: integer(source.expiry_month),
            expYear: integer(source.expiry_year),
            gatewayPaymentMethodId: sourceId,
          }
        : null,
    saveCard: metadata[PAYRAIL_SAVE_CARD] === 'true',
    offSession: metadata[PAYRAIL_OFF_SESSION] === 'true',
    totalCaptured:
      typeof captured === 'number' && Number.isSafeInteger(captured)
        ? fromCheckoutAmount(captured, currency)
        : null,
    actionId: text(o.action_id),
  }
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined
}

function text(value: unknown): string | null {
  if (typeof value === 'string') return value
  if (value === undefined || value === null) return null
  return String(value)
}

function integer(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) ? value : null
}

/**
 * What a Checkout.com payment's status says about the Payrail payment, when Payrail
 * reads it with `GET /payments/{id}` (the hosted page's return): Authorized is RESERVED,
 * Captured (or Paid) SUCCEEDED, with the card to save when the customer asked;
 * Expired FAILED; Canceled and Voided CANCELLED. A Declined payment changes nothing: the
 * hosted page stays open for another card, and the `payment_declined` webhook records the
 * attempt. Refund statuses are reported through refund updates, not here.
 */
export function updateFromStatus(payment: CheckoutPaymentView): PaymentUpdate | undefined {
  switch (payment.status) {
    case 'Authorized':
    case 'Card Verified':
      return reservedUpdate(payment)
    case 'Captured':
    case 'Partially Captured':
    case 'Paid':
      return capturedUpdate(payment)
    case 'Declined':
      return undefined
    case 'Expired':
      return expiredUpdate(payment.id)
    case 'Canceled':
    case 'Voided':
      return { status: 'CANCELLED', gatewayPaymentId: payment.id }
    case 'Pending':
    case 'Refunded':
    case 'Partially Refunded':
      return undefined
    default:
      return assertNever(payment.status)
  }
}

/** The card of a payment made on a page that was asked to save it; nothing otherwise. */
export function cardToSave(payment: Pick<CheckoutPaymentView, 'card' | 'saveCard'>) {
  return payment.saveCard ? (payment.card ?? undefined) : undefined
}

/**
 * The payment event types Payrail acts on
 * (https://www.checkout.com/docs/developer-resources/event-notifications/event-types).
 * Their `data` has no `status`: the type says what happened.
 */
export const CHECKOUT_EVENT_TYPES = [
  'payment_approved',
  'payment_pending',
  'payment_captured',
  'payment_paid',
  'payment_declined',
  'payment_expired',
  'payment_canceled',
  'payment_voided',
  'payment_refunded',
  'payment_refund_declined',
] as const
export type CheckoutEventType = (typeof CHECKOUT_EVENT_TYPES)[number]

export interface CheckoutEventView {
  id: string
  type: CheckoutEventType
  data: Omit<CheckoutPaymentView, 'status'>
}

/**
 * Reads a webhook body: `undefined` when it is not an event about a payment, `null` when
 * it is one of a type Payrail does not act on (acknowledged, ignored).
 */
export function readCheckoutEvent(value: unknown): CheckoutEventView | null | undefined {
  const body = asRecord(value)
  if (!body || typeof body.id !== 'string' || typeof body.type !== 'string') return undefined
  const type = CHECKOUT_EVENT_TYPES.find((t) => t === body.type)
  if (!type) return null
  const data = readPaymentFields(body.data)
  if (!data) return undefined
  return { id: body.id, type, data }
}

/** Authorized: the funds are held, the authorized amount reserved. */
function reservedUpdate(payment: Omit<CheckoutPaymentView, 'status'>): PaymentUpdate {
  return {
    status: 'RESERVED',
    amountReceived: payment.amount,
    currency: payment.currency,
    gatewayPaymentId: payment.id,
  }
}

/** Captured: what has been captured is received, and the card saved if the page asked. */
function capturedUpdate(payment: Omit<CheckoutPaymentView, 'status'>): PaymentUpdate {
  return {
    status: 'SUCCEEDED',
    amountReceived: payment.totalCaptured ?? payment.amount,
    currency: payment.currency,
    gatewayPaymentId: payment.id,
    card: cardToSave(payment),
  }
}

/**
 * What an event says about the payment: `payment_approved` is RESERVED (funds held, the
 * authorized amount); `payment_captured` (or `payment_paid`) SUCCEEDED with what has been
 * captured; `payment_declined` an attempt, the payment staying open for another card on
 * the hosted page (an off-session charge's decline FAILED, if its answer did not say so); `payment_expired`
 * FAILED; `payment_canceled` and `payment_voided` CANCELLED; refund events settle the
 * refund named by `action_id`. `payment_pending` changes nothing.
 */
export function updateFromEvent(event: CheckoutEventView): PaymentUpdate | undefined {
  const { data } = event
  switch (event.type) {
    case 'payment_approved':
      return reservedUpdate(data)
    case 'payment_captured':
    case 'payment_paid':
      return capturedUpdate(data)
    case 'payment_declined': {
      const attempt = {
        status: 'failed',
        errorCode: declineCodeOf(data.responseCode),
        errorMessage: data.responseSummary ?? 'Declined',
      } as const
      // An off-session charge's decline ends its payment. Its answer usually said so first
      // (the report is then a repeat); when that answer was lost or said Pending, this is
      // how the payment learns it.
      if (data.offSession)
        return {
          status: 'FAILED',
          gatewayPaymentId: data.id,
          attempt,
          error: { code: attempt.errorCode, message: attempt.errorMessage },
        }
      return { gatewayPaymentId: data.id, attempt }
    }
    case 'payment_expired':
      return expiredUpdate(data.id)
    case 'payment_canceled':
    case 'payment_voided':
      return { status: 'CANCELLED', gatewayPaymentId: data.id }
    case 'payment_refunded':
    case 'payment_refund_declined':
      if (!data.actionId) return undefined
      return {
        currency: data.currency,
        refund: {
          gatewayRefundId: data.actionId,
          matchByAmount: true,
          status: event.type === 'payment_refunded' ? 'succeeded' : 'failed',
          amount: data.amount,
          // The acquirer's response code (`20005`) and its summary ("Declined - Do Not Honour").
          ...(event.type === 'payment_refund_declined' && {
            failureCode: data.responseCode ?? undefined,
            failureMessage: data.responseSummary ?? undefined,
          }),
        },
      }
    case 'payment_pending':
      return undefined
    default:
      return assertNever(event.type)
  }
}

function expiredUpdate(gatewayPaymentId: string): PaymentUpdate {
  const error = { code: 'expired', message: 'The payment expired' }
  return {
    status: 'FAILED',
    gatewayPaymentId,
    error,
    // The charge ended at Checkout.com: an attempt, so that processing the payment again
    // makes a new charge (a new idempotency key) instead of replaying the expired one.
    attempt: { status: 'failed', errorCode: error.code, errorMessage: error.message },
  }
}

/** Checkout.com response codes, as Payrail's decline codes. */
export function declineCodeOf(responseCode: string | null): DeclineCode {
  switch (responseCode) {
    case '20051':
      return 'insufficient_funds'
    case '20054':
    case '30033':
      return 'expired_card'
    case '20150':
    case '20151':
      return 'authentication_required'
    default:
      return 'card_declined'
  }
}
