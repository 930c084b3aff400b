import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { handleApiRequest, isApiPath } from './api.ts'
import { BitpayEmulator, type BitpayEmulatorOptions } from './emulator.ts'
import { type ApiResponse, errorResponse } from './errors.ts'
import { renderHostedPage } from './hosted-page.ts'

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
export type { FailOptions, TimeoutOptions } from './faults.ts'
export type { BitpayExceptionStatus, BitpayInvoiceStatus } from './invoice.ts'
export { BITPAY_INVOICE_STATUSES } from './invoice.ts'
export type { BitpayIpnEventKind } from './ipn.ts'
export { BITPAY_IPN_EVENTS } from './ipn.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { DeliveryAttempt, RetryPolicy } from './notifier.ts'

const MAX_BODY_BYTES = 1024 * 1024

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
  const timers = new Set<NodeJS.Timeout>()
  const server = createServer((request, response) => {
    void serve(emulator, timers, request, response)
  })
  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') {
    throw new Error('The BitPay emulator did not get a TCP port')
  }
  emulator.bind({ host, port: address.port }, () => closeServer(server, timers))
  return emulator
}

async function serve(
  emulator: BitpayEmulator,
  timers: Set<NodeJS.Timeout>,
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
    if (isApiPath(url.pathname)) {
      const fault = emulator.faults.take()
      if (fault?.kind === 'fail') {
        write(response, errorResponse(fault.status, 'SERVER_ERROR', 'Injected failure'))
        return
      }
      if (fault?.kind === 'timeout') {
        const timer = setTimeout(() => {
          timers.delete(timer)
          request.socket.destroy()
        }, fault.ms)
        timers.add(timer)
        return
      }
    }
    write(
      response,
      handleApiRequest(emulator, {
        method: request.method ?? 'GET',
        url,
        headers: request.headers,
        body,
      }),
    )
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

/** The whole body as text; null when it exceeds `MAX_BODY_BYTES`. */
async function readBody(request: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk))
    size += buffer.length
    if (size > MAX_BODY_BYTES) return null
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function closeServer(server: Server, timers: Set<NodeJS.Timeout>): Promise<void> {
  for (const timer of timers) clearTimeout(timer)
  timers.clear()
  return new Promise((resolve, reject) => {
    server.close((error) => (error === undefined ? resolve() : reject(error)))
    // Held (timed-out) requests and keep-alive sockets would otherwise stall close().
    server.closeAllConnections()
  })
}
