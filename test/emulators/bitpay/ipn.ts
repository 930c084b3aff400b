import {
  type BitpayInvoiceRecord,
  paymentTotalsOf,
  renderInvoice,
  TRANSACTION_CURRENCY,
} from './invoice.ts'
import type { JsonObject } from './json.ts'

/**
 * The extended IPN's `event`. Codes and names follow BitPay's table
 * (https://developer.bitpay.com/reference/notification-codes) except `invoice_paidPartial`
 * and `invoice_declined`, whose codes the emulator picked itself.
 */
export const BITPAY_IPN_EVENTS = {
  paidPartial: { code: 1002, name: 'invoice_paidPartial' },
  paid: { code: 1003, name: 'invoice_paidInFull' },
  expired: { code: 1004, name: 'invoice_expired' },
  confirmed: { code: 1005, name: 'invoice_confirmed' },
  complete: { code: 1006, name: 'invoice_completed' },
  manuallyNotified: { code: 1012, name: 'invoice_manuallyNotified' },
  invalid: { code: 1013, name: 'invoice_failedToConfirm' },
  declined: { code: 1016, name: 'invoice_declined' },
} as const
export type BitpayIpnEventKind = keyof typeof BITPAY_IPN_EVENTS

/** The standard IPN body (https://developer.bitpay.com/reference/notifications-invoices). */
export function standardIpnBody(record: BitpayInvoiceRecord, currentTime: number): JsonObject {
  const buyer = record.buyer ?? {}
  return {
    id: record.id,
    url: record.url,
    posData: record.posData,
    status: record.status,
    price: record.price,
    currency: record.currency,
    invoiceTime: record.invoiceTime,
    expirationTime: record.expirationTime,
    currentTime,
    exceptionStatus: record.exceptionStatus,
    buyerFields: {
      buyerName: buyer.name ?? null,
      buyerEmail: buyer.email ?? null,
      buyerNotify: buyer.notify ?? false,
    },
    paymentSubtotals: paymentTotalsOf(record),
    paymentTotals: paymentTotalsOf(record),
    exchangeRates: { [TRANSACTION_CURRENCY]: { [record.currency]: record.rate } },
    amountPaid: record.amountPaid,
    orderId: record.orderId,
    transactionCurrency: record.transactionCurrency,
  }
}

/** The extended IPN body, sent when the invoice was created with `extendedNotifications`. */
export function extendedIpnBody(
  record: BitpayInvoiceRecord,
  kind: BitpayIpnEventKind,
  currentTime: number,
): JsonObject {
  const { token: _token, ...data } = renderInvoice(record, currentTime)
  return { event: { ...BITPAY_IPN_EVENTS[kind] }, data }
}

/** What goes out for a change of `record`: the format its creator asked for. */
export function ipnBody(
  record: BitpayInvoiceRecord,
  kind: BitpayIpnEventKind,
  currentTime: number,
): JsonObject {
  return record.extendedNotifications
    ? extendedIpnBody(record, kind, currentTime)
    : standardIpnBody(record, currentTime)
}
