import { formatAmount } from './amounts.ts'
import { COINPAYMENTS_STATUS_TEXT, type CoinpaymentsTransactionRecord } from './transaction.ts'

export interface PageResponse {
  status: number
  contentType: string
  body: string
}

/**
 * `GET /index.php?cmd=checkout|status&id=…&key=…` (the `checkout_url` and `status_url`) and
 * `GET /qrgen.php?id=…&key=…` (the `qrcode_url`, a text stand-in for the PNG).
 */
export function renderHostedPage(
  pathname: string,
  query: URLSearchParams,
  find: (txnId: string) => CoinpaymentsTransactionRecord | undefined,
): PageResponse | null {
  if (pathname !== '/index.php' && pathname !== '/qrgen.php') return null
  const record = find(query.get('id') ?? '')
  if (record === undefined || query.get('key') !== record.pageKey) {
    return { status: 404, contentType: 'text/plain; charset=utf-8', body: 'Transaction not found' }
  }
  if (pathname === '/qrgen.php') {
    return {
      status: 200,
      contentType: 'text/plain; charset=utf-8',
      body: `${record.currency2.toLowerCase()}:${record.address}?amount=${formatAmount(record.amount2)}`,
    }
  }
  const rows = [
    ['Transaction', record.txnId],
    ['Status', `${record.status} (${COINPAYMENTS_STATUS_TEXT[record.status]})`],
    ['Amount', `${formatAmount(record.amount2)} ${record.currency2}`],
    ['Received', `${formatAmount(record.received)} ${record.currency2}`],
    ['Send to', record.address],
    ['Item', record.itemName],
  ]
  const table = rows
    .map(([name, value]) => `<tr><th>${escapeHtml(name!)}</th><td>${escapeHtml(value!)}</td></tr>`)
    .join('')
  const title = query.get('cmd') === 'status' ? 'Payment status' : 'Checkout'
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>CoinPayments ${title}</title></head><body><h1>CoinPayments ${title} (emulator)</h1><table>${table}</table></body></html>`
  return { status: 200, contentType: 'text/html; charset=utf-8', body: html }
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
}
