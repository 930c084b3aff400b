import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  apiError,
  invalidApiKey,
  invalidRequest,
  missingApiKey,
  rateLimited,
  StripeHttpError,
  unrecognizedUrl,
} from './errors.ts'
import { expandPaths } from './expand.ts'
import type { Fault, FaultInjector } from './faults.ts'
import { type FormObject, FormParseError, parseForm } from './form.ts'
import type { IdempotencyStore } from './idempotency.ts'
import { newId } from './ids.ts'
import type { JsonObject } from './json.ts'
import { Params } from './params.ts'
import type { Router } from './router.ts'
import { DEFAULT_API_VERSION, type EmulatorState } from './state.ts'

/** What the emulator saw of one API request, for tests to assert on. */
export interface RequestLogEntry {
  requestId: string
  method: string
  path: string
  params: FormObject
  idempotencyKey: string | null
  stripeVersion: string | null
  /** The status answered; null when the answer was withheld (timeout) or the client left. */
  status: number | null
  replayed: boolean
  fault: Fault['kind'] | null
  at: Date
}

export interface ApiDependencies {
  state: EmulatorState
  router: Router
  idempotency: IdempotencyStore
  faults: FaultInjector
  secretKey: string
  requestLog: RequestLogEntry[]
}

interface ApiResponse {
  status: number
  body: JsonObject
  replayed: boolean
  /** The request that first produced this response (differs on an idempotent replay). */
  originalRequestId: string
}

/**
 * One `/v1/…` request, end to end: injected faults, `Authorization`, bracketed
 * parameters, `Idempotency-Key` replay, the route's handler, `expand[]`, and Stripe's
 * headers (`request-id`, `stripe-version`, `idempotent-replayed`, `original-request`).
 */
export async function handleApiRequest(
  deps: ApiDependencies,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  body: string,
): Promise<void> {
  const requestId = newId('request')
  const method = request.method ?? 'GET'
  const idempotencyKey = method === 'POST' ? headerValue(request, 'idempotency-key') : null
  const stripeVersion = headerValue(request, 'stripe-version')
  const entry: RequestLogEntry = {
    requestId,
    method,
    path: url.pathname,
    params: {},
    idempotencyKey,
    stripeVersion,
    status: null,
    replayed: false,
    fault: null,
    at: deps.state.clock.now(),
  }
  deps.requestLog.push(entry)
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'request-id': requestId,
    'stripe-version': stripeVersion ?? DEFAULT_API_VERSION,
    'access-control-allow-origin': '*',
    'cache-control': 'no-cache, no-store',
  }
  if (idempotencyKey !== null) headers['idempotency-key'] = idempotencyKey

  const fault = deps.faults.take(method, url.pathname)
  entry.fault = fault?.kind ?? null
  if (fault?.kind === 'fail') {
    const error = fault.status === 429 ? rateLimited() : apiError(fault.status)
    send(response, error.status, headers, errorEnvelope(deps.state, error, requestId))
    entry.status = error.status
    return
  }
  if (fault?.kind === 'timeout' && !fault.afterProcessing) {
    if ((await hold(fault, request, response)) === 'gone') return
  }

  const answer = execute(deps, request, method, url, body, requestId, idempotencyKey, entry)
  if (fault?.kind === 'timeout' && fault.afterProcessing) {
    if ((await hold(fault, request, response)) === 'gone') return
  }
  if (idempotencyKey !== null) headers['original-request'] = answer.originalRequestId
  if (answer.replayed) headers['idempotent-replayed'] = 'true'
  send(response, answer.status, headers, answer.body)
  entry.status = answer.status
  entry.replayed = answer.replayed
}

function execute(
  deps: ApiDependencies,
  request: IncomingMessage,
  method: string,
  url: URL,
  body: string,
  requestId: string,
  idempotencyKey: string | null,
  entry: RequestLogEntry,
): ApiResponse {
  const fresh = (status: number, responseBody: JsonObject): ApiResponse => ({
    status,
    body: responseBody,
    replayed: false,
    originalRequestId: requestId,
  })
  try {
    authenticate(headerValue(request, 'authorization'), deps.secretKey)
    const values = readParams(method, url, body)
    entry.params = values
    const endpoint = `${method} ${url.pathname}`
    if (idempotencyKey !== null) {
      const found = deps.idempotency.lookup(idempotencyKey, endpoint, values)
      if (found.kind === 'replay') {
        return {
          status: found.response.status,
          body: found.response.body,
          replayed: true,
          originalRequestId: found.response.requestId,
        }
      }
    }
    const result = run(deps, method, url.pathname, values, requestId, idempotencyKey)
    // Stripe saves a result once the endpoint ran: a success or a card decline, not a
    // validation error (https://docs.stripe.com/api/idempotent_requests).
    if (idempotencyKey !== null && (result.status === 200 || result.status === 402)) {
      deps.idempotency.save(idempotencyKey, endpoint, values, { ...result, requestId })
    }
    return fresh(result.status, result.body)
  } catch (error) {
    if (error instanceof StripeHttpError) {
      return fresh(error.status, errorEnvelope(deps.state, error, requestId))
    }
    console.error('[stripe-emulator] handler failed', error)
    return fresh(500, errorEnvelope(deps.state, apiError(500), requestId))
  }
}

/** The handler's answer, a card decline included (it is saved for idempotent replay). */
function run(
  deps: ApiDependencies,
  method: string,
  path: string,
  values: FormObject,
  requestId: string,
  idempotencyKey: string | null,
): { status: number; body: JsonObject } {
  const match = deps.router.match(method, path)
  if (!match.found) throw unrecognizedUrl(method, path)
  const params = new Params(values)
  try {
    const result = match.handler({
      state: deps.state,
      params,
      origin: { requestId, idempotencyKey },
      pathParam: (name) => match.pathParams.get(name) ?? '',
    })
    return { status: 200, body: expandPaths(deps.state, result, params.strings('expand')) }
  } catch (error) {
    if (error instanceof StripeHttpError && error.status === 402) {
      return { status: 402, body: errorEnvelope(deps.state, error, requestId) }
    }
    throw error
  }
}

function authenticate(authorization: string | null, secretKey: string): void {
  const key = apiKeyFrom(authorization)
  if (key === null) throw missingApiKey()
  if (key !== secretKey) throw invalidApiKey(key)
}

/** `Bearer sk_…`, or HTTP Basic with the key as user name (`curl -u sk_…:`). */
function apiKeyFrom(authorization: string | null): string | null {
  if (authorization === null) return null
  const [scheme, credentials = ''] = authorization.trim().split(/\s+/, 2)
  if (scheme?.toLowerCase() === 'bearer') return credentials === '' ? null : credentials
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8')
    const user = decoded.split(':')[0] ?? ''
    return user === '' ? null : user
  }
  return null
}

/** The query string, and for a POST the form body over it, bracket keys nested. */
function readParams(method: string, url: URL, body: string): FormObject {
  try {
    const query = parseForm(url.search.slice(1))
    return method === 'POST' ? { ...query, ...parseForm(body) } : query
  } catch (error) {
    if (error instanceof FormParseError) throw invalidRequest(error.message, error.param)
    throw error
  }
}

function errorEnvelope(state: EmulatorState, error: StripeHttpError, requestId: string) {
  const body: JsonObject = { ...error.body }
  if (error.status !== 401) {
    body.request_log_url = `https://dashboard.stripe.com/test/logs/${requestId}?t=${state.nowSeconds()}`
  }
  return { error: body }
}

/**
 * Keeps the client waiting `fault.ms`. `gone`: the client hung up meanwhile, or the fault
 * resets the connection; `continue`: answer normally, late.
 */
function hold(
  fault: Extract<Fault, { kind: 'timeout' }>,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<'gone' | 'continue'> {
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer)
      resolve('gone')
    }
    const timer = setTimeout(() => {
      response.off('close', onClose)
      if (fault.mode === 'destroy') {
        request.socket.destroy()
        resolve('gone')
      } else {
        resolve(response.destroyed ? 'gone' : 'continue')
      }
    }, fault.ms)
    response.on('close', onClose)
  })
}

function send(
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: JsonObject,
): void {
  if (response.destroyed) return
  // Stripe answers pretty-printed JSON with two-space indents.
  response.writeHead(status, headers).end(JSON.stringify(body, null, 2))
}

function headerValue(request: IncomingMessage, name: string): string | null {
  const value = request.headers[name]
  if (Array.isArray(value)) return value[0] ?? null
  return value ?? null
}
