import type { IncomingHttpHeaders } from 'node:http'
import { formatAmount, parseAmount } from './amounts.ts'
import type { JsonObject } from './json.ts'
import { verifyCoinpaymentsHmac } from './signing.ts'
import { CONFIRMS_NEEDED, type CoinpaymentsTransactionRecord, renderTxInfo } from './transaction.ts'

/** The fields `create_transaction` takes, checked; amounts in units of 10⁻⁸. */
export interface NewCoinpaymentsTransaction {
  amount1: bigint
  currency1: string
  currency2: string
  buyerEmail: string
  buyerName: string
  itemName: string
  itemNumber: string
  invoice: string
  custom: string
  ipnUrl: string | null
  successUrl: string | null
  cancelUrl: string | null
}

/** The hosted pages a transaction links to. */
export interface TransactionUrls {
  checkout_url: string
  status_url: string
  qrcode_url: string
}

/** What `/api.php` needs from the emulator. */
export interface CoinpaymentsApiContext {
  readonly publicKey: string
  readonly privateKey: string
  /** The stored transaction, or the error message when a currency cannot be converted. */
  createTransaction(fields: NewCoinpaymentsTransaction): CoinpaymentsTransactionRecord | string
  findTransaction(txnId: string): CoinpaymentsTransactionRecord | undefined
  transactionUrls(record: CoinpaymentsTransactionRecord): TransactionUrls
}

export interface ApiRequest {
  method: string
  headers: IncomingHttpHeaders
  body: string
}

/** CoinPayments answers every call with HTTP 200 and `{"error": "ok" | message, "result"}`. */
export function handleApiRequest(context: CoinpaymentsApiContext, request: ApiRequest): JsonObject {
  if (request.method !== 'POST') return apiError('Invalid request method, POST required')
  const signature = request.headers.hmac
  if (typeof signature !== 'string' || signature === '') {
    return apiError('No HMAC signature sent.')
  }
  const form = new URLSearchParams(request.body)
  // An unknown public key has no private key to check against: the same answer as a bad HMAC.
  if (
    form.get('key') !== context.publicKey ||
    !verifyCoinpaymentsHmac(request.body, context.privateKey, signature)
  ) {
    return apiError('HMAC signature does not match')
  }
  if (form.get('version') !== '1') return apiError('Invalid API version - no match')
  const format = form.get('format')
  if (format !== null && format !== 'json') {
    return apiError('The emulator only answers format=json')
  }
  switch (form.get('cmd')) {
    case 'create_transaction':
      return createTransaction(context, form)
    case 'get_tx_info':
      return getTxInfo(context, form)
    case null:
      return apiError('No command given')
    default:
      return apiError('Unknown command')
  }
}

function createTransaction(context: CoinpaymentsApiContext, form: URLSearchParams): JsonObject {
  const amount1 = parseAmount(form.get('amount') ?? '')
  if (amount1 === null || amount1 <= 0n) return apiError('Invalid amount')
  const currency1 = form.get('currency1') ?? ''
  const currency2 = form.get('currency2') ?? ''
  if (currency1 === '' || currency2 === '') return apiError('currency1 and currency2 are required')
  const buyerEmail = form.get('buyer_email') ?? ''
  if (!/^[^@\s]+@[^@\s]+$/.test(buyerEmail)) return apiError('buyer_email is required')
  for (const name of ['ipn_url', 'success_url', 'cancel_url']) {
    const value = form.get(name)
    if (value !== null && value !== '' && !URL.canParse(value)) return apiError(`Invalid ${name}`)
  }
  const created = context.createTransaction({
    amount1,
    currency1: currency1.toUpperCase(),
    currency2: currency2.toUpperCase(),
    buyerEmail,
    buyerName: form.get('buyer_name') ?? '',
    itemName: form.get('item_name') ?? '',
    itemNumber: form.get('item_number') ?? '',
    invoice: form.get('invoice') ?? '',
    custom: form.get('custom') ?? '',
    ipnUrl: nonEmpty(form.get('ipn_url')),
    successUrl: nonEmpty(form.get('success_url')),
    cancelUrl: nonEmpty(form.get('cancel_url')),
  })
  if (typeof created === 'string') return apiError(created)
  return {
    error: 'ok',
    result: {
      amount: formatAmount(created.amount2),
      txn_id: created.txnId,
      address: created.address,
      confirms_needed: String(CONFIRMS_NEEDED),
      timeout: created.timeExpires - created.timeCreated,
      ...context.transactionUrls(created),
    },
  }
}

function getTxInfo(context: CoinpaymentsApiContext, form: URLSearchParams): JsonObject {
  const record = context.findTransaction(form.get('txid') ?? '')
  if (record === undefined) return apiError('Invalid transaction ID!')
  return { error: 'ok', result: renderTxInfo(record) }
}

function nonEmpty(value: string | null): string | null {
  return value === null || value === '' ? null : value
}

export function apiError(message: string): JsonObject {
  return { error: message, result: [] }
}
