import { formatAmount } from './amounts.ts'
import {
  COINPAYMENTS_STATUS_TEXT,
  type CoinpaymentsTransactionRecord,
  feeOf,
} from './transaction.ts'

/**
 * The form body of an `ipn_type=api` IPN, in CoinPayments' field order
 * (https://www.coinpayments.net/merchant-tools-ipn). Amounts carry 8 decimals.
 */
export function ipnForm(
  record: CoinpaymentsTransactionRecord,
  ipnId: string,
  merchantId: string,
): string {
  return new URLSearchParams({
    ipn_version: '1.0',
    ipn_type: 'api',
    ipn_mode: 'hmac',
    ipn_id: ipnId,
    merchant: merchantId,
    txn_id: record.txnId,
    status: String(record.status),
    status_text: COINPAYMENTS_STATUS_TEXT[record.status],
    currency1: record.currency1,
    currency2: record.currency2,
    amount1: formatAmount(record.amount1),
    amount2: formatAmount(record.amount2),
    fee: formatAmount(feeOf(record)),
    buyer_name: record.buyerName,
    email: record.buyerEmail,
    item_name: record.itemName,
    item_number: record.itemNumber,
    invoice: record.invoice,
    custom: record.custom,
    received_amount: formatAmount(record.received),
    received_confirms: String(record.receivedConfirms),
  }).toString()
}
