import { cancelSessionUrl, completeSession } from './sessions.ts'
import type { CheckoutState } from './state.ts'
import { CHECKOUT_TEST_CARDS } from './test-cards.ts'

export type PageAnswer =
  | { kind: 'html'; status: number; html: string }
  | { kind: 'redirect'; location: string }

const PAGE_PATH = /^\/pay\/((?:hpp|pl|ps)_[a-z2-7]+)(\/cancel)?$/

export function isHostedPagePath(path: string): boolean {
  return PAGE_PATH.test(path)
}

/**
 * The emulator's hosted payment page at `_links.redirect.href`: `GET /pay/{id}` shows a
 * card form, `POST /pay/{id}` (`card=…`) pays and redirects like Checkout.com's page,
 * `POST /pay/{id}/cancel` goes back to `cancel_url`.
 */
export function handleHostedPage(
  state: CheckoutState,
  method: string,
  path: string,
  body: string,
): PageAnswer {
  const match = PAGE_PATH.exec(path)
  const session = match?.[1] === undefined ? undefined : state.sessions.get(match[1])
  if (match === null || session === undefined) return page(404, '<p>Unknown payment page.</p>')
  if (method === 'GET' && match[2] === undefined) {
    if (session.status !== 'Payment Pending')
      return page(410, `<p>This page is ${escapeHtml(session.status)}.</p>`)
    return page(200, cardForm(session.id, session.amount, session.currency))
  }
  if (method !== 'POST') return page(405, '<p>Method not allowed.</p>')
  if (match[2] !== undefined) return { kind: 'redirect', location: cancelSessionUrl(session) }
  if (session.status !== 'Payment Pending')
    return page(410, `<p>This page is ${escapeHtml(session.status)}.</p>`)
  const card = new URLSearchParams(body).get('card')?.replaceAll(/\s/g, '') || undefined
  try {
    return { kind: 'redirect', location: completeSession(state, session, { card }).redirectUrl }
  } catch (error) {
    return page(422, `<p>${escapeHtml(error instanceof Error ? error.message : String(error))}</p>`)
  }
}

function cardForm(id: string, amount: number, currency: string): string {
  const options = Object.entries(CHECKOUT_TEST_CARDS)
    .map(([number, card]) => {
      const label =
        card.decline === null ? 'approved' : `${card.decline.code} ${card.decline.summary}`
      return `<option value="${number}">${number} (${card.scheme}, ${escapeHtml(label)})</option>`
    })
    .join('')
  return `<h1>Pay ${amount} ${escapeHtml(currency)}</h1>
<form method="post" action="/pay/${id}">
  <label>Card number <input name="card" list="cards" value="4242424242424242"></label>
  <datalist id="cards">${options}</datalist>
  <button type="submit">Pay</button>
</form>
<form method="post" action="/pay/${id}/cancel"><button type="submit">Cancel</button></form>`
}

function page(status: number, content: string): PageAnswer {
  return {
    kind: 'html',
    status,
    html: `<!doctype html><html><head><meta charset="utf-8"><title>Checkout.com emulator</title></head><body>${content}</body></html>`,
  }
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
}
