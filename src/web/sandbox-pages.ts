import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../app.ts'
import { formatMinorUnits } from '../core/money.ts'
import type { Db } from '../db/client.ts'
import type { SandboxSession } from '../db/database.ts'
import type { GatewayContext } from '../gateways/gateway.ts'
import { gatewayContext, isGatewayAvailable } from '../gateways/registry.ts'
import {
  SANDBOX_CRYPTO_ACTIONS,
  type SandboxCryptoAction,
} from '../gateways/sandbox/sandbox.transformers.ts'
import {
  answerChallenge,
  type CardSubmission,
  canUnderpay,
  cryptoAction,
  expireIfLapsed,
  expireSession,
  submitCard,
} from '../gateways/sandbox/sandbox-provider.ts'
import { escapeHtml, page, registerFormParser, sendHtml } from './html.ts'

const SessionParams = Type.Object({ session: Type.String({ maxLength: 100 }) })
const CardForm = Type.Object({
  card_number: Type.String({ maxLength: 40 }),
  exp_month: Type.String({ maxLength: 2 }),
  exp_year: Type.String({ maxLength: 4 }),
  cvc: Type.Optional(Type.String({ maxLength: 4 })),
})
const ActionForm = Type.Object({ action: Type.String({ maxLength: 40 }) })

/**
 * The sandbox gateway's hosted pages, as a provider would host them: a card
 * checkout (with the 3-D Secure challenge of the 3184 test card) and a crypto
 * invoice page. They talk only to the sandbox provider, which reports to Payrail
 * through signed webhooks.
 */
export function sandboxPages(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    registerFormParser(app)
    const config = { auth: false as const }
    const schemaBase = { hide: true }

    // A page takes only the sessions of its kind: a card session is not paid in coins on the
    // crypto page, nor a crypto invoice with a test card.
    const load = async (
      id: string,
      mode: SandboxSession['mode'],
    ): Promise<{ session: SandboxSession; ctx: GatewayContext; urls: ReturnUrls } | undefined> => {
      const found = await findSessionWithUrls(deps.db, id)
      if (!found || found.session.mode !== mode) return undefined
      const { session, urls } = found
      const scope = { tenantId: session.tenant_id, environmentId: session.environment_id }
      // Test cards pay nothing: a page of a live environment (one opened before the sandbox
      // was refused there) takes none.
      if (!(await isGatewayAvailable(deps, scope, 'sandbox'))) return undefined
      const ctx = await gatewayContext(deps, scope, 'sandbox')
      return { session: await expireIfLapsed(ctx, session), ctx, urls }
    }
    const missing = (reply: FastifyReply) =>
      sendHtml(
        reply,
        404,
        page('Not found', '<h1>Checkout not found</h1><p>This link is not valid.</p>'),
      )

    app.get(
      '/sandbox/checkout/:session',
      { config, schema: { ...schemaBase, params: SessionParams } },
      async (request, reply) => {
        const found = await load(request.params.session, 'card')
        if (!found) return missing(reply)
        return sendHtml(reply, 200, checkoutPage(found.session))
      },
    )

    app.post(
      '/sandbox/checkout/:session',
      { config, schema: { ...schemaBase, params: SessionParams, body: CardForm } },
      async (request, reply) => {
        const found = await load(request.params.session, 'card')
        if (!found) return missing(reply)
        const form = request.body
        const result = await submitCard(found.ctx, found.session, {
          number: form.card_number,
          expMonth: Number(form.exp_month),
          expYear: normalizeYear(Number(form.exp_year)),
        })
        return respondToSubmission(reply, found.urls, result)
      },
    )

    app.get(
      '/sandbox/checkout/:session/challenge',
      { config, schema: { ...schemaBase, params: SessionParams } },
      async (request, reply) => {
        const found = await load(request.params.session, 'card')
        if (!found) return missing(reply)
        // No challenge waits (it was answered, or another card replaced it): the form.
        if (found.session.status === 'open') return reply.redirect(checkoutPath(found.session), 303)
        return sendHtml(reply, 200, challengePage(found.session))
      },
    )

    app.post(
      '/sandbox/checkout/:session/challenge',
      { config, schema: { ...schemaBase, params: SessionParams, body: ActionForm } },
      async (request, reply) => {
        const found = await load(request.params.session, 'card')
        if (!found) return missing(reply)
        const approve = request.body.action === 'approve'
        return respondToSubmission(
          reply,
          found.urls,
          await answerChallenge(found.ctx, found.session, approve),
        )
      },
    )

    app.post(
      '/sandbox/checkout/:session/cancel',
      { config, schema: { ...schemaBase, params: SessionParams } },
      async (request, reply) => {
        const found = await load(request.params.session, 'card')
        if (!found) return missing(reply)
        const now = await expireSession(found.ctx, found.session)
        // A page paid meanwhile (in another tab) is answered as it now stands: paid.
        if (now.status === 'complete')
          return respondToSubmission(reply, found.urls, { kind: 'completed', session: now })
        if (found.urls.cancel_url) return reply.redirect(found.urls.cancel_url, 303)
        return sendHtml(
          reply,
          200,
          page('Cancelled', '<h1>Checkout cancelled</h1><p>You can close this page.</p>'),
        )
      },
    )

    app.get(
      '/sandbox/crypto/:session',
      { config, schema: { ...schemaBase, params: SessionParams } },
      async (request, reply) => {
        const found = await load(request.params.session, 'crypto')
        if (!found) return missing(reply)
        return sendHtml(reply, 200, cryptoPage(found.session))
      },
    )

    app.post(
      '/sandbox/crypto/:session',
      { config, schema: { ...schemaBase, params: SessionParams, body: ActionForm } },
      async (request, reply) => {
        const found = await load(request.params.session, 'crypto')
        if (!found) return missing(reply)
        const action = SANDBOX_CRYPTO_ACTIONS.find((a) => a === request.body.action)
        if (!action) return sendHtml(reply, 400, page('Unknown action', '<h1>Unknown action</h1>'))
        const updated = await cryptoAction(
          found.ctx,
          found.session,
          action satisfies SandboxCryptoAction,
        )
        if (updated.status === 'complete' && found.urls.success_url)
          return reply.redirect(found.urls.success_url, 303)
        return sendHtml(reply, 200, cryptoPage(updated))
      },
    )
  }
}

/** Where the payment sends the customer back: its own URLs as they are now. */
interface ReturnUrls {
  success_url: string | null
  cancel_url: string | null
}

/**
 * The session, with its payment's `success_url` and `cancel_url` read in the same query:
 * the merchant may change them (`PATCH /v1/payments/:id`) while the page is open, and the
 * customer goes where the payment says, not to the copy the session was opened with.
 */
async function findSessionWithUrls(
  db: Db,
  id: string,
): Promise<{ session: SandboxSession; urls: ReturnUrls } | undefined> {
  const row = await db
    .selectFrom('sandbox_sessions as s')
    .leftJoin('payments as p', (join) =>
      join.onRef('p.id', '=', 's.payment_id').onRef('p.environment_id', '=', 's.environment_id'),
    )
    .selectAll('s')
    .select(['p.success_url as payment_success_url', 'p.cancel_url as payment_cancel_url'])
    .where('s.id', '=', id)
    .executeTakeFirst()
  if (!row) return undefined
  const { payment_success_url, payment_cancel_url, ...session } = row
  return {
    session,
    urls: { success_url: payment_success_url ?? null, cancel_url: payment_cancel_url ?? null },
  }
}

function respondToSubmission(reply: FastifyReply, urls: ReturnUrls, result: CardSubmission) {
  switch (result.kind) {
    case 'completed':
      if (urls.success_url) return reply.redirect(urls.success_url, 303)
      return sendHtml(reply, 200, donePage(result.session))
    case 'challenge':
      return reply.redirect(`/sandbox/checkout/${result.session.id}/challenge`, 303)
    case 'declined':
      return sendHtml(reply, 402, checkoutPage(result.session, result.message))
    case 'invalid':
      return sendHtml(reply, 400, checkoutPage(result.session, result.message))
    case 'closed':
      // Still open (a challenge answered from a page another card had replaced): the form.
      if (result.session.status === 'open') return reply.redirect(checkoutPath(result.session), 303)
      // Paid (Pay or the challenge sent twice, a page paid in another tab): shown paid, as the
      // first answer was, and nothing charged again.
      if (result.session.status === 'complete')
        return respondToSubmission(reply, urls, { kind: 'completed', session: result.session })
      return sendHtml(reply, 409, closedPage(result.session))
  }
}

function checkoutPath(session: SandboxSession): string {
  return `/sandbox/checkout/${encodeURIComponent(session.id)}`
}

function amountOf(session: SandboxSession): string {
  return `${formatMinorUnits(session.amount, session.currency)} ${session.currency.toUpperCase()}`
}

function checkoutPage(session: SandboxSession, error?: string): string {
  if (session.status === 'complete') return donePage(session)
  if (session.status !== 'open' && session.status !== 'requires_action') return closedPage(session)
  const id = escapeHtml(session.id)
  return page(
    'Pay',
    `<span class="badge">SANDBOX</span>
<h1>Pay</h1>
<div class="amount">${escapeHtml(amountOf(session))}</div>
<form method="post" action="/sandbox/checkout/${id}">
  <label for="card_number">Card number</label>
  <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242" required>
  <div class="row">
    <div><label for="exp_month">Month</label><input id="exp_month" name="exp_month" placeholder="12" required></div>
    <div><label for="exp_year">Year</label><input id="exp_year" name="exp_year" placeholder="2030" required></div>
    <div><label for="cvc">CVC</label><input id="cvc" name="cvc" placeholder="123"></div>
  </div>
  ${session.save_card ? '<p class="hint">This card will be saved for future payments.</p>' : ''}
  <button type="submit">Pay ${escapeHtml(amountOf(session))}</button>
</form>
${error ? `<div class="error" role="alert">${escapeHtml(error)}</div>` : ''}
<form method="post" action="/sandbox/checkout/${id}/cancel"><button class="secondary" type="submit">Cancel</button></form>
<p class="hint">Test cards: <code>4242424242424242</code> succeeds, <code>4000000000000002</code> is declined,
<code>4000000000009995</code> has insufficient funds, <code>4000000000009987</code> is lost,
<code>4000000000000069</code> has expired, <code>4000002760003184</code> asks for 3-D Secure.</p>`,
  )
}

function challengePage(session: SandboxSession): string {
  if (session.status !== 'requires_action') return closedPage(session)
  const id = escapeHtml(session.id)
  return page(
    '3-D Secure',
    `<span class="badge">SANDBOX</span>
<h1>Confirm this payment</h1>
<p>Your bank asks you to confirm a payment of <strong>${escapeHtml(amountOf(session))}</strong>.</p>
<form method="post" action="/sandbox/checkout/${id}/challenge"><input type="hidden" name="action" value="approve">
  <button type="submit">Complete authentication</button></form>
<form method="post" action="/sandbox/checkout/${id}/challenge"><input type="hidden" name="action" value="fail">
  <button class="secondary" type="submit">Fail authentication</button></form>`,
  )
}

function cryptoPage(session: SandboxSession): string {
  const id = escapeHtml(session.id)
  const buttons = (actions: readonly SandboxCryptoAction[]) =>
    actions
      .map(
        (action) =>
          `<form method="post" action="/sandbox/crypto/${id}"><input type="hidden" name="action" value="${action}">
  <button class="${action === 'pay_and_confirm' ? '' : 'secondary'}" type="submit">${escapeHtml(CRYPTO_LABELS[action])}</button></form>`,
      )
      .join('\n')
  const status =
    session.status === 'open'
      ? 'Waiting for payment'
      : session.status === 'confirming'
        ? 'Payment seen, waiting for confirmations'
        : session.status === 'complete'
          ? `Confirmed: received ${formatMinorUnits(session.amount_received, session.currency)} ${session.currency.toUpperCase()}`
          : 'Expired'
  const actions: readonly SandboxCryptoAction[] =
    session.status === 'open'
      ? canUnderpay(session)
        ? ['pay_and_confirm', 'pay', 'underpay', 'overpay', 'expire']
        : ['pay_and_confirm', 'pay', 'overpay', 'expire']
      : session.status === 'confirming'
        ? ['confirm']
        : []
  return page(
    'Pay with crypto',
    `<span class="badge">SANDBOX</span>
<h1>Crypto invoice</h1>
<div class="amount">${escapeHtml(amountOf(session))}</div>
<p>${escapeHtml(status)}</p>
${buttons(actions)}`,
  )
}

const CRYPTO_LABELS: Record<SandboxCryptoAction, string> = {
  pay_and_confirm: 'Pay in full (confirmed)',
  pay: 'Pay in full (unconfirmed)',
  confirm: 'Confirm on chain',
  underpay: 'Pay half',
  overpay: 'Pay 120%',
  expire: 'Let it expire',
}

function donePage(session: SandboxSession): string {
  return page(
    'Paid',
    `<div class="ok"><strong>Payment complete.</strong> ${escapeHtml(amountOf(session))} received.</div>`,
  )
}

function closedPage(session: SandboxSession): string {
  const text =
    session.status === 'complete' ? 'This checkout is already paid.' : 'This checkout has expired.'
  return page('Closed', `<h1>Checkout closed</h1><p>${escapeHtml(text)}</p>`)
}

function normalizeYear(year: number): number {
  return year < 100 ? 2000 + year : year
}
