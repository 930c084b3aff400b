import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HeldRequests } from '../shared/held-requests.ts'
import { startHttpServer } from '../shared/http-server.ts'
import { readBody } from '../shared/read-body.ts'
import { handleApiRequest, isApiPath } from './api.ts'
import { BitpayEmulator, type BitpayEmulatorOptions } from './emulator.ts'
import { type ApiResponse, errorResponse } from './errors.ts'
import { renderHostedPage } from './hosted-page.ts'

export type { FailOptions, TimeoutOptions } from '../shared/api-faults.ts'
export type { NewBitpayInvoice } from './api.ts'
export { BITPAY_API_VERSION } from './api.ts'
export type { Clock } from './clock.ts'
export type {
  BitpayEmulator,
  BitpayEmulatorOptions,
  ForgedIpnResult,
  PayOptions,
} from './emulator.ts'
export type { BitpayErrorCode } from './errors.ts'
export type { BitpayExceptionStatus, BitpayInvoiceStatus } from './invoice.ts'
export { BITPAY_INVOICE_STATUSES } from './invoice.ts'
export type { BitpayIpnEventKind } from './ipn.ts'
export { BITPAY_IPN_EVENTS } from './ipn.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { DeliveryAttempt, RetryPolicy } from './notifier.ts'

/**
 * Starts a local stand-in for `https://bitpay.com` (REST API 2.0.0, token auth) on
 * `127.0.0.1` and a free port.
 *
 * ```ts
 * const bitpay = await startBitpayEmulator({ token: 'merchant-token' })
 * // POST `${bitpay.url}/invoices`, GET `${bitpay.url}/invoices/${id}?token=…`
 * bitpay.pay(id, { fraction: 0.5 })
 * await bitpay.close()
 * ```
 */
export async function startBitpayEmulator(
  options: BitpayEmulatorOptions = {},
): Promise<BitpayEmulator> {
  const emulator = new BitpayEmulator(
    options.token ?? randomBytes(22).toString('base64url'),
    options,
  )
  const server = await startHttpServer('BitPay', options, (request, response, held) =>
    serve(emulator, held, request, response),
  )
  emulator.bind(server.address, server.close)
  return emulator
}

async function serve(
  emulator: BitpayEmulator,
  held: HeldRequests,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', emulator.url)
    const body = await readBody(request)
    if (body === null) {
      write(response, errorResponse(413, 'INVALID_PARAMETER', 'The body is too large'))
      return
    }
    if (url.pathname === '/invoice' && request.method === 'GET') {
      write(response, renderHostedPage(emulator.findInvoice(url.searchParams.get('id') ?? '')))
      return
    }
    const handle = () =>
      handleApiRequest(emulator, {
        method: request.method ?? 'GET',
        url,
        headers: request.headers,
        body,
      })
    if (isApiPath(url.pathname)) {
      const fault = emulator.faults.take()
      if (fault?.kind === 'fail') {
        write(response, errorResponse(fault.status, 'SERVER_ERROR', 'Injected failure'))
        return
      }
      if (fault?.kind === 'timeout') {
        if (fault.afterProcessing) handle()
        held.resetAfter(request, fault.ms)
        return
      }
    }
    write(response, handle())
  } catch (error) {
    console.error('[bitpay-emulator] request failed', error)
    if (!response.headersSent && !response.destroyed) {
      write(response, errorResponse(500, 'SERVER_ERROR', 'Internal error'))
    }
  }
}

function write(response: ServerResponse, answer: ApiResponse): void {
  response.writeHead(answer.status, { 'content-type': answer.contentType }).end(answer.body)
}
