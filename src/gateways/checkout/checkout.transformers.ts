import type { DeclineCode, PaymentUpdate } from '../gateway.ts'

/** Pure mappings between Checkout.com's objects and Payrail's; amounts are minor units on both sides. */

export const PAYRAIL_PAYMENT_ID = 'payrail_payment_id'

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
}

/** Reads the fields Payrail uses from a payment or webhook `data`, checked rather than assumed. */
export function readCheckoutPayment(value: unknown): CheckoutPaymentView | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const o = value as Record<string, unknown>
  const status = CHECKOUT_STATUSES.find((s) => s === o.status)
  if (
    typeof o.id !== 'string' ||
    !status ||
    typeof o.amount !== 'number' ||
    typeof o.currency !== 'string'
  )
    return undefined
  const metadata = (
    typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {}
  ) as Record<string, unknown>
  const source = (typeof o.source === 'object' && o.source !== null ? o.source : {}) as Record<
    string,
    unknown
  >
  const text = (v: unknown) =>
    typeof v === 'string' ? v : v === undefined || v === null ? null : String(v)
  return {
    id: o.id,
    status,
    amount: BigInt(o.amount),
    currency: o.currency.toLowerCase(),
    reference: text(o.reference),
    paymentId: text(metadata[PAYRAIL_PAYMENT_ID]) ?? text(o.reference),
    responseCode: text(o.response_code),
    responseSummary: text(o.response_summary),
    sourceId: text(source.id),
    last4: text(source.last4),
    scheme: text(source.scheme),
  }
}

/**
 * What a Checkout.com status says about the payment: Authorized is RESERVED,
 * Captured (or Paid) SUCCEEDED; Declined and Expired FAILED; Canceled and Voided
 * CANCELLED. Refund statuses are reported through refund updates, not here.
 */
export function updateFromStatus(payment: CheckoutPaymentView): PaymentUpdate | undefined {
  switch (payment.status) {
    case 'Authorized':
    case 'Card Verified':
      return { status: 'RESERVED', amountReceived: payment.amount, gatewayPaymentId: payment.id }
    case 'Captured':
    case 'Partially Captured':
    case 'Paid':
      return { status: 'SUCCEEDED', amountReceived: payment.amount, gatewayPaymentId: payment.id }
    case 'Declined':
      return {
        status: 'FAILED',
        gatewayPaymentId: payment.id,
        error: {
          code: declineCodeOf(payment.responseCode),
          message: payment.responseSummary ?? 'Declined',
        },
      }
    case 'Expired':
      return {
        status: 'FAILED',
        gatewayPaymentId: payment.id,
        error: { code: 'expired', message: 'The payment expired' },
      }
    case 'Canceled':
    case 'Voided':
      return { status: 'CANCELLED', gatewayPaymentId: payment.id }
    case 'Pending':
    case 'Refunded':
    case 'Partially Refunded':
      return undefined
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
