import type { JsonObject } from './json.ts'

/** The codes the emulator answers with; BitPay's own code table is not public, these are ours. */
export const BITPAY_ERROR_CODES = [
  'UNSUPPORTED_VERSION',
  'INVALID_JSON',
  'MISSING_TOKEN',
  'INVALID_TOKEN',
  'INVALID_PARAMETER',
  'NOT_FOUND',
  'SERVER_ERROR',
] as const
export type BitpayErrorCode = (typeof BITPAY_ERROR_CODES)[number]

/** A finished answer of the emulated API. */
export interface ApiResponse {
  status: number
  contentType: string
  body: string
}

export function jsonResponse(status: number, body: JsonObject): ApiResponse {
  return { status, contentType: 'application/json; charset=utf-8', body: JSON.stringify(body) }
}

/** BitPay's error shape: `{"status":"error","code":…,"error":"…","data":null}`. */
export function errorResponse(status: number, code: BitpayErrorCode, message: string): ApiResponse {
  return jsonResponse(status, { status: 'error', code, error: message, data: null })
}
