import type { IncomingMessage, ServerResponse } from 'node:http'
import { CheckoutHttpError, notFound, requestInvalid, unauthorized } from './errors.ts'
import type { Fault, FaultInjector } from './faults.ts'
import { newId } from './ids.ts'
import { compact, type JsonObject, type JsonValue, parseJsonObject } from './json.ts'
import {
  capturePayment,
  readActionRequest,
  refundPayment,
  renderActions,
  renderPayment,
  renderPaymentResponse,
  requestPayment,
  voidPayment,
} from './payments.ts'
import { createSession, renderCreatedSession, renderSession } from './sessions.ts'
import type { ActionRecord, CheckoutSessionKind, CheckoutState, PaymentRecord } from './state.ts'

/** What the emulator saw of one API request, for tests to assert on. */
export interface RequestLogEntry {
  requestId: string
  method: string
  path: string
  body: JsonObject | null
  authorization: string | null
  idempotencyKey: string | null
  /** The status answered; null when the answer was withheld (timeout). */
  status: number | null
  replayed: boolean
  fault: Fault['kind'] | null
}

export interface ApiDependencies {
  state: CheckoutState
  faults: FaultInjector
  secretKey: string
  idempotency: Map<string, SavedResponse>
  requestLog: RequestLogEntry[]
}

export interface SavedResponse {
  method: string
  path: string
  body: string
  status: number
  response: JsonValue
}

interface Answer {
  status: number
  body: JsonValue | null
}

/**
 * One API request end to end: injected faults, `Authorization`, `Cko-Idempotency-Key`
 * replay, the route, and the `Cko-Request-Id` header every answer carries.
 */
export async function handleApiRequest(
  deps: ApiDependencies,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  rawBody: string,
): Promise<void> {
  const requestId = newId('request')
  const method = request.method ?? 'GET'
  const idempotencyKey = method === 'POST' ? headerValue(request, 'cko-idempotency-key') : null
  const entry: RequestLogEntry = {
    requestId,
    method,
    path: url.pathname,
    body: parseJsonObject(rawBody),
    authorization: headerValue(request, 'authorization'),
    idempotencyKey,
    status: null,
    replayed: false,
    fault: null,
  }
  deps.requestLog.push(entry)

  const fault = deps.faults.take(method, url.pathname)
  if (fault !== undefined) entry.fault = fault.kind
  if (fault?.kind === 'timeout' && !fault.afterProcessing) {
    await dropConnection(response, fault)
    return
  }
  const answer =
    fault?.kind === 'fail'
      ? { status: fault.status, body: null }
      : answerRequest(deps, entry, rawBody, requestId, url.searchParams)
  if (fault?.kind === 'timeout') {
    await dropConnection(response, fault)
    return
  }
  entry.status = answer.status
  const headers: Record<string, string> = { 'cko-request-id': requestId, 'cko-version': '1.0.0' }
  if (answer.body === null) {
    response.writeHead(answer.status, headers).end()
    return
  }
  headers['content-type'] = 'application/json; charset=utf-8'
  response.writeHead(answer.status, headers).end(JSON.stringify(answer.body))
}

function answerRequest(
  deps: ApiDependencies,
  entry: RequestLogEntry,
  rawBody: string,
  requestId: string,
  query: URLSearchParams,
): Answer {
  try {
    if (!isAuthorized(entry.authorization, deps.secretKey)) throw unauthorized()
    if (entry.body === null) throw requestInvalid('request_body_invalid')
    const key = entry.idempotencyKey
    const saved = key === null ? undefined : deps.idempotency.get(key)
    if (saved !== undefined) {
      // Checkout.com documents the replay, not a reused key with another request; the
      // emulator answers that case as a validation error.
      if (saved.method !== entry.method || saved.path !== entry.path || saved.body !== rawBody) {
        throw requestInvalid('idempotency_key_reused')
      }
      entry.replayed = true
      return { status: saved.status, body: saved.response }
    }
    const answer = route(deps.state, entry.method, entry.path, entry.body, query)
    // Only a processed request is saved: a validation error may be retried with the same key.
    if (key !== null && answer.status < 300) {
      deps.idempotency.set(key, {
        method: entry.method,
        path: entry.path,
        body: rawBody,
        status: answer.status,
        response: answer.body,
      })
    }
    return answer
  } catch (error) {
    if (!(error instanceof CheckoutHttpError)) throw error
    return { status: error.status, body: error.body(requestId) }
  }
}

/** The SDK sends `Bearer sk_sbox_…` for NAS keys and the bare key for older ones. */
function isAuthorized(header: string | null, secretKey: string): boolean {
  return header === secretKey || header === `Bearer ${secretKey}`
}

const SESSION_COLLECTIONS: Record<string, CheckoutSessionKind> = {
  'hosted-payments': 'hosted_payment',
  'payment-links': 'payment_link',
  'payment-sessions': 'payment_session',
}

function route(
  state: CheckoutState,
  method: string,
  path: string,
  body: JsonObject,
  query: URLSearchParams,
): Answer {
  const segments = path.split('/').filter((segment) => segment !== '')
  const [collection, id, sub] = segments
  if (collection === undefined || segments.length > 3) throw notFound()
  const sessionKind = SESSION_COLLECTIONS[collection]
  if (sessionKind !== undefined && sub === undefined) {
    if (method === 'POST' && id === undefined) {
      return {
        status: 201,
        body: renderCreatedSession(state, createSession(state, sessionKind, body)),
      }
    }
    if (method === 'GET' && id !== undefined) {
      const session = state.sessions.get(id)
      if (session === undefined || session.kind !== sessionKind) throw notFound()
      return { status: 200, body: renderSession(state, session) }
    }
    throw notFound()
  }
  if (collection !== 'payments') throw notFound()
  if (id === undefined) {
    if (method === 'GET') return { status: 200, body: listPaymentsByReference(state, query) }
    if (method !== 'POST') throw notFound()
    return { status: 201, body: renderPaymentResponse(state, requestPayment(state, body)) }
  }
  const payment = state.findPayment(id)
  if (payment === undefined) throw notFound()
  if (method === 'GET' && sub === undefined)
    return { status: 200, body: renderPayment(state, payment) }
  if (method === 'GET' && sub === 'actions') return { status: 200, body: renderActions(payment) }
  if (method !== 'POST') throw notFound()
  const actionRequest = readActionRequest(body)
  switch (sub) {
    case 'captures':
      return accepted(state, payment, capturePayment(state, payment, actionRequest))
    case 'refunds':
      return accepted(state, payment, refundPayment(state, payment, actionRequest))
    case 'voids':
      return accepted(state, payment, voidPayment(state, payment, actionRequest))
    default:
      throw notFound()
  }
}

/**
 * `GET /payments?reference=…&limit=…&skip=…`: the payments with that reference, newest
 * first, as `{limit, skip, total_count, data}`. The reference is required; `limit` is
 * 1–100 (default 10).
 */
function listPaymentsByReference(state: CheckoutState, query: URLSearchParams): JsonObject {
  const reference = query.get('reference')
  if (!reference) throw requestInvalid('reference_required')
  const limit = Number(query.get('limit') ?? 10)
  const skip = Number(query.get('skip') ?? 0)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw requestInvalid('limit_invalid')
  if (!Number.isInteger(skip) || skip < 0) throw requestInvalid('skip_invalid')
  // Newest first; payments requested in the same millisecond, the later made first.
  const matching = [...state.payments.values()]
    .filter((payment) => payment.reference === reference)
    .reverse()
    .sort((a, b) => b.requestedOn.getTime() - a.requestedOn.getTime())
  return {
    limit,
    skip,
    total_count: matching.length,
    data: matching.slice(skip, skip + limit).map((payment) => renderPayment(state, payment)),
  }
}

/** Captures, refunds and voids answer 202 with the new action's id. */
function accepted(state: CheckoutState, payment: PaymentRecord, action: ActionRecord): Answer {
  return {
    status: 202,
    body: compact({
      action_id: action.id,
      reference: action.reference ?? undefined,
      _links: { payment: { href: `${state.baseUrl}/payments/${payment.id}` } },
    }),
  }
}

async function dropConnection(
  response: ServerResponse,
  fault: Extract<Fault, { kind: 'timeout' }>,
): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, fault.ms)
    response.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  response.destroy()
}

function headerValue(request: IncomingMessage, name: string): string | null {
  const value = request.headers[name]
  if (value === undefined) return null
  return Array.isArray(value) ? (value[0] ?? null) : value
}
