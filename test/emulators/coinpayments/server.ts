import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { apiError, handleApiRequest } from './api.ts'
import { CoinpaymentsEmulator, type CoinpaymentsEmulatorOptions } from './emulator.ts'
import { renderHostedPage } from './hosted-page.ts'
import type { JsonObject } from './json.ts'

export { DEFAULT_USD_RATES, formatAmount, parseAmount } from './amounts.ts'
export type { NewCoinpaymentsTransaction, TransactionUrls } from './api.ts'
export type { Clock } from './clock.ts'
export type {
  CoinpaymentsEmulator,
  CoinpaymentsEmulatorOptions,
  ConfirmOptions,
  ReceiveOptions,
} from './emulator.ts'
export type { FailOptions, TimeoutOptions } from './faults.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { DeliveryAttempt, RetryPolicy } from './notifier.ts'
export { coinpaymentsHmac, verifyCoinpaymentsHmac } from './signing.ts'
export type { CoinpaymentsStatus } from './transaction.ts'
export { COINPAYMENTS_STATUS_TEXT, COINPAYMENTS_STATUSES } from './transaction.ts'

const MAX_BODY_BYTES = 1024 * 1024

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
    throw new Error('The CoinPayments emulator did not get a TCP port')
  }
  emulator.bind({ host, port: address.port }, () => closeServer(server, timers))
  return emulator
}

async function serve(
  emulator: CoinpaymentsEmulator,
  timers: Set<NodeJS.Timeout>,
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
    if (fault?.kind === 'timeout') {
      const timer = setTimeout(() => {
        timers.delete(timer)
        request.socket.destroy()
      }, fault.ms)
      timers.add(timer)
      return
    }
    const answer = handleApiRequest(emulator, {
      method: request.method ?? 'GET',
      headers: request.headers,
      body,
    })
    writeJson(response, 200, answer)
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
