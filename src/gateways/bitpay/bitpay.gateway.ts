import type { Gateway, GatewayContext, GatewayFailure, NormalizedEvent } from '../gateway.ts'
import { recordedCoinRefund } from '../gateway.ts'
import { invoiceRequest, readBitpayInvoice, updateFromInvoice } from './bitpay.transformers.ts'

const DEFAULT_BASE_URL = 'https://bitpay.com'

/**
 * BitPay invoices for `CRYPTO` payments. BitPay signs nothing it sends, so an IPN
 * is never trusted: it only names an invoice, which is then fetched from BitPay
 * with the merchant token, and BitPay's answer is what the payment follows.
 */
export const bitpayGateway: Gateway = {
  name: 'bitpay',
  capabilities: {
    hostedCheckout: true,
    savedMethodCharge: false,
    refund: true,
    statusSync: true,
    webhookVerification: true,
    methodTypes: ['CRYPTO'],
    internal: false,
    withdrawsPages: false,
    paysAfterFailure: true,
  },
  async refund(_ctx, _payment, refund) {
    return recordedCoinRefund(refund)
  },
  async startAsync(ctx, request) {
    const { payment } = request
    const notification = `${ctx.publicUrl}/v1/webhooks/bitpay/${ctx.scope.tenantId}/${ctx.scope.environmentId}`
    try {
      const response = await fetch(`${baseUrl(ctx)}/invoices`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-accept-version': '2.0.0' },
        body: JSON.stringify(
          invoiceRequest(
            payment,
            token(ctx),
            { notification, redirect: payment.success_url },
            request.description,
          ),
        ),
        signal: AbortSignal.timeout(15_000),
      })
      const invoice = readBitpayInvoice(await response.json().catch(() => null))
      if (!response.ok || !invoice) return { ok: false, failure: httpFailure(response.status) }
      return { ok: true, url: invoice.url, trackingId: invoice.id, gatewayPaymentId: invoice.id }
    } catch (error) {
      return {
        ok: false,
        failure: {
          code: 'network_error',
          message: error instanceof Error ? error.message : String(error),
          retryable: true,
        },
      }
    }
  },
  async parseWebhook(ctx, raw) {
    const invoiceId = invoiceIdOf(raw.body)
    if (!invoiceId) return { ok: false, status: 400, reason: 'not a BitPay notification' }
    const invoice = await fetchInvoice(ctx, invoiceId)
    if (invoice === UNREACHABLE)
      return { ok: false, status: 502, reason: 'BitPay could not be asked about the invoice' }
    if (!invoice)
      return { ok: false, status: 400, reason: `BitPay does not know invoice ${invoiceId}` }
    const update = updateFromInvoice(invoice)
    if (!update) return { ok: true, events: [] }
    const event: NormalizedEvent = {
      // BitPay notifications carry no id: BitPay's state itself is the event, so a repeat is a duplicate.
      eventId: `${invoice.id}:${invoice.status}:${invoice.exceptionStatus || 'none'}`,
      type: `invoice.${invoice.status}`,
      target: {
        trackingId: invoice.id,
        paymentId: invoice.orderId ?? undefined,
        trackedObject: true,
      },
      update,
      payload: invoice,
    }
    return { ok: true, events: [event] }
  },
}

const UNREACHABLE = 'unreachable'

/**
 * The invoice as BitPay has it now: `GET /invoices/:id?token=`; `undefined` only when BitPay
 * says it has no such invoice (404). `UNREACHABLE` when Payrail could not learn it: no
 * answer (a refused connection, a timeout), a 5xx or 429, a token BitPay refuses (401/403:
 * the merchant paired again), any other refusal, or an answer that is no invoice. The
 * notification is then refused with a 502, so that BitPay sends it again, instead of being
 * lost as unknown (a 400 for a genuine IPN of a paid invoice left its payment PROCESSING).
 */
async function fetchInvoice(ctx: GatewayContext, id: string) {
  const url = `${baseUrl(ctx)}/invoices/${encodeURIComponent(id)}?token=${encodeURIComponent(token(ctx))}`
  let response: Response
  try {
    response = await fetch(url, {
      headers: { 'x-accept-version': '2.0.0' },
      signal: AbortSignal.timeout(15_000),
    })
  } catch {
    return UNREACHABLE
  }
  if (response.status === 404) return undefined
  if (!response.ok) return UNREACHABLE
  return readBitpayInvoice(await response.json().catch(() => null)) ?? UNREACHABLE
}

/** Standard IPNs carry the invoice id at the top, extended ones under `data`. */
function invoiceIdOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { id?: unknown; data?: { id?: unknown } }
    const id = parsed.data?.id ?? parsed.id
    return typeof id === 'string' && /^[A-Za-z0-9_-]{1,100}$/.test(id) ? id : undefined
  } catch {
    return undefined
  }
}

function baseUrl(ctx: GatewayContext): string {
  return (ctx.settings.base_url ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
}

function token(ctx: GatewayContext): string {
  const value = ctx.credentials?.token
  if (!value) throw new Error('BitPay connection has no token')
  return value
}

function httpFailure(status: number): GatewayFailure {
  return {
    code: `http_${status}`,
    message: `BitPay answered ${status}`,
    retryable: status >= 500 || status === 429,
  }
}
