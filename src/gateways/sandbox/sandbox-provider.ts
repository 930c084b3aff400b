import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { signWebhook } from '../../core/webhook-signature.ts'
import type { Db } from '../../db/client.ts'
import type { Payment, SandboxCard, SandboxSession } from '../../db/database.ts'
import { rowOf, StatementCache } from '../../db/statement-cache.ts'
import { holdInsert } from '../../db/transaction.ts'
import type { GatewayContext } from '../gateway.ts'
import {
  behaviourOf,
  brandOf,
  isValidCardNumber,
  normalizeCardNumber,
  SANDBOX_TEST_CARDS,
  type SandboxCardBehaviour,
  type SandboxCryptoAction,
} from './sandbox.transformers.ts'

/**
 * The sandbox's provider side: what Stripe or BitPay would hold on their servers
 * (checkout sessions, saved cards, charges), kept in Payrail's database in tables of
 * its own, and reported to Payrail only through signed webhooks, like a real
 * provider. Nothing here reads or writes Payrail's payment tables.
 */

export const SANDBOX_SIGNATURE_HEADER = 'payrail-signature'
export const SANDBOX_DELIVERY_TASK = 'deliver_sandbox_webhook'
const SESSION_TTL_MS = 24 * 60 * 60 * 1000

export interface SandboxEvent {
  id: string
  type: string
  created: number
  data: {
    payment_id: string
    session_id: string | null
    charge_id: string | null
    amount: number
    amount_received: number
    currency: string
    card: {
      id: string
      brand: string
      last4: string
      exp_month: number
      exp_year: number
      saved: boolean
    } | null
    error: { code: string; message: string; decline_code: string | null } | null
    refund_id: string | null
    gateway_refund_id: string | null
  }
}

export interface SessionInput {
  payment: Payment
  mode: 'card' | 'crypto'
  /** When the payment's invoices stop taking money (`GatewayPaymentRequest.payBy`). */
  payBy?: Date | null | undefined
}

export async function createSession(
  ctx: GatewayContext,
  input: SessionInput,
): Promise<SandboxSession> {
  const now = ctx.clock.now()
  const row = sessionRow(ctx, input, now)
  const { columns, shape, values, slots } = rowOf(row)
  // The payment's session, asked again (an answer lost), is the same session. One closed
  // unpaid before it was ever the payment's page (withdrawn: the payment changed while it was
  // being opened) is opened again on the payment's terms as they are now, as Stripe makes a
  // new session for a request that asks something else.
  const query = STATEMENTS.compile(shape, [...values, now], ($) =>
    ctx.db
      .insertInto('sandbox_sessions')
      .values(slots($))
      .onConflict((oc) =>
        oc.column('payment_id').doUpdateSet({
          updated_at: $(columns.length),
          ...Object.fromEntries(columns.filter(isReopened).map((c) => [c, ifWithdrawn(c)])),
          amount_received: sql<bigint>`case when ${WITHDRAWN} then 0 else sandbox_sessions.amount_received end`,
          pending_card_number: sql<null>`case when ${WITHDRAWN} then null else sandbox_sessions.pending_card_number end`,
        }),
      )
      .returningAll(),
  )
  const [session] = (await ctx.db.executeQuery(query)).rows
  if (!session) throw new Error('sandbox session insert returned no row')
  return session
}

/**
 * Opens the session of a payment the transaction `trx` is writing: its insert is held
 * (`holdInsert`) and goes with the payment's, in the same commit, so that a session never
 * exists without its payment nor a PENDING payment without its session. Returns its id.
 */
export async function openSessionWith(
  trx: Db,
  ctx: GatewayContext,
  input: SessionInput,
): Promise<string> {
  const row = sessionRow(ctx, input, ctx.clock.now())
  if (holdInsert(trx, 'sandbox_sessions', { id: row.id }, row)) return row.id
  return (await createSession({ ...ctx, db: trx }, input)).id
}

/** A session withdrawn before it was the payment's page: the only closed one a start finds. */
const WITHDRAWN = sql<boolean>`sandbox_sessions.status = 'expired'`

/** The columns a withdrawn session takes anew when its payment is started again. */
const REOPENED_COLUMNS = [
  'status',
  'amount',
  'currency',
  'save_card',
  'success_url',
  'cancel_url',
  'expires_at',
  'created_at',
] as const

function isReopened(column: string): column is (typeof REOPENED_COLUMNS)[number] {
  return (REOPENED_COLUMNS as readonly string[]).includes(column)
}

function ifWithdrawn(column: (typeof REOPENED_COLUMNS)[number]) {
  return sql`case when ${WITHDRAWN} then ${sql.ref(`excluded.${column}`)} else ${sql.ref(`sandbox_sessions.${column}`)} end`
}

function sessionRow(ctx: GatewayContext, input: SessionInput, now: Date) {
  const { payment } = input
  // A page takes no money once the invoices it pays stop taking it (their payment window's
  // end): it expires then, when that comes before the 24 h a page lives.
  const lapses = now.getTime() + SESSION_TTL_MS
  const expiresAt = input.payBy && input.payBy.getTime() < lapses ? input.payBy : new Date(lapses)
  return {
    id: providerId('sbs'),
    environment_id: ctx.scope.environmentId,
    tenant_id: ctx.scope.tenantId,
    payment_id: payment.id,
    customer_id: payment.customer_id,
    mode: input.mode,
    status: 'open' as const,
    amount: payment.amount,
    currency: payment.currency,
    save_card: payment.save_card_and_make_default,
    success_url: payment.success_url,
    cancel_url: payment.cancel_url,
    expires_at: expiresAt,
    created_at: now,
    updated_at: now,
  }
}

/** The session insert of every sandbox link, built once (`StatementCache`). */
const STATEMENTS = new StatementCache()

export async function findSession(db: Db, id: string): Promise<SandboxSession | undefined> {
  return db.selectFrom('sandbox_sessions').selectAll().where('id', '=', id).executeTakeFirst()
}

export type CardSubmission =
  | { kind: 'completed'; session: SandboxSession }
  | { kind: 'declined'; session: SandboxSession; message: string }
  | { kind: 'challenge'; session: SandboxSession }
  | { kind: 'invalid'; session: SandboxSession; message: string }
  | { kind: 'closed'; session: SandboxSession }

/**
 * The customer submits a card on the hosted page. A declined card leaves the
 * session open for another try (an attempt is reported); the 3-D Secure card waits
 * for the challenge; a good card completes the session.
 */
export async function submitCard(
  ctx: GatewayContext,
  session: SandboxSession,
  card: { number: string; expMonth: number; expYear: number },
): Promise<CardSubmission> {
  const lapsed = session.expires_at.getTime() <= ctx.clock.now().getTime()
  if (session.status === 'requires_action' && !lapsed) {
    // Another card entered while a 3-D Secure challenge waits replaces it, as on Stripe's
    // page: the challenge is abandoned (answering it later takes nothing).
    const reopened = await updateSession(ctx, session.id, ['requires_action'], {
      status: 'open',
      pending_card_number: null,
    })
    if (!reopened) return asItIsNow(ctx, session)
    return submitCard(ctx, reopened, card)
  }
  if (!isOpen(session, ctx)) return { kind: 'closed', session }
  const number = normalizeCardNumber(card.number)
  if (!isValidCardNumber(number))
    return { kind: 'invalid', session, message: 'Your card number is incorrect.' }
  const now = ctx.clock.now()
  if (
    !Number.isInteger(card.expMonth) ||
    card.expMonth < 1 ||
    card.expMonth > 12 ||
    !Number.isInteger(card.expYear)
  ) {
    return { kind: 'invalid', session, message: "Your card's expiration date is incorrect." }
  }
  if (hasExpired(card, now)) {
    return { kind: 'invalid', session, message: "Your card's expiration date is in the past." }
  }
  const behaviour = behaviourOf(number)
  if (behaviour.kind === 'declines') {
    await emit(
      ctx,
      session.payment_id,
      'checkout.attempt_failed',
      eventData(session, {
        error: {
          code: behaviour.decline.code,
          message: behaviour.decline.message,
          decline_code: behaviour.decline.declineCode ?? null,
        },
      }),
    )
    return { kind: 'declined', session, message: behaviour.decline.message }
  }
  if (behaviour.kind === 'requires_authentication') {
    const waiting = await updateSession(ctx, session.id, ['open'], {
      status: 'requires_action',
      pending_card_number: `${number}|${card.expMonth}|${card.expYear}`,
    })
    if (!waiting) return asItIsNow(ctx, session)
    return { kind: 'challenge', session: waiting }
  }
  return completeWithCard(ctx, session, number, card.expMonth, card.expYear)
}

/**
 * What a card submission comes to when the session moved before this request could move
 * it (a second click, a merchant's cancel): as the session stands now, re-read.
 */
async function asItIsNow(ctx: GatewayContext, read: SandboxSession): Promise<CardSubmission> {
  const session = (await findSession(ctx.db, read.id)) ?? read
  if (session.status === 'complete') return { kind: 'completed', session }
  if (session.status === 'requires_action') return { kind: 'challenge', session }
  return { kind: 'closed', session }
}

/** The 3-D Secure challenge page's answer. */
export async function answerChallenge(
  ctx: GatewayContext,
  session: SandboxSession,
  approve: boolean,
): Promise<CardSubmission> {
  // A challenge answered after the session's expiry takes nothing, as a card would not.
  if (
    session.status !== 'requires_action' ||
    !session.pending_card_number ||
    session.expires_at.getTime() <= ctx.clock.now().getTime()
  )
    return { kind: 'closed', session }
  const [number = '', month = '0', year = '0'] = session.pending_card_number.split('|')
  const reopened = await updateSession(ctx, session.id, ['requires_action'], {
    status: 'open',
    pending_card_number: null,
  })
  if (!reopened) return asItIsNow(ctx, session)
  if (!approve) {
    await emit(
      ctx,
      session.payment_id,
      'checkout.attempt_failed',
      eventData(reopened, {
        error: {
          code: 'authentication_required',
          message: 'The card holder failed 3-D Secure authentication.',
          decline_code: 'authentication_failed',
        },
      }),
    )
    return {
      kind: 'declined',
      session: reopened,
      message: 'Authentication failed. Try again or use another card.',
    }
  }
  return completeWithCard(ctx, reopened, number, Number(month), Number(year))
}

async function completeWithCard(
  ctx: GatewayContext,
  session: SandboxSession,
  number: string,
  expMonth: number,
  expYear: number,
): Promise<CardSubmission> {
  // Only an open session takes the card: one the merchant closed meanwhile takes nothing.
  const completed = await updateSession(ctx, session.id, ['open'], {
    status: 'complete',
    amount_received: session.amount,
  })
  if (!completed) return asItIsNow(ctx, session)
  const card = session.save_card
    ? await saveCard(ctx, session.customer_id, number, expMonth, expYear)
    : undefined
  await emit(
    ctx,
    session.payment_id,
    'checkout.completed',
    eventData(completed, {
      amount_received: Number(session.amount),
      card: {
        id: card?.id ?? providerId('sbcard'),
        brand: brandOf(number),
        last4: number.slice(-4),
        exp_month: expMonth,
        exp_year: expYear,
        saved: card !== undefined,
      },
    }),
  )
  return { kind: 'completed', session: completed }
}

/**
 * Whether "Pay half" can underpay the session: half of one minor unit is nothing, and an
 * invoice confirmed with nothing received is no underpayment (the page does not offer it).
 */
export function canUnderpay(session: Pick<SandboxSession, 'amount'>): boolean {
  return session.amount >= 2n
}

/** The crypto page's buttons: pay (unconfirmed), confirm, under- or overpay, or let it expire. */
export async function cryptoAction(
  ctx: GatewayContext,
  session: SandboxSession,
  action: SandboxCryptoAction,
): Promise<SandboxSession> {
  if (!isOpen(session, ctx) && !(session.status === 'confirming' && action === 'confirm'))
    return session
  if (action === 'underpay' && !canUnderpay(session)) return session
  const amount = session.amount
  switch (action) {
    case 'pay': {
      const paid = await updateSession(ctx, session.id, ['open'], {
        status: 'confirming',
        amount_received: amount,
      })
      if (!paid) return (await findSession(ctx.db, session.id)) ?? session
      await emit(
        ctx,
        session.payment_id,
        'crypto.paid',
        eventData(paid, { amount_received: Number(amount) }),
      )
      return paid
    }
    case 'confirm':
    case 'pay_and_confirm':
    case 'underpay':
    case 'overpay': {
      // Half, at least one minor unit (`canUnderpay`); 120%, at least one minor unit more.
      const received =
        action === 'underpay'
          ? amount / 2n
          : action === 'overpay'
            ? amount + (amount / 5n > 0n ? amount / 5n : 1n)
            : session.amount_received > 0n
              ? session.amount_received
              : amount
      // From the status this request read: a page loaded before its coins were sent does not
      // send them again, nor complete with another amount than the one reported.
      const done = await updateSession(ctx, session.id, [session.status], {
        status: 'complete',
        amount_received: received,
      })
      if (!done) return (await findSession(ctx.db, session.id)) ?? session
      if (action === 'pay_and_confirm') {
        await emit(
          ctx,
          session.payment_id,
          'crypto.paid',
          eventData(session, { amount_received: Number(received) }),
        )
      }
      await emit(
        ctx,
        session.payment_id,
        'crypto.confirmed',
        eventData(done, { amount_received: Number(received) }),
      )
      return done
    }
    case 'expire':
      return expireSession(ctx, session)
  }
}

/**
 * A page past its expiry that nothing expired yet is expired now, as a provider's page lapses
 * on its own (with its `expired` webhook, which fails the payment). Before, the sandbox had no
 * clock of its own: such a page showed "waiting", every button did nothing ("Let it expire"
 * too), and its payment stayed PENDING for good.
 */
export async function expireIfLapsed(
  ctx: GatewayContext,
  session: SandboxSession,
): Promise<SandboxSession> {
  const lapsed =
    (session.status === 'open' || session.status === 'requires_action') &&
    session.expires_at.getTime() <= ctx.clock.now().getTime()
  return lapsed ? expireSession(ctx, session) : session
}

export async function expireSession(
  ctx: GatewayContext,
  session: SandboxSession,
): Promise<SandboxSession> {
  // A crypto page whose coins were sent (confirming) has been paid: it no longer expires.
  if (session.status !== 'open' && session.status !== 'requires_action') return session
  const expired = await updateSession(ctx, session.id, [session.status], { status: 'expired' })
  if (!expired) return (await findSession(ctx.db, session.id)) ?? session
  await emit(
    ctx,
    session.payment_id,
    session.mode === 'crypto' ? 'crypto.expired' : 'checkout.expired',
    eventData(expired, {}),
  )
  return expired
}

/**
 * Closes a session the merchant cancelled: the page refuses cards from now on. No
 * webhook: Payrail cancelled the payment itself, as a provider does not report back
 * a cancellation its merchant asked for. False when the customer had paid it
 * (`complete`, or coins sent and `confirming`), even in the instant before.
 */
export async function closeSession(ctx: GatewayContext, session: SandboxSession): Promise<boolean> {
  if (session.status === 'expired') return true
  return (
    (await updateSession(ctx, session.id, ['open', 'requires_action'], { status: 'expired' })) !==
    undefined
  )
}

export type SandboxCharge =
  | { kind: 'succeeded'; chargeId: string; card: SandboxCard }
  | {
      kind: 'declined'
      chargeId: string
      card: SandboxCard
      code: string
      message: string
      declineCode: string | null
    }
  | { kind: 'unknown_card' }

/** Whether a card's expiry month has ended by `now` (it is good through its last day, in UTC). */
function hasExpired(card: { expMonth: number; expYear: number }, now: Date): boolean {
  return (
    card.expYear < now.getUTCFullYear() ||
    (card.expYear === now.getUTCFullYear() && card.expMonth < now.getUTCMonth() + 1)
  )
}

const EXPIRED = SANDBOX_TEST_CARDS['4000000000000069'] as SandboxCardBehaviour

/** An off-session charge of a saved card (no customer present, so no 3-D Secure challenge is possible). */
export async function chargeCard(
  ctx: GatewayContext,
  payment: Payment,
  cardId: string,
): Promise<SandboxCharge> {
  const card = await ctx.db
    .selectFrom('sandbox_cards')
    .selectAll()
    .where('id', '=', cardId)
    .where('environment_id', '=', ctx.scope.environmentId)
    .executeTakeFirst()
  if (!card) return { kind: 'unknown_card' }
  const chargeId = providerId('sbch')
  // A saved card past its expiry is declined as the card networks decline it (Stripe's
  // `expired_card`), whatever its number does otherwise.
  const behaviour = hasExpired(
    { expMonth: card.exp_month, expYear: card.exp_year },
    ctx.clock.now(),
  )
    ? EXPIRED
    : behaviourOf(card.number)
  const base = {
    payment_id: payment.id,
    session_id: null,
    charge_id: chargeId,
    amount: Number(payment.amount),
    currency: payment.currency,
  }
  const cardData = {
    id: card.id,
    brand: card.brand,
    last4: card.last4,
    exp_month: card.exp_month,
    exp_year: card.exp_year,
    saved: true,
  }
  if (behaviour.kind === 'succeeds') {
    await emit(ctx, payment.id, 'charge.succeeded', {
      ...emptyData(),
      ...base,
      amount_received: Number(payment.amount),
      card: cardData,
    })
    return { kind: 'succeeded', chargeId, card }
  }
  const decline =
    behaviour.kind === 'declines'
      ? behaviour.decline
      : {
          code: 'authentication_required' as const,
          message: 'This payment requires the card holder to authenticate.',
          declineCode: 'authentication_required',
        }
  await emit(ctx, payment.id, 'charge.failed', {
    ...emptyData(),
    ...base,
    card: cardData,
    error: {
      code: decline.code,
      message: decline.message,
      decline_code: decline.declineCode ?? null,
    },
  })
  return {
    kind: 'declined',
    chargeId,
    card,
    code: decline.code,
    message: decline.message,
    declineCode: decline.declineCode ?? null,
  }
}

export async function refundPayment(
  ctx: GatewayContext,
  payment: Payment,
  refundId: string,
  amount: bigint,
): Promise<string> {
  const gatewayRefundId = providerId('sbre')
  await emit(ctx, payment.id, 'refund.succeeded', {
    ...emptyData(),
    payment_id: payment.id,
    amount: Number(amount),
    currency: payment.currency,
    refund_id: refundId,
    gateway_refund_id: gatewayRefundId,
  })
  return gatewayRefundId
}

async function saveCard(
  ctx: GatewayContext,
  customerId: string,
  number: string,
  expMonth: number,
  expYear: number,
) {
  return ctx.db
    .insertInto('sandbox_cards')
    .values({
      id: providerId('sbcard'),
      environment_id: ctx.scope.environmentId,
      customer_id: customerId,
      number,
      brand: brandOf(number),
      last4: number.slice(-4),
      exp_month: expMonth,
      exp_year: expYear,
      created_at: ctx.clock.now(),
    })
    .returningAll()
    .executeTakeFirstOrThrow()
}

function isOpen(session: SandboxSession, ctx: GatewayContext): boolean {
  return session.status === 'open' && session.expires_at.getTime() > ctx.clock.now().getTime()
}

/**
 * Moves a session on, only from one of the statuses `from` (what the caller read it in): a
 * session closed by the merchant, or completed by another request meanwhile, is not moved
 * again. Undefined when it was no longer in one of them.
 */
async function updateSession(
  ctx: GatewayContext,
  id: string,
  from: readonly SandboxSession['status'][],
  changes: Partial<Pick<SandboxSession, 'status' | 'pending_card_number' | 'amount_received'>>,
): Promise<SandboxSession | undefined> {
  return ctx.db
    .updateTable('sandbox_sessions')
    .set({ ...changes, updated_at: ctx.clock.now() })
    .where('id', '=', id)
    .where('status', 'in', from)
    .returningAll()
    .executeTakeFirst()
}

function emptyData(): SandboxEvent['data'] {
  return {
    payment_id: '',
    session_id: null,
    charge_id: null,
    amount: 0,
    amount_received: 0,
    currency: '',
    card: null,
    error: null,
    refund_id: null,
    gateway_refund_id: null,
  }
}

function eventData(
  session: SandboxSession,
  extra: Partial<SandboxEvent['data']>,
): SandboxEvent['data'] {
  return {
    ...emptyData(),
    payment_id: session.payment_id,
    session_id: session.id,
    amount: Number(session.amount),
    amount_received: Number(session.amount_received),
    currency: session.currency,
    ...extra,
  }
}

/**
 * Signs and delivers an event to Payrail's inbound sandbox endpoint. A delivery
 * that does not get a 2xx is retried by a job with backoff, as providers do.
 */
async function emit(
  ctx: GatewayContext,
  _paymentId: string,
  type: string,
  data: SandboxEvent['data'],
): Promise<void> {
  const event: SandboxEvent = {
    id: providerId('sbevt'),
    type,
    created: Math.floor(ctx.clock.now().getTime() / 1000),
    data,
  }
  const body = JSON.stringify(event)
  const path = sandboxWebhookPath(ctx.scope.tenantId, ctx.scope.environmentId)
  const delivered = await deliverSandboxEvent(ctx, path, body).catch(() => false)
  if (!delivered) {
    await ctx.jobs.add(SANDBOX_DELIVERY_TASK, { path, body }, { maxAttempts: 25 })
  }
}

export async function deliverSandboxEvent(
  ctx: Pick<GatewayContext, 'credentials' | 'clock' | 'loopback'>,
  path: string,
  body: string,
): Promise<boolean> {
  const secret = ctx.credentials?.webhook_secret
  if (!secret) return false
  const header = signWebhook(secret, body, Math.floor(ctx.clock.now().getTime() / 1000))
  const status = await ctx.loopback.post(path, body, { [SANDBOX_SIGNATURE_HEADER]: header })
  return status >= 200 && status < 300
}

export function sandboxWebhookPath(tenantId: string, environmentId: string): string {
  return `/v1/webhooks/sandbox/${encodeURIComponent(tenantId)}/${encodeURIComponent(environmentId)}`
}

function providerId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`
}
