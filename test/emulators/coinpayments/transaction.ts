import { formatAmount } from './amounts.ts'
import type { JsonObject } from './json.ts'

/**
 * CoinPayments' numeric payment statuses (https://www.coinpayments.net/merchant-tools-ipn):
 * below 0 failed, 0–99 pending, 100 (or 2, queued for a nightly payout) complete.
 */
export const COINPAYMENTS_STATUSES = {
  cancelled: -1,
  waiting: 0,
  received: 1,
  queuedForPayout: 2,
  complete: 100,
} as const
export type CoinpaymentsStatus = (typeof COINPAYMENTS_STATUSES)[keyof typeof COINPAYMENTS_STATUSES]

export const COINPAYMENTS_STATUS_TEXT: Readonly<Record<CoinpaymentsStatus, string>> = {
  [-1]: 'Cancelled / Timed Out',
  0: 'Waiting for buyer funds...',
  1: 'We have confirmed coin reception from the buyer',
  2: 'Queued for nightly payout',
  100: 'Complete',
}

/** How long a buyer has to pay, in seconds (CoinPayments' answer in `timeout`). */
export const TRANSACTION_TIMEOUT_SECONDS = 9_000
export const CONFIRMS_NEEDED = 2
/** CoinPayments' fee, taken from `amount2` (0.5 %). */
export const FEE_PER_MILLE = 5n

/** One `create_transaction` result as the emulator stores it; amounts in units of 10⁻⁸. */
export interface CoinpaymentsTransactionRecord {
  txnId: string
  status: CoinpaymentsStatus
  currency1: string
  currency2: string
  amount1: bigint
  amount2: bigint
  received: bigint
  receivedConfirms: number
  address: string
  buyerEmail: string
  buyerName: string
  itemName: string
  itemNumber: string
  invoice: string
  custom: string
  ipnUrl: string | null
  successUrl: string | null
  cancelUrl: string | null
  /** Unix seconds. */
  timeCreated: number
  timeExpires: number
  /** The key in the hosted pages' URLs (`checkout_url`, `status_url`). */
  pageKey: string
}

export function feeOf(record: CoinpaymentsTransactionRecord): bigint {
  return (record.amount2 * FEE_PER_MILLE) / 1000n
}

/** `get_tx_info`'s `result`. */
export function renderTxInfo(record: CoinpaymentsTransactionRecord): JsonObject {
  return {
    time_created: record.timeCreated,
    time_expires: record.timeExpires,
    status: record.status,
    status_text: COINPAYMENTS_STATUS_TEXT[record.status],
    type: 'coins',
    coin: record.currency2,
    amount: Number(record.amount2),
    amountf: formatAmount(record.amount2),
    received: Number(record.received),
    receivedf: formatAmount(record.received),
    recv_confirms: record.receivedConfirms,
    payment_address: record.address,
  }
}
