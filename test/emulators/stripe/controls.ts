import type { StripeEmulator } from './emulator.ts'
import { invalidRequest, StripeHttpError } from './errors.ts'
import { FAILURE_STATUSES } from './faults.ts'
import { type FormObject, type FormValue, parseForm } from './form.ts'
import {
  answerChallengePage,
  challengePage,
  checkoutPage,
  type PageResponse,
  payCheckoutPage,
} from './hosted-pages.ts'
import { isJsonObject, type JsonObject, type JsonValue } from './json.ts'
import { Params } from './params.ts'
import { REFUND_FAILURE_REASONS } from './resources/refunds.ts'
import type { HttpMethod } from './router.ts'
import {
  balanceTransactionSeed,
  customerSeed,
  invoiceSeed,
  priceSeed,
  productSeed,
  subscriptionScheduleSeed,
  subscriptionSeed,
} from './seed-params.ts'
import { isTestCardAlias, TEST_CARD_ALIASES } from './test-cards.ts'
import {
  DELIVERY_MODES,
  DELIVERY_ORDERS,
  type DeliveryAttempt,
  type PendingDelivery,
  type RetryPolicy,
} from './webhooks.ts'

export type ControlResponse = { kind: 'json'; status: number; body: JsonValue } | PageResponse

/** A control request's body: JSON or form, read with the API's parameter rules. */
interface ControlInput {
  params: Params
  /** The raw JSON body, when one was sent (for `object` in `POST /_emulator/events`). */
  json: JsonObject | null
  pathParam: string
}

type ControlHandler = (
  emulator: StripeEmulator,
  input: ControlInput,
) => ControlResponse | Promise<ControlResponse>

interface ControlRoute {
  method: HttpMethod
  pattern: RegExp
  handler: ControlHandler
  description: string
}

const SEEDERS: Readonly<Record<string, (emulator: StripeEmulator, params: Params) => JsonObject>> =
  {
    customers: (emulator, params) => emulator.seedCustomer(customerSeed(params)),
    products: (emulator, params) => emulator.seedProduct(productSeed(params)),
    prices: (emulator, params) => emulator.seedPrice(priceSeed(params)),
    invoices: (emulator, params) => emulator.seedInvoice(invoiceSeed(params)),
    subscriptions: (emulator, params) => emulator.seedSubscription(subscriptionSeed(params)),
    subscription_schedules: (emulator, params) =>
      emulator.seedSubscriptionSchedule(subscriptionScheduleSeed(params)),
    balance_transactions: (emulator, params) =>
      emulator.seedBalanceTransaction(balanceTransactionSeed(params)),
    payment_methods: (emulator, params) => {
      const card = params.string('card') ?? 'pm_card_visa'
      if (!isTestCardAlias(card)) {
        throw invalidRequest(`card must be one of ${TEST_CARD_ALIASES.join(', ')}`, 'card')
      }
      return emulator.seedPaymentMethod(params.requiredString('customer'), card, {
        makeDefault: params.boolean('make_default') ?? false,
      })
    },
  }

const ID = '([^/]+)'

/** The `/_emulator/…` switches (no API key) and the hosted pages, for manual and scripted use. */
const CONTROL_ROUTES: ControlRoute[] = [
  {
    method: 'GET',
    pattern: /^\/_emulator\/?$/,
    description: 'this list',
    handler: () => json(200, { routes: CONTROL_ROUTES.map(describeRoute) }),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/checkout/sessions/${ID}/complete$`),
    description: 'pay a Checkout Session {payment_method?, email?, name?, pass_authentication?}',
    handler: (emulator, { params, pathParam }) => {
      const card = params.string('payment_method') ?? 'pm_card_visa'
      if (!isTestCardAlias(card)) {
        throw invalidRequest(
          `payment_method must be one of ${TEST_CARD_ALIASES.join(', ')}`,
          'payment_method',
        )
      }
      const completion = emulator.completeCheckoutSession(pathParam, {
        paymentMethod: card,
        email: params.string('email'),
        name: params.string('name'),
        passAuthentication: params.boolean('pass_authentication'),
      })
      return json(200, {
        session: completion.session,
        payment_intent: completion.paymentIntent,
        error: completion.error,
      })
    },
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/checkout/sessions/${ID}/expire$`),
    description: 'expire a Checkout Session now',
    handler: (emulator, { pathParam }) => json(200, emulator.expireCheckoutSession(pathParam)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/payment_intents/${ID}/authenticate$`),
    description: 'pass (default) or fail 3D Secure {pass?}',
    handler: (emulator, { params, pathParam }) =>
      json(
        200,
        emulator.authenticatePaymentIntent(pathParam, { pass: params.boolean('pass') ?? true }),
      ),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/refunds/${ID}/fail$`),
    description: `fail a succeeded refund {reason?: ${REFUND_FAILURE_REASONS.join('|')}}`,
    handler: (emulator, { params, pathParam }) =>
      json(
        200,
        emulator.failRefund(pathParam, {
          reason: params.oneOf('reason', REFUND_FAILURE_REASONS),
        }),
      ),
  },
  {
    method: 'POST',
    pattern: /^\/_emulator\/events$/,
    description:
      'create and deliver an event {type, object (JSON) | object_id, duplicate?, delay_ms?, timestamp_offset_seconds?}',
    handler: (emulator, { params, json: body }) => {
      const object = isJsonObject(body?.object) ? body.object : params.requiredString('object_id')
      return json(
        200,
        emulator.sendEvent(params.requiredString('type'), object, {
          duplicate: params.integer('duplicate'),
          delayMs: params.integer('delay_ms'),
          timestampOffsetSeconds: params.integer('timestamp_offset_seconds'),
        }),
      )
    },
  },
  {
    method: 'GET',
    pattern: /^\/_emulator\/outbox$/,
    description: 'deliveries held in manual mode',
    handler: (emulator) => json(200, { data: emulator.outbox.map(pendingJson) }),
  },
  {
    method: 'POST',
    pattern: /^\/_emulator\/outbox\/deliver$/,
    description: 'send held deliveries {order?: fifo|reverse|shuffle, duplicate?}',
    handler: async (emulator, { params }) => {
      const attempts = await emulator.deliverOutbox({
        order: params.oneOf('order', DELIVERY_ORDERS),
        duplicate: params.integer('duplicate'),
      })
      return json(200, { data: attempts.map(attemptJson) })
    },
  },
  {
    method: 'GET',
    pattern: /^\/_emulator\/deliveries$/,
    description: 'every webhook delivery attempt',
    handler: (emulator) => json(200, { data: emulator.deliveries.map(attemptJson) }),
  },
  {
    method: 'POST',
    pattern: /^\/_emulator\/webhook$/,
    description:
      'configure the endpoint {url? ("" = none), enabled_events?, delivery?: auto|manual, max_attempts?, backoff_ms?, timeout_ms?}',
    handler: (emulator, { params }) => {
      if (params.has('url')) {
        const url = params.string('url') ?? ''
        const events = params.strings('enabled_events')
        emulator.setWebhookUrl(url === '' ? null : url, {
          enabledEvents: events.length === 0 ? undefined : events,
        })
      }
      const mode = params.oneOf('delivery', DELIVERY_MODES)
      if (mode !== undefined) emulator.setWebhookDelivery(mode)
      const retry: Partial<RetryPolicy> = {}
      const maxAttempts = params.integer('max_attempts')
      if (maxAttempts !== undefined) retry.maxAttempts = maxAttempts
      const backoffMs = params.integer('backoff_ms')
      if (backoffMs !== undefined) retry.backoffMs = backoffMs
      const timeoutMs = params.integer('timeout_ms')
      if (timeoutMs !== undefined) retry.timeoutMs = timeoutMs
      emulator.setWebhookRetry(retry)
      return json(200, { ok: true })
    },
  },
  {
    method: 'POST',
    pattern: /^\/_emulator\/faults$/,
    description:
      'queue a fault {kind: fail|timeout, status?, count?, path_prefix?, method?, ms?, mode?: hang|destroy, after_processing?}',
    handler: (emulator, { params }) => {
      const scope = {
        count: params.integer('count'),
        pathPrefix: params.string('path_prefix'),
        method: params.oneOf('method', ['GET', 'POST', 'DELETE'] as const),
      }
      const kind = params.oneOf('kind', ['fail', 'timeout'] as const) ?? 'fail'
      if (kind === 'fail') {
        const status = Number(params.requiredString('status'))
        const known = FAILURE_STATUSES.find((candidate) => candidate === status)
        if (known === undefined) {
          throw invalidRequest(`status must be one of ${FAILURE_STATUSES.join(', ')}`, 'status')
        }
        emulator.failNext({ ...scope, status: known })
      } else {
        emulator.timeoutNext({
          ...scope,
          ms: params.integer('ms'),
          mode: params.oneOf('mode', ['hang', 'destroy'] as const),
          afterProcessing: params.boolean('after_processing'),
        })
      }
      return json(200, { ok: true, pending: emulator.faults.pending().length })
    },
  },
  {
    method: 'DELETE',
    pattern: /^\/_emulator\/faults$/,
    description: 'drop queued faults',
    handler: (emulator) => {
      emulator.clearFaults()
      return json(200, { ok: true })
    },
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/seed/${ID}$`),
    description: `store existing data: ${Object.keys(SEEDERS).join(', ')}`,
    handler: (emulator, { params, pathParam }) => {
      const seed = SEEDERS[pathParam]
      if (seed === undefined) throw invalidRequest(`Nothing to seed under ${pathParam}`)
      return json(200, seed(emulator, params))
    },
  },
  {
    method: 'GET',
    pattern: /^\/_emulator\/requests$/,
    description: 'every API request received',
    handler: (emulator) =>
      json(200, {
        data: emulator.requests.map((entry) => ({
          request_id: entry.requestId,
          method: entry.method,
          path: entry.path,
          params: entry.params,
          idempotency_key: entry.idempotencyKey,
          stripe_version: entry.stripeVersion,
          status: entry.status,
          replayed: entry.replayed,
          fault: entry.fault,
          at: entry.at.toISOString(),
        })),
      }),
  },
  {
    method: 'POST',
    pattern: /^\/_emulator\/reset$/,
    description: 'forget everything',
    handler: (emulator) => {
      emulator.reset()
      return json(200, { ok: true })
    },
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/c/pay/${ID}$`),
    description: 'hosted Checkout page',
    handler: (emulator, { pathParam }) => checkoutPage(emulator, pathParam),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/c/pay/${ID}$`),
    description: 'pay on the hosted Checkout page {payment_method, email}',
    handler: (emulator, { params, pathParam }) =>
      payCheckoutPage(
        emulator,
        pathParam,
        params.string('payment_method') ?? 'pm_card_visa',
        params.string('email') ?? '',
      ),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/_emulator/3ds/${ID}$`),
    description: '3D Secure challenge page',
    handler: (emulator, { pathParam }) => challengePage(emulator, pathParam),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/_emulator/3ds/${ID}$`),
    description: 'answer the 3D Secure challenge {result: pass|fail}',
    handler: (emulator, { params, pathParam }) =>
      answerChallengePage(emulator, pathParam, params.string('result') !== 'fail'),
  },
]

/** True for paths the control routes own (no API key, no faults). */
export function isControlPath(path: string): boolean {
  return path.startsWith('/_emulator') || path.startsWith('/c/pay/')
}

export async function handleControlRequest(
  emulator: StripeEmulator,
  method: string,
  path: string,
  body: string,
  contentType: string,
): Promise<ControlResponse> {
  for (const route of CONTROL_ROUTES) {
    const match = route.method === method ? route.pattern.exec(path) : null
    if (match === null) continue
    try {
      const input = readInput(body, contentType, decodeURIComponent(match[1] ?? ''))
      return await route.handler(emulator, input)
    } catch (error) {
      if (error instanceof StripeHttpError) return json(error.status, { error: error.body })
      return json(400, {
        error: { message: error instanceof Error ? error.message : String(error) },
      })
    }
  }
  return json(404, {
    error: { message: `No emulator control at ${method} ${path}`, type: 'invalid_request_error' },
  })
}

function readInput(body: string, contentType: string, pathParam: string): ControlInput {
  if (contentType.includes('json') && body.trim() !== '') {
    const parsed: JsonValue = JSON.parse(body)
    if (!isJsonObject(parsed)) throw invalidRequest('The JSON body must be an object.')
    return { params: new Params(toForm(parsed)), json: parsed, pathParam }
  }
  return { params: new Params(parseForm(body)), json: null, pathParam }
}

/** JSON values as the form strings the parameter readers expect (`1` → `'1'`). */
function toForm(value: JsonObject): FormObject {
  return Object.fromEntries(
    Object.entries(value).map(([key, entry]) => [key, toFormValue(entry)] as const),
  )
}

function toFormValue(value: JsonValue): FormValue {
  if (value === null) return ''
  if (Array.isArray(value)) return value.map(toFormValue)
  if (typeof value === 'object') return toForm(value)
  return String(value)
}

function json(status: number, body: JsonValue): ControlResponse {
  return { kind: 'json', status, body }
}

function describeRoute(route: ControlRoute): JsonObject {
  return { method: route.method, path: route.pattern.source, description: route.description }
}

function pendingJson(delivery: PendingDelivery): JsonObject {
  return {
    id: delivery.id,
    event_id: delivery.eventId,
    type: delivery.type,
    url: delivery.url,
    delay_ms: delivery.delayMs,
    timestamp_offset_seconds: delivery.timestampOffsetSeconds,
  }
}

function attemptJson(attempt: DeliveryAttempt): JsonObject {
  return {
    delivery_id: attempt.deliveryId,
    event_id: attempt.eventId,
    type: attempt.type,
    url: attempt.url,
    attempt: attempt.attempt,
    ok: attempt.ok,
    status: attempt.status,
    error: attempt.error,
    signature: attempt.signature,
    at: attempt.at.toISOString(),
  }
}
