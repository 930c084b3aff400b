import type { JsonObject } from './json.ts'

export const BITPAY_INVOICE_STATUSES = [
  'new',
  'paid',
  'confirmed',
  'complete',
  'expired',
  'invalid',
  'declined',
] as const
export type BitpayInvoiceStatus = (typeof BITPAY_INVOICE_STATUSES)[number]

/** `false` when nothing unusual happened; BitPay sends the boolean, not a string. */
export type BitpayExceptionStatus = false | 'paidPartial' | 'paidOver'

/** How long a new invoice accepts payments (BitPay's window is 15 minutes). */
export const INVOICE_LIFETIME_MS = 15 * 60 * 1000

/** The coin every invoice is priced in; the emulator only offers BTC. */
export const TRANSACTION_CURRENCY = 'BTC'

/**
 * What BitPay lists as due in every coin it takes (in each coin's smallest unit), as its
 * `paymentTotals` does: the coin the buyer pays with is one of several, not the first.
 * The other coins' amounts are BTC's at fixed, made-up rates.
 */
export function paymentTotalsOf(record: { amountDue: number }): Record<string, number> {
  return {
    BCH: record.amountDue * 412,
    [TRANSACTION_CURRENCY]: record.amountDue,
    ETH: record.amountDue * 17_250_000_000,
  }
}
const SATOSHIS_PER_BTC = 100_000_000

/** One BitPay invoice as the emulator stores it. Amounts in the coin are in satoshis. */
export interface BitpayInvoiceRecord {
  id: string
  /** The invoice's own resource token, returned by BitPay on creation. */
  token: string
  status: BitpayInvoiceStatus
  exceptionStatus: BitpayExceptionStatus
  price: number
  currency: string
  orderId: string | null
  posData: string | null
  itemDesc: string | null
  itemCode: string | null
  notificationURL: string | null
  redirectURL: string | null
  closeURL: string | null
  extendedNotifications: boolean
  buyer: JsonObject | null
  /** Unix milliseconds, BitPay's unit for every time. */
  invoiceTime: number
  expirationTime: number
  /** Fiat units one BTC is worth for this invoice (fixed at creation, as BitPay locks the rate). */
  rate: number
  /** What the buyer must send, in satoshis. */
  amountDue: number
  amountPaid: number
  transactionCurrency: string | null
  url: string
}

/** The BTC amount for `price` at `rate`, in satoshis. */
export function satoshisFor(price: number, rate: number): number {
  return Math.round((price / rate) * SATOSHIS_PER_BTC)
}

function displayBtc(satoshis: number): string {
  return (satoshis / SATOSHIS_PER_BTC).toFixed(8)
}

/** The invoice as `GET /invoices/:id` (and the `data` of an extended IPN) shows it. */
export function renderInvoice(record: BitpayInvoiceRecord, currentTime: number): JsonObject {
  return {
    url: record.url,
    posData: record.posData,
    status: record.status,
    price: record.price,
    currency: record.currency,
    itemDesc: record.itemDesc,
    itemCode: record.itemCode,
    orderId: record.orderId,
    invoiceTime: record.invoiceTime,
    expirationTime: record.expirationTime,
    currentTime,
    id: record.id,
    lowFeeDetected: false,
    amountPaid: record.amountPaid,
    displayAmountPaid: displayBtc(record.amountPaid),
    exceptionStatus: record.exceptionStatus,
    targetConfirmations: 6,
    transactions: [],
    transactionSpeed: 'medium',
    buyer: record.buyer ?? {},
    redirectURL: record.redirectURL,
    closeURL: record.closeURL,
    notificationURL: record.notificationURL,
    extendedNotifications: record.extendedNotifications,
    autoRedirect: false,
    refundAddresses: [],
    refundAddressRequestPending: false,
    buyerProvidedInfo: {},
    paymentSubtotals: paymentTotalsOf(record),
    paymentTotals: paymentTotalsOf(record),
    paymentDisplayTotals: { [TRANSACTION_CURRENCY]: displayBtc(record.amountDue) },
    paymentDisplaySubTotals: { [TRANSACTION_CURRENCY]: displayBtc(record.amountDue) },
    exchangeRates: { [TRANSACTION_CURRENCY]: { [record.currency]: record.rate } },
    minerFees: { [TRANSACTION_CURRENCY]: { satoshisPerByte: 0, totalFee: 0 } },
    supportedTransactionCurrencies: { [TRANSACTION_CURRENCY]: { enabled: true } },
    transactionCurrency: record.transactionCurrency,
    token: record.token,
  }
}
