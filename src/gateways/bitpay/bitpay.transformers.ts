import { formatMinorUnits } from '../../core/money.ts'
import type { Payment } from '../../db/database.ts'
import type { PaymentUpdate } from '../gateway.ts'

/** BitPay invoice statuses (API 2.0.0). */
export const BITPAY_STATUSES = [
  'new',
  'paid',
  'confirmed',
  'complete',
  'expired',
  'invalid',
  'declined',
] as const
export type BitpayInvoiceStatus = (typeof BITPAY_STATUSES)[number]

export interface BitpayInvoice {
  id: string
  url: string
  status: BitpayInvoiceStatus
  exceptionStatus: false | 'paidPartial' | 'paidOver'
  orderId: string | null
  price: number
  currency: string
  /** Paid and due in the transaction currency's smallest unit (satoshis). */
  amountPaid: number
  /** What is due in the coin paid with (`paymentTotals[transactionCurrency]`); null before a payment. */
  amountDue: number | null
}

/** The invoice BitPay is asked to create for a payment: the price is a decimal in the payment's currency. */
export function invoiceRequest(
  payment: Payment,
  token: string,
  urls: { notification: string; redirect: string | null },
  description: string,
) {
  return {
    token,
    price: Number(formatMinorUnits(payment.amount, payment.currency)),
    currency: payment.currency.toUpperCase(),
    orderId: payment.id,
    posData: JSON.stringify({ payrail_payment_id: payment.id }),
    itemDesc: description,
    notificationURL: urls.notification,
    ...(urls.redirect && { redirectURL: urls.redirect }),
    extendedNotifications: true,
  }
}

/** Reads an invoice from BitPay's `{data: …}` answer, checked rather than assumed. */
export function readBitpayInvoice(answer: unknown): BitpayInvoice | undefined {
  const data = (answer as { data?: unknown } | null)?.data
  if (typeof data !== 'object' || data === null) return undefined
  const o = data as Record<string, unknown>
  const status = BITPAY_STATUSES.find((s) => s === o.status)
  if (
    typeof o.id !== 'string' ||
    typeof o.url !== 'string' ||
    !status ||
    typeof o.price !== 'number' ||
    typeof o.currency !== 'string'
  ) {
    return undefined
  }
  const totals = (
    typeof o.paymentTotals === 'object' && o.paymentTotals !== null ? o.paymentTotals : {}
  ) as Record<string, unknown>
  // `paymentTotals` lists what is due in every coin BitPay takes; `amountPaid` is in the one
  // the buyer paid with.
  const coin = typeof o.transactionCurrency === 'string' ? o.transactionCurrency : undefined
  const dueInCoin = coin === undefined ? undefined : totals[coin]
  const due = typeof dueInCoin === 'number' && dueInCoin > 0 ? dueInCoin : null
  return {
    id: o.id,
    url: o.url,
    status,
    exceptionStatus:
      o.exceptionStatus === 'paidPartial' || o.exceptionStatus === 'paidOver'
        ? o.exceptionStatus
        : false,
    orderId: typeof o.orderId === 'string' ? o.orderId : null,
    price: o.price,
    currency: o.currency.toLowerCase(),
    amountPaid: typeof o.amountPaid === 'number' ? o.amountPaid : 0,
    amountDue: due,
  }
}

/**
 * The share of the invoice paid, in coins paid of coins due; Payrail scales the payment
 * amount by it. Undefined when BitPay names no coin paid with or no total in it.
 */
function shareOf(invoice: BitpayInvoice) {
  if (invoice.amountDue === null) return undefined
  return {
    paid: BigInt(Math.round(invoice.amountPaid)),
    due: BigInt(Math.round(invoice.amountDue)),
  }
}

/**
 * What BitPay's own view of the invoice means for the payment: paid (seen, not yet
 * confirmed) is PROCESSING; confirmed and complete SUCCEEDED (OVERPAID when paidOver),
 * the point to fulfil; an invoice that expired with a partial payment keeps the
 * money received (the invoice stays partly unpaid); expired, invalid and declined FAIL.
 */
export function updateFromInvoice(invoice: BitpayInvoice): PaymentUpdate | undefined {
  const receivedShare = shareOf(invoice)
  switch (invoice.status) {
    case 'new':
      return invoice.exceptionStatus === 'paidPartial'
        ? { status: 'PROCESSING', gatewayPaymentId: invoice.id }
        : undefined
    case 'paid':
      return { status: 'PROCESSING', gatewayPaymentId: invoice.id }
    case 'confirmed':
    case 'complete':
      return {
        status: invoice.exceptionStatus === 'paidOver' ? 'OVERPAID' : 'SUCCEEDED',
        receivedShare,
        gatewayPaymentId: invoice.id,
      }
    case 'expired':
      // Partly paid: what was received is the share paid. Without a share to go by, the
      // report says nothing Payrail can book: acknowledged, the payment left as it is.
      if (invoice.exceptionStatus === 'paidPartial' && !receivedShare) return undefined
      return invoice.exceptionStatus === 'paidPartial'
        ? { status: 'SUCCEEDED', receivedShare, gatewayPaymentId: invoice.id }
        : {
            status: 'FAILED',
            error: { code: 'expired', message: 'The BitPay invoice expired unpaid' },
          }
    case 'invalid':
      return {
        status: 'FAILED',
        error: { code: 'invalid', message: 'The payment was not confirmed in time' },
      }
    case 'declined':
      return {
        status: 'FAILED',
        error: { code: 'declined', message: 'BitPay declined the payment' },
      }
  }
}
