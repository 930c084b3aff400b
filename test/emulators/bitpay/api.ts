import type { IncomingHttpHeaders } from 'node:http'
import { type ApiResponse, errorResponse, jsonResponse } from './errors.ts'
import { type BitpayInvoiceRecord, renderInvoice } from './invoice.ts'
import { isJsonObject, type JsonObject, type JsonValue, parseJsonObject } from './json.ts'

/** The only API version the emulator (and BitPay's current REST API) speaks. */
export const BITPAY_API_VERSION = '2.0.0'

/** The fields `POST /invoices` takes, checked. */
export interface NewBitpayInvoice {
  price: number
  currency: string
  orderId: string | null
  posData: string | null
  itemDesc: string | null
  itemCode: string | null
  notificationURL: string | null
  redirectURL: string | null
  closeURL: string | null
  extendedNotifications: boolean
  buyer: JsonObject | null
}

/** What the routes need from the emulator. */
export interface BitpayApiContext {
  readonly merchantToken: string
  nowMs(): number
  createInvoice(fields: NewBitpayInvoice): BitpayInvoiceRecord
  findInvoice(id: string): BitpayInvoiceRecord | undefined
}

export interface ApiRequest {
  method: string
  url: URL
  headers: IncomingHttpHeaders
  body: string
}

/** Whether the request is one of BitPay's REST routes (faults apply only to these). */
export function isApiPath(pathname: string): boolean {
  return pathname === '/invoices' || pathname.startsWith('/invoices/')
}

export function handleApiRequest(context: BitpayApiContext, request: ApiRequest): ApiResponse {
  const versionError = checkVersion(request.headers)
  if (versionError !== null) return versionError
  const path = request.url.pathname
  if (path === '/invoices' && request.method === 'POST') return createInvoice(context, request)
  const match = /^\/invoices\/([^/]+)$/.exec(path)
  if (match !== null && request.method === 'GET') {
    return getInvoice(context, decodeURIComponent(match[1]!), request.url)
  }
  return errorResponse(404, 'NOT_FOUND', `No route for ${request.method} ${path}`)
}

function checkVersion(headers: IncomingHttpHeaders): ApiResponse | null {
  const version = headers['x-accept-version']
  if (version === BITPAY_API_VERSION) return null
  return errorResponse(
    400,
    'UNSUPPORTED_VERSION',
    `The X-Accept-Version header must be ${BITPAY_API_VERSION}`,
  )
}

function createInvoice(context: BitpayApiContext, request: ApiRequest): ApiResponse {
  const body = parseJsonObject(request.body)
  if (body === null) return errorResponse(400, 'INVALID_JSON', 'The body must be a JSON object')
  const tokenError = checkToken(context, body.token)
  if (tokenError !== null) return tokenError
  const parsed = parseNewInvoice(body)
  if (typeof parsed === 'string') return errorResponse(400, 'INVALID_PARAMETER', parsed)
  const record = context.createInvoice(parsed)
  return jsonResponse(200, {
    facade: 'pos/invoice',
    data: renderInvoice(record, context.nowMs()),
  })
}

function getInvoice(context: BitpayApiContext, id: string, url: URL): ApiResponse {
  const record = context.findInvoice(id)
  const token = url.searchParams.get('token')
  // The merchant token reads any invoice; an invoice's own token reads only that one.
  if (record !== undefined && token !== null && token === record.token) {
    return jsonResponse(200, {
      facade: 'public/invoice',
      data: renderInvoice(record, context.nowMs()),
    })
  }
  const tokenError = checkToken(context, token)
  if (tokenError !== null) return tokenError
  if (record === undefined) return errorResponse(404, 'NOT_FOUND', 'Object not found')
  return jsonResponse(200, { facade: 'pos/invoice', data: renderInvoice(record, context.nowMs()) })
}

function checkToken(context: BitpayApiContext, token: JsonValue | undefined): ApiResponse | null {
  if (typeof token !== 'string' || token === '') {
    return errorResponse(401, 'MISSING_TOKEN', 'This endpoint requires a token')
  }
  if (token !== context.merchantToken) {
    return errorResponse(401, 'INVALID_TOKEN', 'Invalid token')
  }
  return null
}

/** The checked fields, or the message of the first problem. */
function parseNewInvoice(body: JsonObject): NewBitpayInvoice | string {
  const price = body.price
  if (typeof price !== 'number' || !Number.isFinite(price) || price <= 0) {
    return 'price must be a positive number'
  }
  const currency = body.currency
  if (typeof currency !== 'string' || !/^[A-Z]{3,4}$/.test(currency)) {
    return 'currency must be an ISO 4217 code such as USD'
  }
  const strings = [
    'orderId',
    'posData',
    'itemDesc',
    'itemCode',
    'notificationURL',
    'redirectURL',
    'closeURL',
  ] as const
  for (const name of strings) {
    const value = body[name]
    if (value !== undefined && value !== null && typeof value !== 'string') {
      return `${name} must be a string`
    }
  }
  for (const name of ['notificationURL', 'redirectURL', 'closeURL'] as const) {
    const value = body[name]
    if (typeof value === 'string' && !URL.canParse(value)) return `${name} must be a URL`
  }
  const extended = body.extendedNotifications
  if (extended !== undefined && typeof extended !== 'boolean') {
    return 'extendedNotifications must be a boolean'
  }
  const buyer = body.buyer
  if (buyer !== undefined && buyer !== null && !isJsonObject(buyer)) {
    return 'buyer must be an object'
  }
  return {
    price,
    currency,
    orderId: optionalString(body.orderId),
    posData: optionalString(body.posData),
    itemDesc: optionalString(body.itemDesc),
    itemCode: optionalString(body.itemCode),
    notificationURL: optionalString(body.notificationURL),
    redirectURL: optionalString(body.redirectURL),
    closeURL: optionalString(body.closeURL),
    extendedNotifications: extended === true,
    buyer: isJsonObject(buyer) ? buyer : null,
  }
}

function optionalString(value: JsonValue | undefined): string | null {
  return typeof value === 'string' ? value : null
}
