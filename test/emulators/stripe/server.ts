import type { IncomingMessage, ServerResponse } from 'node:http'
import { startHttpServer } from '../shared/http-server.ts'
import { readBody } from '../shared/read-body.ts'
import { type ApiDependencies, handleApiRequest } from './api.ts'
import { type ControlResponse, handleControlRequest, isControlPath } from './controls.ts'
import { StripeEmulator, type StripeEmulatorOptions } from './emulator.ts'
import { randomToken } from './ids.ts'

export type { RequestLogEntry } from './api.ts'
export type {
  NewSeedPrice,
  StripeClientConfig,
  StripeEmulator,
  StripeEmulatorOptions,
} from './emulator.ts'
export type { FailOptions, TimeoutOptions } from './faults.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { CheckoutCompletion, CompleteCheckoutOptions } from './resources/checkout-sessions.ts'
export type { TestCardAlias } from './test-cards.ts'
export { TEST_CARD_ALIASES } from './test-cards.ts'
export type { DeliveryAttempt, PendingDelivery, RetryPolicy } from './webhooks.ts'

/**
 * Starts a local stand-in for `https://api.stripe.com` on `127.0.0.1` and a free port.
 * The official SDK talks to it unchanged:
 *
 * ```ts
 * const emulator = await startStripeEmulator()
 * const stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
 * // = { host: '127.0.0.1', port: emulator.port, protocol: 'http', maxNetworkRetries: 0 }
 * const customer = await stripe.customers.create({ email: 'jenny@example.com' })
 * await emulator.close()
 * ```
 */
export async function startStripeEmulator(
  options: StripeEmulatorOptions = {},
): Promise<StripeEmulator> {
  const emulator = new StripeEmulator(
    options.secretKey ?? `sk_test_${randomToken(24)}`,
    options.webhookSecret ?? `whsec_${randomToken(32)}`,
    options,
  )
  const deps: ApiDependencies = {
    state: emulator.state,
    router: emulator.router,
    idempotency: emulator.idempotency,
    faults: emulator.faults,
    secretKey: emulator.secretKey,
    requestLog: emulator.requestLog,
  }
  const server = await startHttpServer('Stripe', options, (request, response) =>
    serve(emulator, deps, request, response),
  )
  emulator.bind(server.address, server.close)
  return emulator
}

async function serve(
  emulator: StripeEmulator,
  deps: ApiDependencies,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', emulator.url)
    const body = await readBody(request)
    if (body === null) {
      response.writeHead(413, { 'content-type': 'application/json' }).end('{"error":{}}')
      return
    }
    if (isControlPath(url.pathname)) {
      const answer = await handleControlRequest(
        emulator,
        request.method ?? 'GET',
        url.pathname,
        body,
        request.headers['content-type'] ?? '',
      )
      writeControlResponse(response, answer)
      return
    }
    await handleApiRequest(deps, request, response, url, body)
  } catch (error) {
    console.error('[stripe-emulator] request failed', error)
    if (!response.headersSent && !response.destroyed) {
      response.writeHead(500, { 'content-type': 'application/json' })
      response.end(
        JSON.stringify({ error: { type: 'api_error', message: 'An unknown error occurred' } }),
      )
    }
  }
}

function writeControlResponse(response: ServerResponse, answer: ControlResponse): void {
  switch (answer.kind) {
    case 'json':
      response
        .writeHead(answer.status, { 'content-type': 'application/json' })
        .end(JSON.stringify(answer.body, null, 2))
      return
    case 'html':
      response
        .writeHead(answer.status, { 'content-type': 'text/html; charset=utf-8' })
        .end(answer.html)
      return
    case 'redirect':
      response.writeHead(303, { location: answer.location }).end()
      return
  }
}
