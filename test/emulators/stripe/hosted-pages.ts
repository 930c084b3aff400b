import type { StripeEmulator } from './emulator.ts'
import { StripeHttpError } from './errors.ts'
import { isJsonObject } from './json.ts'
import { formatMinorUnits } from './money.ts'
import { requireCheckoutSession } from './resources/checkout-sessions.ts'
import { requirePaymentIntent } from './resources/payment-intents.ts'
import { isTestCardAlias, TEST_CARD_ALIASES } from './test-cards.ts'

/** An HTML answer: a page, or a redirect (303) back to the merchant. */
export type PageResponse =
  | { kind: 'html'; status: number; html: string }
  | { kind: 'redirect'; location: string }

/**
 * Stand-ins for the pages Stripe hosts, for clicking through a flow by hand:
 * `/c/pay/:session` (Checkout: pick a test card, pay or go back) and
 * `/_emulator/3ds/:payment_intent` (pass or fail the 3D Secure challenge).
 */
export function checkoutPage(
  emulator: StripeEmulator,
  sessionId: string,
  error?: string,
): PageResponse {
  const session = requireCheckoutSession(emulator.state, sessionId)
  const total = formatMinorUnits(session.amountTotal, session.currency)
  if (session.status !== 'open') {
    return page(
      200,
      'Checkout',
      `<p>This Checkout Session is <b>${escapeHtml(session.status)}</b>.</p>`,
    )
  }
  const items = session.lineItems
    .map(
      (item) =>
        `<li>${escapeHtml(item.description)} × ${item.quantity}: ${formatMinorUnits(item.amount, item.currency)}</li>`,
    )
    .join('')
  const options = TEST_CARD_ALIASES.map(
    (alias) => `<option value="${alias}">${alias}</option>`,
  ).join('')
  const cancel =
    session.cancelUrl === null
      ? ''
      : `<p><a href="${escapeHtml(session.cancelUrl)}">Back (cancel)</a></p>`
  return page(
    error === undefined ? 200 : 402,
    'Checkout',
    `<h1>Pay ${escapeHtml(total)}</h1><ul>${items}</ul>
${error === undefined ? '' : `<p role="alert" style="color:#b00">${escapeHtml(error)}</p>`}
<form method="post"><label>Card <select name="payment_method">${options}</select></label>
<label>Email <input name="email" value="jenny.rosen@example.com"></label>
<button type="submit">Pay</button></form>${cancel}`,
  )
}

export function payCheckoutPage(
  emulator: StripeEmulator,
  sessionId: string,
  card: string,
  email: string,
): PageResponse {
  if (!isTestCardAlias(card)) return checkoutPage(emulator, sessionId, `Unknown test card ${card}`)
  const completion = emulator.completeCheckoutSession(sessionId, {
    paymentMethod: card,
    email: email || undefined,
  })
  if (completion.error !== null) {
    return checkoutPage(emulator, sessionId, String(completion.error.message ?? 'Payment failed'))
  }
  const session = requireCheckoutSession(emulator.state, sessionId)
  if (session.successUrl === null) return page(200, 'Checkout', '<p>Payment complete.</p>')
  return {
    kind: 'redirect',
    location: session.successUrl.replaceAll('{CHECKOUT_SESSION_ID}', session.id),
  }
}

export function challengePage(emulator: StripeEmulator, paymentIntentId: string): PageResponse {
  const intent = requirePaymentIntent(emulator.state, paymentIntentId)
  if (intent.status !== 'requires_action') {
    return page(
      200,
      '3D Secure',
      `<p>Nothing to authenticate: status <b>${escapeHtml(intent.status)}</b>.</p>`,
    )
  }
  return page(
    200,
    '3D Secure',
    `<h1>Authenticate ${escapeHtml(formatMinorUnits(intent.amount, intent.currency))}</h1>
<form method="post"><button name="result" value="pass">Complete authentication</button>
<button name="result" value="fail">Fail authentication</button></form>`,
  )
}

export function answerChallengePage(
  emulator: StripeEmulator,
  paymentIntentId: string,
  pass: boolean,
): PageResponse {
  const intent = requirePaymentIntent(emulator.state, paymentIntentId)
  const redirect = intent.nextAction?.redirect_to_url
  const returnUrl =
    isJsonObject(redirect) && typeof redirect.return_url === 'string' ? redirect.return_url : null
  try {
    emulator.authenticatePaymentIntent(paymentIntentId, { pass })
  } catch (error) {
    if (!(error instanceof StripeHttpError)) throw error
  }
  if (returnUrl === null) {
    return page(
      200,
      '3D Secure',
      `<p>PaymentIntent is now <b>${escapeHtml(intent.status)}</b>.</p>`,
    )
  }
  const location = new URL(returnUrl)
  location.searchParams.set('payment_intent', intent.id)
  location.searchParams.set('payment_intent_client_secret', intent.clientSecret)
  location.searchParams.set(
    'redirect_status',
    intent.status === 'succeeded' ? 'succeeded' : 'failed',
  )
  return { kind: 'redirect', location: location.toString() }
}

function page(status: number, title: string, body: string): PageResponse {
  return {
    kind: 'html',
    status,
    html: `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)} · Stripe emulator</title></head><body>${body}</body></html>`,
  }
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}
