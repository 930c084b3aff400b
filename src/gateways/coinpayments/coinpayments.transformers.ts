import type { PaymentUpdate } from '../gateway.ts'

/** A CoinPayments IPN, as posted (form fields). */
export interface CoinpaymentsIpn {
  ipnId: string
  merchant: string
  txnId: string
  /** What Payrail put in `custom`: the payment's id. */
  custom: string
  status: number
  currency1: string
  amount1: string
  receivedAmount: string
  amount2: string
}

export function readIpn(fields: URLSearchParams): CoinpaymentsIpn | undefined {
  const get = (key: string) => fields.get(key) ?? ''
  const status = Number(get('status'))
  if (get('ipn_mode') !== 'hmac' || !get('ipn_id') || !get('txn_id') || !Number.isInteger(status))
    return undefined
  // Coin amounts are decimals: anything else is not an IPN (and would not parse as coins).
  for (const key of ['received_amount', 'amount2']) {
    const value = get(key)
    if (value !== '' && !/^\d{1,20}(\.\d{1,18})?$/.test(value)) return undefined
  }
  return {
    ipnId: get('ipn_id'),
    merchant: get('merchant'),
    txnId: get('txn_id'),
    custom: get('custom'),
    status,
    currency1: get('currency1').toLowerCase(),
    amount1: get('amount1'),
    receivedAmount: get('received_amount') || '0',
    amount2: get('amount2') || '0',
  }
}

/** Coin amounts as integers of their 8 decimals, for an exact share. */
function coins(decimal: string): bigint {
  const [whole = '0', fraction = ''] = decimal.split('.')
  return BigInt(`${whole}${fraction.padEnd(8, '0').slice(0, 8)}`)
}

/**
 * CoinPayments statuses: below 0 failed or cancelled; 0 waiting; 1–99 pending
 * (1: coins received → PROCESSING); 100 or 2 complete, SUCCEEDED by the share of
 * coins received (OVERPAID above what was due, partly paid below it).
 */
export function updateFromIpn(ipn: CoinpaymentsIpn): PaymentUpdate | undefined {
  const must = { currency: ipn.currency1, amount: ipn.amount1 }
  if (ipn.status < 0)
    return {
      status: 'FAILED',
      // The transaction that ended: a payment whose coins are on another ends with that one.
      gatewayPaymentId: ipn.txnId,
      error: {
        code: 'cancelled',
        message: 'The CoinPayments transaction was cancelled or timed out',
      },
      mustMatch: must,
    }
  if (ipn.status >= 100 || ipn.status === 2) {
    const paid = coins(ipn.receivedAmount)
    const due = coins(ipn.amount2)
    return {
      status: paid > due ? 'OVERPAID' : 'SUCCEEDED',
      receivedShare: { paid, due },
      gatewayPaymentId: ipn.txnId,
      mustMatch: must,
    }
  }
  if (ipn.status >= 1) return { status: 'PROCESSING', gatewayPaymentId: ipn.txnId, mustMatch: must }
  return undefined
}
