import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { AppError, type ErrorCode, type ErrorDetails, httpStatusFor } from '../core/errors.ts'
import {
  PG_DEADLOCK_DETECTED,
  PG_FOREIGN_KEY_VIOLATION,
  PG_PROGRAM_LIMIT_EXCEEDED,
  PG_SERIALIZATION_FAILURE,
  PG_UNIQUE_VIOLATION,
  pgErrorCode,
} from '../db/errors.ts'

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      details: Type.Record(Type.String(), Type.Unknown()),
    }),
  },
  {
    $id: 'ErrorResponse',
    description: 'Every error: a closed code, a message for humans, and details',
  },
)

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details: ErrorDetails }
}

/**
 * Turns anything thrown into the one error shape. App errors pass through as they
 * are; Fastify's own (bad JSON, wrong content type, too large, schema validation)
 * get a code; Stripe's SDK's errors (a revoked key, Stripe down) are 502 `gateway_error`;
 * anything else is a 500 `internal_error` whose detail stays in the log.
 */
export function toErrorBody(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof AppError) {
    return { status: error.status, body: errorBody(error.code, error.message, error.details) }
  }
  // A provider's failure, whatever status it answered with: the status is Stripe's answer to
  // Payrail (a revoked key's 401 read as the caller's 400 `validation_error`), not Payrail's.
  if (isStripeError(error))
    return {
      status: httpStatusFor('gateway_error'),
      body: errorBody('gateway_error', `Stripe refused the request: ${error.message}`, {
        gateway: 'stripe',
        ...(error.statusCode !== undefined && { status_code: error.statusCode }),
      }),
    }
  const database = mapDatabaseError(error)
  if (database)
    return {
      status: httpStatusFor(database.code),
      body: errorBody(database.code, database.message),
    }
  if (isBrokenBody(error))
    return {
      status: 400,
      body: errorBody('validation_error', 'The request body ended before it was complete'),
    }
  if (isFastifyError(error)) {
    const mapped = mapFastifyError(error)
    if (mapped)
      return {
        status: httpStatusFor(mapped.code),
        body: errorBody(mapped.code, mapped.message, mapped.details),
      }
  }
  return {
    status: 500,
    body: errorBody('internal_error', 'Something went wrong on our side; it has been logged'),
  }
}

export function errorBody(code: ErrorCode, message: string, details: ErrorDetails = {}): ErrorBody {
  return { error: { code, message, details } }
}

/** Requests refused by a lost serialization race or a deadlock (a 409 "retry it"). */
const transient = new WeakSet<FastifyRequest>()

/**
 * Whether `request` was refused by a lost serialization race or a deadlock: its
 * transaction rolled back, and the same request, sent again, may go through. Its
 * `Idempotency-Key` is then not kept for the refusal (`registerIdempotency`).
 */
export function failedTransiently(request: FastifyRequest): boolean {
  return transient.has(request)
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const code = pgErrorCode(error)
    if (code === PG_SERIALIZATION_FAILURE || code === PG_DEADLOCK_DETECTED) transient.add(request)
    const { status, body } = toErrorBody(error)
    if (status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: body.error.code, message: body.error.message }, 'request refused')
    return reply.code(status).type('application/json; charset=utf-8').send(body)
  })
  app.setNotFoundHandler((request, reply) => {
    const body = errorBody(
      'not_found',
      `Unknown route: ${request.method} ${request.url.split('?')[0]}`,
    )
    return reply.code(404).type('application/json; charset=utf-8').send(body)
  })
}

/**
 * PostgreSQL refusals that come from what the caller sent, as a safety net behind
 * the validation in front of them: bad values (class 22: text with NUL bytes,
 * numbers out of range) and values too large to index (54000) are 400, a unique key taken is 409, and a lost
 * serialization race or deadlock is a 409 the caller may retry.
 */
function mapDatabaseError(error: unknown): { code: ErrorCode; message: string } | undefined {
  const code = pgErrorCode(error)
  if (code === undefined) return undefined
  if (code.startsWith('22'))
    return {
      code: 'validation_error',
      message: 'A value in the request is out of range or not valid',
    }
  // A value too large for what holds it (an index entry past PostgreSQL's 2.7 KB).
  if (code === PG_PROGRAM_LIMIT_EXCEEDED)
    return { code: 'validation_error', message: 'A value in the request is too large' }
  if (code === PG_UNIQUE_VIOLATION)
    return { code: 'conflict', message: 'An object with these values already exists' }
  if (code === PG_FOREIGN_KEY_VIOLATION) {
    return {
      code: 'validation_error',
      message: 'The request refers to an object that does not exist',
    }
  }
  if (code === PG_SERIALIZATION_FAILURE || code === PG_DEADLOCK_DETECTED) {
    return { code: 'conflict', message: 'The request collided with a concurrent change; retry it' }
  }
  return undefined
}

function mapFastifyError(
  error: FastifyError,
): { code: ErrorCode; message: string; details: ErrorDetails } | undefined {
  if (error.validation) {
    const errors = error.validation.map((issue) => ({
      field: fieldOf(error.validationContext, issue.instancePath, issue.params),
      message: issue.message ?? 'is invalid',
    }))
    const first = errors[0]
    const message = first ? `${first.field} ${first.message}` : 'Invalid request'
    return { code: 'validation_error', message, details: { errors } }
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        code: 'validation_error',
        message: `Malformed JSON body: ${error.message}`,
        details: {},
      }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        code: 'unsupported_media_type',
        message: 'Send the request body as JSON with Content-Type: application/json',
        details: {},
      }
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'payload_too_large', message: 'Request body is too large', details: {} }
  }
  const status = error.statusCode ?? 500
  if (status === 413)
    return { code: 'payload_too_large', message: 'Request body is too large', details: {} }
  if (status === 415) return { code: 'unsupported_media_type', message: error.message, details: {} }
  if (status === 404) return { code: 'not_found', message: error.message, details: {} }
  if (status === 405) return { code: 'method_not_allowed', message: error.message, details: {} }
  if (status === 429) return { code: 'rate_limited', message: error.message, details: {} }
  if (status >= 400 && status < 500)
    return { code: 'validation_error', message: error.message, details: {} }
  return undefined
}

function fieldOf(
  context: string | undefined,
  instancePath: string,
  params: Record<string, unknown>,
): string {
  const path = instancePath.replace(/^\//, '').replaceAll('/', '.')
  const missing = typeof params.missingProperty === 'string' ? params.missingProperty : undefined
  const extra =
    typeof params.additionalProperty === 'string' ? params.additionalProperty : undefined
  const leaf = [path, missing ?? extra].filter(Boolean).join('.')
  return [context ?? 'body', leaf].filter(Boolean).join('.')
}

/**
 * Fastify's own errors (its `FST_…` codes, schema validation), which their `statusCode`
 * describes. Not any error with a `statusCode`: an SDK's error carries the status a provider
 * answered Payrail with (a revoked Stripe key's 401 was answered as the caller's 400).
 */
function isFastifyError(error: unknown): error is FastifyError {
  if (!(error instanceof Error)) return false
  const { code, validation } = error as Partial<FastifyError>
  return Array.isArray(validation) || (typeof code === 'string' && code.startsWith('FST_'))
}

/**
 * The request's body stream broke off while Fastify read it (the client went away: Node's
 * `aborted`, a reset connection). The client's side, not Payrail's: a 400, not a 500 logged
 * as Payrail's fault. Fastify passes such a stream error on as it came, marked 400.
 */
function isBrokenBody(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown }
  // The 400 is Fastify's mark (content-type-parser's rawBody): a provider call's reset
  // connection, which carries none, stays Payrail's fault.
  return (
    statusCode === 400 &&
    (code === 'ECONNRESET' || code === 'ECONNABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE')
  )
}

/**
 * An error of Stripe's SDK, known by its shape: the SDK is loaded on its first use
 * (`stripeSdk`), and its classes are not at hand here. Each sets `type` to its class name
 * (`StripeAuthenticationError`), and `raw` to Stripe's answer.
 */
function isStripeError(error: unknown): error is Error & { statusCode?: number } {
  if (!(error instanceof Error) || !('raw' in error)) return false
  const type = (error as { type?: unknown }).type
  return typeof type === 'string' && /^Stripe[A-Za-z]*Error$/.test(type)
}
