import type { JsonObject } from './json.ts'

/** The `type` of a Stripe v1 error; the SDK picks its error class from it and the status. */
export const STRIPE_ERROR_TYPES = [
  'api_error',
  'card_error',
  'idempotency_error',
  'invalid_request_error',
] as const
export type StripeErrorType = (typeof STRIPE_ERROR_TYPES)[number]

export interface StripeErrorFields {
  type: StripeErrorType
  message: string
  code?: string
  decline_code?: string
  advice_code?: string
  param?: string
  charge?: string
  payment_intent?: JsonObject
  payment_method?: JsonObject
}

/**
 * An answer other than 2xx, thrown by handlers and turned into
 * `{"error": {...}}` by the server. `body` is the inner error object.
 */
export class StripeHttpError extends Error {
  readonly body: JsonObject

  constructor(
    readonly status: number,
    fields: StripeErrorFields,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(fields.message)
    this.body = errorBody(fields)
  }
}

/** Stripe's error object: optional keys are absent, not null; `doc_url` follows `code`. */
export function errorBody(fields: StripeErrorFields): JsonObject {
  const body: JsonObject = {}
  if (fields.charge !== undefined) body.charge = fields.charge
  if (fields.code !== undefined) {
    body.code = fields.code
    body.doc_url = docUrl(fields.code)
  }
  if (fields.advice_code !== undefined) body.advice_code = fields.advice_code
  if (fields.decline_code !== undefined) body.decline_code = fields.decline_code
  body.message = fields.message
  if (fields.param !== undefined) body.param = fields.param
  if (fields.payment_intent !== undefined) body.payment_intent = fields.payment_intent
  if (fields.payment_method !== undefined) body.payment_method = fields.payment_method
  body.type = fields.type
  return body
}

export function docUrl(code: string): string {
  return `https://stripe.com/docs/error-codes/${code.replaceAll('_', '-')}`
}

export function missingApiKey(): StripeHttpError {
  return new StripeHttpError(401, {
    type: 'invalid_request_error',
    message:
      "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
  })
}

export function invalidApiKey(key: string): StripeHttpError {
  return new StripeHttpError(401, {
    type: 'invalid_request_error',
    message: `Invalid API Key provided: ${redactKey(key)}`,
  })
}

/** `sk_test_abcdef123456` → `sk_test_********3456`, as Stripe echoes a wrong key. */
export function redactKey(key: string): string {
  const prefix = /^(sk|rk|pk)_(test|live)_/.exec(key)?.[0] ?? ''
  const secret = key.slice(prefix.length)
  if (secret.length <= 4) return `${prefix}${'*'.repeat(secret.length)}`
  return `${prefix}${'*'.repeat(secret.length - 4)}${secret.slice(-4)}`
}

export function unrecognizedUrl(method: string, path: string): StripeHttpError {
  return new StripeHttpError(404, {
    type: 'invalid_request_error',
    message: `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
  })
}

/** `No such customer: 'cus_123'`, 404 `resource_missing`. */
export function resourceMissing(objectName: string, id: string, param = 'id'): StripeHttpError {
  return new StripeHttpError(404, {
    type: 'invalid_request_error',
    code: 'resource_missing',
    message: `No such ${objectName}: '${id}'`,
    param,
  })
}

export function parameterMissing(param: string): StripeHttpError {
  return new StripeHttpError(400, {
    type: 'invalid_request_error',
    code: 'parameter_missing',
    message: `Missing required param: ${param}.`,
    param,
  })
}

export function parameterUnknown(param: string): StripeHttpError {
  return new StripeHttpError(400, {
    type: 'invalid_request_error',
    code: 'parameter_unknown',
    message: `Received unknown parameter: ${param}`,
    param,
  })
}

export function invalidRequest(message: string, param?: string, code?: string): StripeHttpError {
  return new StripeHttpError(400, {
    type: 'invalid_request_error',
    message,
    ...(param === undefined ? {} : { param }),
    ...(code === undefined ? {} : { code }),
  })
}

export function idempotencyMismatch(key: string): StripeHttpError {
  return new StripeHttpError(400, {
    type: 'idempotency_error',
    message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
  })
}

export function idempotencyEndpointMismatch(
  key: string,
  first: string,
  current: string,
): StripeHttpError {
  return new StripeHttpError(400, {
    type: 'idempotency_error',
    message: `Keys for idempotent requests can only be used for the same endpoint they were first used for ('${first}' vs '${current}'). Try using a key other than '${key}' if you meant to execute a different request.`,
  })
}

/** What Stripe (or the load balancer in front of it) answers when something breaks inside. */
export function apiError(status: number): StripeHttpError {
  return new StripeHttpError(status, {
    type: 'api_error',
    message:
      status === 500
        ? 'An unknown error occurred'
        : 'Stripe is temporarily unavailable. Please retry your request.',
  })
}

export function rateLimited(): StripeHttpError {
  return new StripeHttpError(429, {
    type: 'invalid_request_error',
    code: 'rate_limit',
    message:
      'Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.',
  })
}
