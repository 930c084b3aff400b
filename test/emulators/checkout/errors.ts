import type { JsonObject } from './json.ts'

/**
 * A non-2xx answer, thrown by handlers and written by the API layer. Checkout.com answers
 * 401 and 404 with an empty body and a 422 with
 * `{request_id, error_type: 'request_invalid', error_codes: […]}`.
 */
export class CheckoutHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorType: string | null = null,
    readonly errorCodes: readonly string[] = [],
  ) {
    super(errorType === null ? `HTTP ${status}` : `${errorType}: ${errorCodes.join(', ')}`)
  }

  /** The body sent, or null for an empty one. */
  body(requestId: string): JsonObject | null {
    if (this.errorType === null) return null
    return { request_id: requestId, error_type: this.errorType, error_codes: [...this.errorCodes] }
  }
}

export function requestInvalid(...codes: string[]): CheckoutHttpError {
  return new CheckoutHttpError(422, 'request_invalid', codes)
}

export function notFound(): CheckoutHttpError {
  return new CheckoutHttpError(404)
}

export function unauthorized(): CheckoutHttpError {
  return new CheckoutHttpError(401)
}

/** A payment action the payment's state forbids (refund before capture, void after it). */
export function actionNotAllowed(code: string): CheckoutHttpError {
  return new CheckoutHttpError(403, 'action_not_allowed', [code])
}
