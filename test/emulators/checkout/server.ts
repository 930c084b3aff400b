import type { IncomingMessage, ServerResponse } from 'node:http'
import { startHttpServer } from '../shared/http-server.ts'
import { readBody } from '../shared/read-body.ts'
import { type ApiDependencies, handleApiRequest } from './api.ts'
import { CheckoutEmulator, type CheckoutEmulatorOptions } from './emulator.ts'
import { handleHostedPage, isHostedPagePath, type PageAnswer } from './hosted-page.ts'
import { newId, newSandboxSecretKey, randomBase32 } from './ids.ts'

export type { RequestLogEntry } from './api.ts'
export type { CheckoutEmulator, CheckoutEmulatorOptions, CheckoutSdkOptions } from './emulator.ts'
export type { FailOptions, TimeoutOptions } from './faults.ts'
export type { JsonObject, JsonValue } from './json.ts'
export type { CompleteSessionOptions, SessionCompletion } from './sessions.ts'
export { ckoSignature, verifyCkoSignature } from './signing.ts'
export type { CheckoutPaymentStatus, CheckoutWebhookEventType } from './state.ts'
export { PAYMENT_STATUSES, WEBHOOK_EVENT_TYPES } from './state.ts'
export type { CheckoutTestCard } from './test-cards.ts'
export { CHECKOUT_TEST_CARDS } from './test-cards.ts'
export type { DeliveryAttempt, PendingDelivery, RetryPolicy } from './webhooks.ts'

/**
 * Starts a local stand-in for `https://api.sandbox.checkout.com` on `127.0.0.1` and a free
 * port. checkout-sdk-node talks to it through its `host` option:
 *
 * ```ts
 * const emulator = await startCheckoutEmulator({ webhookUrl: 'http://127.0.0.1:8080/hooks' })
 * const cko = new Checkout(emulator.secretKey, emulator.sdkOptions())
 * // = new Checkout('sk_sbox_…', { host: 'http://127.0.0.1:PORT', timeout: 5000 })
 * const payment = await cko.payments.get('pay_…')
 * await emulator.close()
 * ```
 */
export async function startCheckoutEmulator(
  options: CheckoutEmulatorOptions = {},
): Promise<CheckoutEmulator> {
  const emulator = new CheckoutEmulator(
    options.secretKey ?? newSandboxSecretKey(),
    options.signatureKey ?? randomBase32(32),
    options,
  )
  const deps: ApiDependencies = {
    state: emulator.state,
    faults: emulator.faults,
    secretKey: emulator.secretKey,
    idempotency: emulator.idempotency,
    requestLog: emulator.requestLog,
  }
  const server = await startHttpServer('Checkout.com', options, (request, response) =>
    serve(emulator, deps, request, response),
  )
  emulator.bind(server.address, server.close)
  return emulator
}

async function serve(
  emulator: CheckoutEmulator,
  deps: ApiDependencies,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', emulator.url)
    const body = await readBody(request)
    if (body === null) {
      response.writeHead(413, { 'cko-request-id': newId('request') }).end()
      return
    }
    if (isHostedPagePath(url.pathname)) {
      writePage(
        response,
        handleHostedPage(emulator.state, request.method ?? 'GET', url.pathname, body),
      )
      return
    }
    await handleApiRequest(deps, request, response, url, body)
  } catch (error) {
    console.error('[checkout-emulator] request failed', error)
    if (!response.headersSent && !response.destroyed) {
      response.writeHead(500, { 'cko-request-id': newId('request') }).end()
    }
  }
}

function writePage(response: ServerResponse, answer: PageAnswer): void {
  const requestId = newId('request')
  if (answer.kind === 'redirect') {
    response.writeHead(303, { location: answer.location, 'cko-request-id': requestId }).end()
    return
  }
  response
    .writeHead(answer.status, {
      'content-type': 'text/html; charset=utf-8',
      'cko-request-id': requestId,
    })
    .end(answer.html)
}
