/**
 * The closed set of error codes Payrail answers with, and the one place that
 * maps a code to its HTTP status. Every error body is
 * `{"error":{"code","message","details"}}`.
 */
export const ERROR_CODES = [
  'validation_error',
  'unauthorized',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'idempotency_conflict',
  'payload_too_large',
  'unsupported_media_type',
  'card_declined',
  'insufficient_funds',
  'expired_card',
  'authentication_required',
  'no_default_payment_method',
  'invalid_state_transition',
  'idempotency_mismatch',
  'rate_limited',
  'gateway_error',
  'not_supported',
  'service_unavailable',
  'internal_error',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export type ErrorDetails = Record<string, unknown>

export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'validation_error':
      return 400
    case 'unauthorized':
      return 401
    case 'card_declined':
    case 'insufficient_funds':
    case 'expired_card':
    case 'authentication_required':
    case 'no_default_payment_method':
      return 402
    case 'forbidden':
      return 403
    case 'not_found':
      return 404
    case 'method_not_allowed':
      return 405
    case 'conflict':
    case 'idempotency_conflict':
      return 409
    case 'payload_too_large':
      return 413
    case 'unsupported_media_type':
      return 415
    case 'invalid_state_transition':
    case 'idempotency_mismatch':
    case 'not_supported':
      return 422
    case 'rate_limited':
      return 429
    case 'internal_error':
      return 500
    case 'gateway_error':
      return 502
    case 'service_unavailable':
      return 503
    default:
      return assertNever(code)
  }
}

/** An error meant for the API caller: its code, message and details are shown as they are. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly details: ErrorDetails

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message)
    this.name = 'AppError'
    this.code = code
    this.details = details
  }

  get status(): number {
    return httpStatusFor(this.code)
  }
}

/**
 * An answer a caller withdrawing something at a provider can stand on: a refusal (4xx) or a
 * provider that could not be reached (`gateway_error`). Anything else is a fault to rethrow.
 */
export function isRefusalOrUnreachable(error: unknown): error is AppError {
  return error instanceof AppError && (error.status < 500 || error.code === 'gateway_error')
}

export function notFound(resource: string, id: string): AppError {
  return new AppError('not_found', `No such ${resource}: '${id}'`, { resource, id })
}

export function validationError(message: string, details: ErrorDetails = {}): AppError {
  return new AppError('validation_error', message, details)
}

export function assertNever(value: never): never {
  throw new Error(`Unexpected value: ${String(value)}`)
}
