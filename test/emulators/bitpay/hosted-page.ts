import { type ApiResponse, errorResponse } from './errors.ts'
import type { BitpayInvoiceRecord } from './invoice.ts'

/** `GET /invoice?id=…`: the page a buyer is sent to (the invoice's `url`). */
export function renderHostedPage(record: BitpayInvoiceRecord | undefined): ApiResponse {
  if (record === undefined) return errorResponse(404, 'NOT_FOUND', 'Invoice not found')
  const btc = (record.amountDue / 100_000_000).toFixed(8)
  const rows = [
    ['Invoice', record.id],
    ['Status', record.status],
    ['Exception', String(record.exceptionStatus)],
    ['Price', `${record.price} ${record.currency}`],
    ['Amount due', `${btc} BTC`],
    ['Item', record.itemDesc ?? ''],
  ]
  const table = rows
    .map(([name, value]) => `<tr><th>${escapeHtml(name!)}</th><td>${escapeHtml(value!)}</td></tr>`)
    .join('')
  const back =
    record.redirectURL === null
      ? ''
      : `<p><a id="redirect" href="${escapeHtml(record.redirectURL)}">Return to merchant</a></p>`
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>BitPay Invoice</title></head><body><h1>BitPay Invoice (emulator)</h1><table>${table}</table>${back}</body></html>`
  return { status: 200, contentType: 'text/html; charset=utf-8', body: html }
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
}
