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
  }
}

/**
 * What BitPay's own view of the invoice means for the payment. BitPay pays the merchant an
 * invoice's price or nothing: an underpaid invoice's coins, and what an overpaid one got
 * above its price, go back to the buyer (BitPay refunds them itself). So paid (seen, not
 * yet confirmed) is PROCESSING; confirmed and complete SUCCEEDED for the payment's amount,
 * the point to fulfil; an invoice that expired, underpaid or unpaid, FAILED, as do invalid
 * and declined ones; a partial payment on an open invoice changes nothing yet. Each names
 * its invoice (`gatewayPaymentId`): the end of one that does not hold the payment's coins
 * (a retry made another) ends nothing.
 */
export function updateFromInvoice(invoice: BitpayInvoice): PaymentUpdate | undefined {
  switch (invoice.status) {
    case 'new':
      return undefined
    case 'paid':
      return { status: 'PROCESSING', gatewayPaymentId: invoice.id }
    case 'confirmed':
    case 'complete':
      return {
        status: 'SUCCEEDED',
        gatewayPaymentId: invoice.id,
        // The price BitPay settles is the payment's, or the report is not about it.
        mustMatch: { currency: invoice.currency, amount: String(invoice.price) },
      }
    case 'expired':
      return invoice.exceptionStatus === 'paidPartial'
        ? {
            status: 'FAILED',
            gatewayPaymentId: invoice.id,
            error: {
              code: 'underpaid',
              message: 'The buyer paid less than the invoice; BitPay refunds what they sent',
            },
          }
        : {
            status: 'FAILED',
            gatewayPaymentId: invoice.id,
            error: { code: 'expired', message: 'The BitPay invoice expired unpaid' },
          }
    case 'invalid':
      return {
        status: 'FAILED',
        gatewayPaymentId: invoice.id,
        error: { code: 'invalid', message: 'The payment was not confirmed in time' },
      }
    case 'declined':
      return {
        status: 'FAILED',
        gatewayPaymentId: invoice.id,
        error: { code: 'declined', message: 'BitPay declined the payment' },
      }
  }
}
