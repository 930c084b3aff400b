import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HeldRequests } from '../shared/held-requests.ts'
import { startHttpServer } from '../shared/http-server.ts'
import { readBody } from '../shared/read-body.ts'
import { apiError, handleApiRequest } from './api.ts'
import { CoinpaymentsEmulator, type CoinpaymentsEmulatorOptions } from './emulator.ts'
import { renderHostedPage } from './hosted-page.ts'
import type { JsonObject } from './json.ts'

export type { FailOptions, TimeoutOptions } from '../shared/api-faults.ts'
export { DEFAULT_USD_RATES, formatAmount, parseAmount } from './amounts.ts'
export type { NewCoinpaymentsTransaction, TransactionUrls } from './api.ts'
export type { Clock } from './clock.ts'
export type {
  CoinpaymentsEmulator,
  CoinpaymentsEmulatorOptions,
  ConfirmOptions,
  ReceiveOptions,
} from './emulator.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { DeliveryAttempt, RetryPolicy } from './notifier.ts'
export { coinpaymentsHmac, verifyCoinpaymentsHmac } from './signing.ts'
export type { CoinpaymentsStatus } from './transaction.ts'
export { COINPAYMENTS_STATUS_TEXT, COINPAYMENTS_STATUSES } from './transaction.ts'

/**
 * Starts a local stand-in for CoinPayments' legacy API (`https://www.coinpayments.net/api.php`)
 * on `127.0.0.1` and a free port.
 *
 * ```ts
 * const coinpayments = await startCoinpaymentsEmulator({ merchantId: 'm1', ipnSecret: 's' })
 * // POST coinpayments.apiUrl with an HMAC-signed form body
 * coinpayments.receive(txnId, { fraction: 0.9 })
 * await coinpayments.close()
 * ```
 */
export async function startCoinpaymentsEmulator(
  options: CoinpaymentsEmulatorOptions = {},
): Promise<CoinpaymentsEmulator> {
  const emulator = new CoinpaymentsEmulator(options)
  const server = await startHttpServer('CoinPayments', options, (request, response, held) =>
    serve(emulator, held, request, response),
  )
  emulator.bind(server.address, server.close)
  return emulator
}

async function serve(
  emulator: CoinpaymentsEmulator,
  held: HeldRequests,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', emulator.url)
    const body = await readBody(request)
    if (body === null) {
      writeJson(response, 413, apiError('The body is too large'))
      return
    }
    if (url.pathname !== '/api.php') {
      const page = renderHostedPage(url.pathname, url.searchParams, (id) =>
        emulator.findTransaction(id),
      )
      if (page === null) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found')
        return
      }
      response.writeHead(page.status, { 'content-type': page.contentType }).end(page.body)
      return
    }
    const fault = emulator.faults.take()
    if (fault?.kind === 'fail') {
      writeJson(response, fault.status, apiError('Injected failure'))
      return
    }
    const handle = () =>
      handleApiRequest(emulator, {
        method: request.method ?? 'GET',
        headers: request.headers,
        body,
      })
    if (fault?.kind === 'timeout') {
      if (fault.afterProcessing) handle()
      held.resetAfter(request, fault.ms)
      return
    }
    writeJson(response, 200, handle())
  } catch (error) {
    console.error('[coinpayments-emulator] request failed', error)
    if (!response.headersSent && !response.destroyed) {
      writeJson(response, 500, apiError('Internal error'))
    }
  }
}

function writeJson(response: ServerResponse, status: number, body: JsonObject): void {
  response
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
    .end(JSON.stringify(body))
}
