import { createHmac, timingSafeEqual } from 'node:crypto'
import { formatMinorUnits } from '../../core/money.ts'
import type { Gateway, GatewayContext, GatewayFailure, NormalizedEvent } from '../gateway.ts'
import { recordedCoinRefund } from '../gateway.ts'
import { readIpn, updateFromIpn } from './coinpayments.transformers.ts'

const DEFAULT_BASE_URL = 'https://www.coinpayments.net'

/**
 * CoinPayments' legacy API for `CRYPTO` payments: `create_transaction` gives the
 * checkout page; IPNs are trusted only with a matching `HMAC` (HMAC-SHA512 of the
 * raw body with the IPN secret), `ipn_mode=hmac`, our merchant id, and the
 * payment's own currency and amount.
 */
export const coinpaymentsGateway: Gateway = {
  name: 'coinpayments',
  capabilities: {
    hostedCheckout: true,
    savedMethodCharge: false,
    refund: true,
    statusSync: true,
    webhookVerification: true,
    methodTypes: ['CRYPTO'],
    internal: false,
    withdrawsPages: false,
    paysAfterFailure: true,
  },
  async refund(_ctx, _payment, refund) {
    return recordedCoinRefund(refund)
  },
  async startAsync(ctx, request) {
    const { payment } = request
    const ipnUrl = `${ctx.publicUrl}/v1/webhooks/coinpayments/${ctx.scope.tenantId}/${ctx.scope.environmentId}`
    try {
      const result = await call(ctx, 'create_transaction', {
        amount: formatMinorUnits(payment.amount, payment.currency),
        currency1: payment.currency.toUpperCase(),
        currency2: ctx.settings.currency2 ?? 'BTC',
        buyer_email: request.customer.email ?? 'customer@example.invalid',
        buyer_name: request.customer.name,
        item_name: request.description,
        invoice: payment.id,
        custom: payment.id,
        ipn_url: ipnUrl,
        ...(payment.success_url && { success_url: payment.success_url }),
        ...(payment.cancel_url && { cancel_url: payment.cancel_url }),
      })
      const txnId = result?.txn_id
      const url = result?.checkout_url
      if (typeof txnId !== 'string' || typeof url !== 'string') {
        return {
          ok: false,
          failure: {
            code: 'coinpayments_error',
            message: 'CoinPayments returned no transaction',
            retryable: false,
          },
        }
      }
      return { ok: true, url, trackingId: txnId, gatewayPaymentId: txnId }
    } catch (error) {
      // A lost answer keeps the codes that say so (`network_error`, `timeout`, `http_5xx`):
      // the transaction may exist all the same, so the payment is not cancelled while it may
      // be paid. A refusal (an API error, a 4xx, no keys) made nothing and is not retried.
      if (error instanceof CoinpaymentsCallError) return { ok: false, failure: error.failure }
      return {
        ok: false,
        failure: {
          code: 'coinpayments_error',
          message: error instanceof Error ? error.message : String(error),
          retryable: false,
        },
      }
    }
  },
  async parseWebhook(ctx, raw) {
    const secret = ctx.credentials?.ipn_secret
    if (!secret) return { ok: false, status: 404, reason: 'coinpayments is not connected' }
    const header = raw.headers.hmac
    const given = Buffer.from((Array.isArray(header) ? header[0] : header) ?? '', 'hex')
    const expected = createHmac('sha512', secret).update(raw.body).digest()
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return { ok: false, status: 400, reason: 'HMAC signature does not match' }
    }
    const ipn = readIpn(new URLSearchParams(raw.body.toString('utf8')))
    if (!ipn) return { ok: false, status: 400, reason: 'not a CoinPayments IPN' }
    if (ipn.merchant !== ctx.credentials?.merchant_id)
      return { ok: false, status: 400, reason: 'IPN for another merchant' }
    const update = updateFromIpn(ipn)
    if (!update) return { ok: true, events: [] }
    if (update.status === 'SUCCEEDED' || update.status === 'OVERPAID') {
      // Before money is counted as received, CoinPayments' own view must agree (get_tx_info).
      let info: Record<string, unknown> | undefined
      try {
        info = await call(ctx, 'get_tx_info', { txid: ipn.txnId })
      } catch (error) {
        // No view of the transaction (a timeout, a 5xx, or an API error such as a key without
        // the get_tx_info permission): unconfirmed, not refused. A 5xx has CoinPayments send
        // the IPN again; only its view of the transaction, read, can refuse it (400 below).
        return {
          ok: false,
          status: 502,
          reason: `CoinPayments could not be asked about the transaction (${error instanceof Error ? error.message : String(error)})`,
        }
      }
      const status = Number(info?.status)
      if (!(status >= 100 || status === 2))
        return {
          ok: false,
          status: 400,
          reason: 'CoinPayments does not report this transaction complete',
        }
    }
    const event: NormalizedEvent = {
      eventId: ipn.ipnId,
      type: `status.${ipn.status}`,
      // The transaction, and the payment it was made for (`custom`): a payment whose
      // `create_transaction` answer was lost tracks no transaction, or tracks the one a retry
      // made, and the money paid on the lost one is still its own. That lost one's
      // cancellation or time-out does not end a payment tracking another (`trackedObject`),
      // nor does the tracked one's while coins are on the lost one (`gatewayPaymentId`).
      target: { trackingId: ipn.txnId, paymentId: ipn.custom || undefined, trackedObject: true },
      update,
      payload: ipn,
    }
    return { ok: true, events: [event] }
  },
}

/** A call of the legacy API that failed, with what its failure says of the call. */
class CoinpaymentsCallError extends Error {
  constructor(readonly failure: GatewayFailure) {
    super(failure.message)
  }
}

/**
 * One call of the legacy API: a form body signed with HMAC-SHA512 of the exact bytes with the
 * private key. Throws a `CoinpaymentsCallError`: `network_error` or `timeout` when no answer
 * came, `http_<status>` for an HTTP error (a 5xx or 429 retryable), `coinpayments_error` for
 * the API's own refusal (`error` other than `ok`), which CoinPayments answers with a 200.
 */
async function call(
  ctx: GatewayContext,
  cmd: string,
  params: Record<string, string>,
): Promise<Record<string, unknown> | undefined> {
  const publicKey = ctx.credentials?.public_key
  const privateKey = ctx.credentials?.private_key
  if (!publicKey || !privateKey) throw new Error('CoinPayments connection has no keys')
  const body = new URLSearchParams({
    version: '1',
    key: publicKey,
    cmd,
    format: 'json',
    ...params,
  }).toString()
  const base = (ctx.settings.base_url ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
  let response: Response
  try {
    response = await fetch(`${base}/api.php`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        hmac: createHmac('sha512', privateKey).update(body).digest('hex'),
      },
      body,
      signal: AbortSignal.timeout(15_000),
    })
  } catch (error) {
    const timedOut = error instanceof Error && error.name === 'TimeoutError'
    throw new CoinpaymentsCallError({
      code: timedOut ? 'timeout' : 'network_error',
      message: `CoinPayments: ${error instanceof Error ? error.message : String(error)}`,
      retryable: true,
    })
  }
  const answer = (await response.json().catch(() => null)) as {
    error?: unknown
    result?: unknown
  } | null
  if (!response.ok) {
    const retryable = response.status >= 500 || response.status === 429
    throw new CoinpaymentsCallError({
      code: `http_${response.status}`,
      message: `CoinPayments answered ${response.status}: ${String(answer?.error ?? 'no answer')}`,
      retryable,
    })
  }
  // A 200 that is not the API's answer (cut short, or a proxy's page) says nothing of what
  // CoinPayments did: lost, as no answer is.
  if (answer === null || typeof answer.error !== 'string')
    throw new CoinpaymentsCallError({
      code: 'network_error',
      message: 'CoinPayments: its answer could not be read',
      retryable: true,
    })
  if (answer.error !== 'ok')
    throw new CoinpaymentsCallError({
      code: 'coinpayments_error',
      message: `CoinPayments: ${answer.error}`,
      retryable: false,
    })
  return typeof answer.result === 'object' && answer.result !== null
    ? (answer.result as Record<string, unknown>)
    : undefined
}
