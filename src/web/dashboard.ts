import { randomBytes } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../app.ts'
import { PAYMENT_STATUSES as PAYMENT_STATUS_VALUES } from '../core/payment-state.ts'
import { isSignedOut, recordSignout } from './dashboard-signouts.ts'
import { escapeHtml, registerFormParser, sendHtml } from './html.ts'

/** The cookie that holds the signed-in API key, sealed (`SecretBox`): HttpOnly, SameSite=Strict. */
export const DASHBOARD_COOKIE = 'payrail_dashboard'
const SESSION_SECONDS = 8 * 60 * 60
const PAGE_SIZE = 25

/** What the cookie seals: the key, when the session lapses (ms), and its id (to sign it out). */
interface DashboardSession {
  key: string
  exp: number
  sid: string
}

type Row = Record<string, unknown>
interface Listing {
  items: Row[]
  pagination: { total: number; limit: number; offset: number }
}

/** A column of a table: its heading and how a row shows in it (already escaped HTML). */
interface Column {
  heading: string
  cell(row: Row): string
}

/**
 * The merchant dashboard: sign in with an admin API key of an environment, then browse
 * its payments, invoices, customers, events and webhook deliveries. Every view is a
 * client of the public API (`app.inject` with the signed-in key), so it shows exactly
 * what the API shows that key, scoped and checked the same way, and nothing else. The
 * key is kept sealed in an HttpOnly, SameSite=Strict cookie for eight hours.
 */
/** An HTML form's fields, as the form parser makes them: every value a string. */
const FormFields = Type.Record(Type.String(), Type.String({ maxLength: 2000 }))

export function dashboardPages(deps: AppDeps): FastifyPluginAsync {
  return async (app) => {
    registerFormParser(app)
    const config = { auth: false as const }
    const schema = { hide: true }
    const secure = deps.config.publicUrl.startsWith('https://')
    const publicOrigin = new URL(deps.config.publicUrl).origin

    /** The session the cookie holds, while it lasts (its expiry is sealed with it). */
    const sessionOf = (request: FastifyRequest): DashboardSession | undefined => {
      const sealed = cookieOf(request, DASHBOARD_COOKIE)
      if (!sealed) return undefined
      try {
        const session = JSON.parse(deps.secretBox.open(sealed)) as Partial<DashboardSession>
        const { key, exp, sid } = session
        if (typeof key !== 'string' || typeof exp !== 'number' || typeof sid !== 'string')
          return undefined
        return exp > deps.clock.now().getTime() ? { key, exp, sid } : undefined
      } catch {
        return undefined
      }
    }
    /** The signed-in key, while its session lasts and was not signed out. */
    const keyOf = async (request: FastifyRequest): Promise<string | undefined> => {
      const session = sessionOf(request)
      if (!session || (await isSignedOut(deps.db, session.sid))) return undefined
      return session.key
    }
    /** A form posted from another site (login CSRF, a forced sign-out) is refused. */
    const crossSite = (request: FastifyRequest): boolean => {
      const site = request.headers['sec-fetch-site']
      if (site === 'cross-site' || site === 'same-site') return true
      const origin = request.headers.origin
      if (!origin || origin === 'null') return origin === 'null'
      try {
        const from = new URL(origin)
        // Behind a reverse proxy that rewrites Host (nginx's `proxy_pass` by default), the
        // page's origin is the public URL's, not the Host the server sees.
        return from.host !== request.headers.host && from.origin !== publicOrigin
      } catch {
        return true
      }
    }
    const setSession = (reply: FastifyReply, value: string, maxAge: number) =>
      reply.header(
        'set-cookie',
        `${DASHBOARD_COOKIE}=${value}; Path=/dashboard; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`,
      )
    const toLogin = (reply: FastifyReply) =>
      setSession(reply, '', 0).redirect('/dashboard/login', 303)

    /** The API's answer to GET `path` for the signed-in key; `undefined` when it no longer signs in. */
    const api = async <T>(key: string, path: string): Promise<T | undefined> => {
      const res = await app.inject({
        method: 'GET',
        url: path,
        headers: { authorization: `Bearer ${key}` },
      })
      if (res.statusCode === 401 || res.statusCode === 403) return undefined
      // An id or a filter the API refuses (400) is, to the dashboard, nothing to show.
      if (res.statusCode === 404 || res.statusCode === 400) throw new DashboardNotFound()
      if (res.statusCode >= 400) throw new Error(`${path}: ${res.statusCode}`)
      return res.json() as T
    }

    /** A signed-in view: `render` builds the body from API answers. */
    const view = (
      path: string,
      render: (ask: <T>(p: string) => Promise<T>, request: FastifyRequest) => Promise<string>,
    ) =>
      app.get(path, { config, schema }, async (request, reply) => {
        const key = await keyOf(request)
        if (!key) return toLogin(reply)
        const ask = async <T>(p: string): Promise<T> => {
          const answer = await api<T>(key, p)
          if (answer === undefined) throw new DashboardSignedOut()
          return answer
        }
        try {
          const body = await render(ask, request)
          return html(reply, 200, layout(body, key))
        } catch (error) {
          if (error instanceof DashboardSignedOut) return toLogin(reply)
          if (error instanceof DashboardNotFound)
            return html(
              reply,
              404,
              layout('<h1>Not found</h1><p>Nothing here with that id.</p>', key),
            )
          throw error
        }
      })

    /**
     * A signed-in action: a same-site form POST that the API carries out for the key, under
     * the form's own `Idempotency-Key` (a form sent twice, by a reload or a double click,
     * acts once). Done, it goes back to `back`; refused, the API's message is the page.
     */
    const action = (
      path: string,
      call: (
        params: Record<string, string>,
        form: Record<string, string | undefined>,
      ) => { url: string; body: Record<string, unknown>; back: string },
    ) =>
      app.post<{ Body: Record<string, string | undefined> }>(
        path,
        // A form's fields are text: a body of other types (JSON numbers) is a 400, not read.
        { config, schema: { ...schema, body: FormFields } },
        async (request, reply) => {
          if (crossSite(request))
            return html(reply, 403, layout('<h1>Refused</h1><p>Act from the dashboard.</p>'))
          const key = await keyOf(request)
          if (!key) return toLogin(reply)
          const form = request.body ?? {}
          const idempotencyKey = form.idempotency_key ?? ''
          if (!/^dash_[a-f0-9]{32}$/.test(idempotencyKey))
            return html(reply, 400, layout('<h1>Refused</h1><p>Send the form from its page.</p>'))
          const { url, body, back } = call(request.params as Record<string, string>, form)
          const res = await app.inject({
            method: 'POST',
            url,
            headers: {
              authorization: `Bearer ${key}`,
              'content-type': 'application/json',
              'idempotency-key': idempotencyKey,
            },
            payload: JSON.stringify(body),
          })
          if (res.statusCode === 401) return toLogin(reply)
          if (res.statusCode < 300) return reply.redirect(back, 303)
          let message = 'Refused'
          try {
            message = (res.json() as { error?: { message?: string } }).error?.message ?? message
          } catch {
            // Not the API's error shape: the status says it.
          }
          return html(
            reply,
            res.statusCode >= 500 ? 502 : res.statusCode,
            layout(
              `<h1>Not done</h1><p class="error">${escapeHtml(message)}</p><p><a href="${escapeHtml(back)}">Back</a></p>`,
              key,
            ),
          )
        },
      )

    app.get('/dashboard/login', { config, schema }, async (_request, reply) =>
      html(reply, 200, loginPage()),
    )
    app.post<{ Body: Record<string, string | undefined> }>(
      '/dashboard/login',
      { config, schema },
      async (request, reply) => {
        if (crossSite(request)) return html(reply, 403, loginPage('Sign in from this page.'))
        const raw = request.body?.key
        const key = typeof raw === 'string' ? raw.trim() : ''
        // An admin key: customer tokens and other roles cannot list the environment's keys.
        const probe = key
          ? await app.inject({
              method: 'GET',
              url: '/v1/api_keys?limit=1',
              headers: { authorization: `Bearer ${key}` },
            })
          : undefined
        if (probe?.statusCode !== 200) {
          const status = probe?.statusCode === 403 ? 403 : 401
          const message =
            status === 403
              ? 'This key cannot sign in to the dashboard: an admin key is needed.'
              : 'That is not a valid API key.'
          return html(reply, status, loginPage(message))
        }
        const session: DashboardSession = {
          key,
          exp: deps.clock.now().getTime() + SESSION_SECONDS * 1000,
          sid: randomBytes(16).toString('hex'),
        }
        setSession(reply, deps.secretBox.seal(JSON.stringify(session)), SESSION_SECONDS)
        return reply.redirect('/dashboard', 303)
      },
    )
    // Signing out ends the session itself, not only the browser's copy of its cookie.
    app.post('/dashboard/logout', { config, schema }, async (request, reply) => {
      if (crossSite(request)) return html(reply, 403, loginPage())
      const session = sessionOf(request)
      if (session)
        await recordSignout(deps.db, session.sid, new Date(session.exp), deps.clock.now())
      return toLogin(reply)
    })

    view('/dashboard', async (ask) => {
      const [payments, invoices, customers, events] = await Promise.all([
        ask<Listing>('/v1/payments?limit=10'),
        ask<Listing>('/v1/invoices?limit=10'),
        ask<Listing>('/v1/customers?limit=1'),
        ask<Listing>('/v1/events?limit=10'),
      ])
      return `<h1>Overview</h1>
<div class="cards">
  ${card('Payments', payments.pagination.total, '/dashboard/payments')}
  ${card('Invoices', invoices.pagination.total, '/dashboard/invoices')}
  ${card('Customers', customers.pagination.total, '/dashboard/customers')}
  ${card('Events', events.pagination.total, '/dashboard/events')}
</div>
<h2>Latest payments</h2>${table(PAYMENT_COLUMNS, payments.items)}
<h2>Latest invoices</h2>${table(INVOICE_COLUMNS, invoices.items)}
<h2>Latest events</h2>${table(EVENT_COLUMNS, events.items)}`
    })

    view('/dashboard/payments', async (ask, request) => {
      const query = request.query as Record<string, string | undefined>
      const status =
        query.status && PAYMENT_STATUSES.includes(query.status) ? query.status : undefined
      const offset = offsetOf(query)
      const list = await ask<Listing>(
        `/v1/payments?limit=${PAGE_SIZE}&offset=${offset}${status ? `&status=${status}` : ''}`,
      )
      const filters = PAYMENT_STATUSES.map((s) =>
        s === status
          ? `<strong>${s}</strong>`
          : `<a href="/dashboard/payments?status=${s}">${s}</a>`,
      ).join(' · ')
      return `<h1>Payments</h1>
<p class="filters"><a href="/dashboard/payments">All</a> · ${filters}</p>
${table(PAYMENT_COLUMNS, list.items)}${pager('/dashboard/payments', list, status ? `status=${status}&` : '')}`
    })

    view('/dashboard/payments/:id', async (ask, request) => {
      const { id } = request.params as { id: string }
      const ref = encodeURIComponent(id)
      const payment = await ask<Row>(`/v1/payments/${ref}`)
      const [refunds, events] = await Promise.all([
        ask<Listing>(`/v1/refunds?payment_id=${ref}&limit=100`),
        ask<Listing>(`/v1/events?object_id=${ref}&limit=100`),
      ])
      const attempts = Array.isArray(payment.attempts) ? (payment.attempts as Row[]) : []
      return `<h1>Payment ${text(payment.id)}</h1>
${paymentActions(payment)}
${details(payment, PAYMENT_FIELDS)}
<h2>Attempts</h2>${table(ATTEMPT_COLUMNS, attempts)}
<h2>Refunds</h2>${table(REFUND_COLUMNS, refunds.items)}
<h2>Events</h2>${table(EVENT_COLUMNS, events.items)}`
    })

    view('/dashboard/invoices', async (ask, request) => {
      const list = await ask<Listing>(
        `/v1/invoices?limit=${PAGE_SIZE}&offset=${offsetOf(request.query)}`,
      )
      return `<h1>Invoices</h1>${table(INVOICE_COLUMNS, list.items)}${pager('/dashboard/invoices', list)}`
    })

    view('/dashboard/customers', async (ask, request) => {
      const list = await ask<Listing>(
        `/v1/customers?limit=${PAGE_SIZE}&offset=${offsetOf(request.query)}`,
      )
      return `<h1>Customers</h1>${table(CUSTOMER_COLUMNS, list.items)}${pager('/dashboard/customers', list)}`
    })

    view('/dashboard/events', async (ask, request) => {
      const list = await ask<Listing>(
        `/v1/events?limit=${PAGE_SIZE}&offset=${offsetOf(request.query)}`,
      )
      return `<h1>Events</h1>${table(EVENT_COLUMNS, list.items)}${pager('/dashboard/events', list)}`
    })

    view('/dashboard/webhooks', async (ask, request) => {
      const [endpoints, deliveries] = await Promise.all([
        ask<Listing>('/v1/webhook_endpoints?limit=100'),
        ask<Listing>(`/v1/webhook_deliveries?limit=${PAGE_SIZE}&offset=${offsetOf(request.query)}`),
      ])
      return `<h1>Webhooks</h1>
<h2>Endpoints</h2>${table(ENDPOINT_COLUMNS, endpoints.items)}
<h2>Deliveries</h2>${table(DELIVERY_COLUMNS, deliveries.items)}${pager('/dashboard/webhooks', deliveries)}`
    })

    action('/dashboard/payments/:id/refund', ({ id = '' }, form) => ({
      url: `/v1/payments/${encodeURIComponent(id)}/refunds`,
      body: {
        ...(form.amount?.trim() && { amount: form.amount.trim() }),
        ...(form.reason?.trim() && { reason: form.reason.trim() }),
      },
      back: `/dashboard/payments/${encodeURIComponent(id)}`,
    }))
    action('/dashboard/payments/:id/cancel', ({ id = '' }) => ({
      url: `/v1/payments/${encodeURIComponent(id)}/cancel`,
      body: {},
      back: `/dashboard/payments/${encodeURIComponent(id)}`,
    }))
    action('/dashboard/webhook_deliveries/:id/redeliver', ({ id = '' }) => ({
      url: `/v1/webhook_deliveries/${encodeURIComponent(id)}/redeliver`,
      body: {},
      back: '/dashboard/webhooks',
    }))
  }
}

/** A fresh `Idempotency-Key` for one form: sent twice, the form acts once. */
function formKey(): string {
  return `<input type="hidden" name="idempotency_key" value="dash_${randomBytes(16).toString('hex')}">`
}

/** What can be done to a payment from its page: refund what was received, cancel one still open. */
function paymentActions(payment: Row): string {
  const id = encodeURIComponent(String(payment.id))
  const status = String(payment.payment_status)
  const forms: string[] = []
  if (REFUNDABLE.includes(status)) {
    forms.push(`<form method="post" action="/dashboard/payments/${id}/refund" class="action">${formKey()}
<input name="amount" inputmode="decimal" placeholder="Amount (all that is left)">
<input name="reason" placeholder="Reason">
<button>Refund</button></form>`)
  }
  if (CANCELLABLE.includes(status)) {
    forms.push(`<form method="post" action="/dashboard/payments/${id}/cancel" class="action">${formKey()}
<button>Cancel payment</button></form>`)
  }
  return forms.join('\n')
}

const REFUNDABLE = ['SUCCEEDED', 'OVERPAID', 'PARTIALLY_REFUNDED', 'REFUND_FAILED']
const CANCELLABLE = ['INITIATED', 'PENDING', 'RESERVED', 'ON_RETRY']

class DashboardSignedOut extends Error {}
class DashboardNotFound extends Error {}

function html(reply: FastifyReply, status: number, body: string) {
  return sendHtml(reply, status, body, { formsToSelf: true })
}

function cookieOf(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=')
    if (key === name) return value.join('=') || undefined
  }
  return undefined
}

function offsetOf(query: unknown): number {
  const raw = (query as Record<string, string | undefined>).offset
  const offset = Number(raw)
  return Number.isInteger(offset) && offset >= 0 && offset <= 1_000_000 ? offset : 0
}

/** Escaped text of an API value (`—` for none). */
function text(value: unknown): string {
  if (value === null || value === undefined || value === '') return '—'
  return escapeHtml(typeof value === 'object' ? JSON.stringify(value) : String(value))
}

const field =
  (name: string): Column['cell'] =>
  (row) =>
    text(row[name])
const money: Column['cell'] = (row) =>
  `${text(row.amount ?? row.total)} ${text(String(row.currency ?? '').toUpperCase())}`
const status =
  (name: string): Column['cell'] =>
  (row) =>
    `<span class="status">${text(row[name])}</span>`
const link =
  (base: string): Column['cell'] =>
  (row) =>
    `<a href="${base}/${encodeURIComponent(String(row.id))}">${text(row.id)}</a>`

const PAYMENT_STATUSES: readonly string[] = PAYMENT_STATUS_VALUES
const PAYMENT_COLUMNS: Column[] = [
  { heading: 'Payment', cell: link('/dashboard/payments') },
  { heading: 'Amount', cell: money },
  { heading: 'Status', cell: status('payment_status') },
  { heading: 'Method', cell: field('payment_method_type') },
  { heading: 'Gateway', cell: field('payment_gateway') },
  { heading: 'Invoice', cell: field('destination_id') },
  { heading: 'Created', cell: field('created_at') },
]
const PAYMENT_FIELDS = [
  'payment_status',
  'amount',
  'amount_paid',
  'amount_refunded',
  'currency',
  'payment_method_type',
  'payment_gateway',
  'destination_type',
  'destination_id',
  'customer_id',
  'gateway_tracking_id',
  'payment_url',
  'status_code',
  'error_message',
  'created_at',
  'succeeded_at',
  'failed_at',
]
const ATTEMPT_COLUMNS: Column[] = [
  { heading: 'Attempt', cell: field('id') },
  { heading: 'Status', cell: status('status') },
  { heading: 'Error', cell: (row) => `${text(row.error_code)} ${text(row.error_message)}` },
  { heading: 'Created', cell: field('created_at') },
]
const REFUND_COLUMNS: Column[] = [
  { heading: 'Refund', cell: field('id') },
  { heading: 'Amount', cell: money },
  { heading: 'Status', cell: status('status') },
  { heading: 'Reason', cell: field('reason') },
  { heading: 'Note', cell: field('failure_message') },
  { heading: 'Created', cell: field('created_at') },
]
const INVOICE_COLUMNS: Column[] = [
  { heading: 'Invoice', cell: field('id') },
  { heading: 'Number', cell: field('number') },
  { heading: 'Customer', cell: field('customer_id') },
  { heading: 'Total', cell: money },
  { heading: 'Remaining', cell: field('amount_remaining') },
  { heading: 'Status', cell: status('invoice_status') },
  { heading: 'Payment', cell: status('payment_status') },
  { heading: 'Created', cell: field('created_at') },
]
const CUSTOMER_COLUMNS: Column[] = [
  { heading: 'Customer', cell: field('id') },
  { heading: 'Name', cell: field('name') },
  { heading: 'Email', cell: field('email') },
  { heading: 'External id', cell: field('external_id') },
  { heading: 'Created', cell: field('created_at') },
]
const EVENT_COLUMNS: Column[] = [
  { heading: 'Event', cell: field('id') },
  { heading: 'Type', cell: field('type') },
  { heading: 'Object', cell: field('object_id') },
  { heading: 'Created', cell: field('created_at') },
]
const ENDPOINT_COLUMNS: Column[] = [
  { heading: 'Endpoint', cell: field('id') },
  { heading: 'URL', cell: field('url') },
  {
    heading: 'Events',
    cell: (row) => text((row.enabled_events as string[] | undefined)?.join(', ')),
  },
  { heading: 'Status', cell: status('status') },
]
const DELIVERY_COLUMNS: Column[] = [
  { heading: 'Delivery', cell: field('id') },
  { heading: 'Event', cell: field('event_type') },
  { heading: 'Endpoint', cell: field('endpoint_id') },
  { heading: 'Status', cell: status('status') },
  { heading: 'Tries', cell: field('attempts') },
  { heading: 'Answer', cell: (row) => `${text(row.response_status)} ${text(row.error_message)}` },
  { heading: 'Created', cell: field('created_at') },
  {
    heading: '',
    cell: (row) =>
      `<form method="post" action="/dashboard/webhook_deliveries/${encodeURIComponent(String(row.id))}/redeliver" class="action">${formKey()}<button>Send again</button></form>`,
  },
]

function table(columns: Column[], rows: Row[]): string {
  if (rows.length === 0) return '<p class="empty">None yet.</p>'
  const head = columns.map((c) => `<th>${escapeHtml(c.heading)}</th>`).join('')
  const body = rows
    .map((row) => `<tr>${columns.map((c) => `<td>${c.cell(row)}</td>`).join('')}</tr>`)
    .join('\n')
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`
}

function details(row: Row, fields: string[]): string {
  return `<dl>${fields.map((f) => `<dt>${escapeHtml(f)}</dt><dd>${text(row[f])}</dd>`).join('')}</dl>`
}

function card(label: string, total: number, href: string): string {
  return `<a class="card" href="${href}"><span>${escapeHtml(label)}</span><strong>${total}</strong></a>`
}

function pager(base: string, list: Listing, query = ''): string {
  const { total, limit, offset } = list.pagination
  const links: string[] = []
  if (offset > 0)
    links.push(`<a href="${base}?${query}offset=${Math.max(0, offset - limit)}">← Newer</a>`)
  if (offset + limit < total)
    links.push(`<a href="${base}?${query}offset=${offset + limit}">Older →</a>`)
  const shown = list.items.length === 0 ? 0 : offset + 1
  return `<p class="pager">${shown}–${offset + list.items.length} of ${total} ${links.join(' ')}</p>`
}

const NAV = [
  ['Overview', '/dashboard'],
  ['Payments', '/dashboard/payments'],
  ['Invoices', '/dashboard/invoices'],
  ['Customers', '/dashboard/customers'],
  ['Events', '/dashboard/events'],
  ['Webhooks', '/dashboard/webhooks'],
]

const STYLE = `
  body { font-family: system-ui, sans-serif; background: #f6f7f9; color: #1a1f36; margin: 0; }
  header { background: #1a1f36; color: #fff; padding: 12px 24px; display: flex; gap: 18px; align-items: center; }
  header a { color: #c7d2fe; text-decoration: none; } header strong { margin-right: 12px; }
  header form { margin-left: auto; } header button { background: none; border: 1px solid #c7d2fe; color: #c7d2fe;
    border-radius: 4px; padding: 4px 10px; cursor: pointer; }
  main { max-width: 1200px; margin: 24px auto; padding: 0 24px; }
  h1 { font-size: 22px; } h2 { font-size: 16px; margin-top: 28px; }
  table { width: 100%; border-collapse: collapse; background: #fff; font-size: 13px; }
  th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #e3e8ee; word-break: break-all; }
  th { background: #f0f2f5; font-weight: 600; }
  .status { font-size: 12px; background: #eef2ff; padding: 2px 6px; border-radius: 4px; }
  .cards { display: flex; gap: 16px; } .card { flex: 1; background: #fff; padding: 16px; border-radius: 8px;
    text-decoration: none; color: inherit; box-shadow: 0 1px 4px rgba(0,0,0,.06); }
  .card span { display: block; color: #697386; font-size: 13px; } .card strong { font-size: 24px; }
  dl { display: grid; grid-template-columns: 220px 1fr; background: #fff; padding: 12px; font-size: 13px; }
  dt { color: #697386; } dd { margin: 0 0 6px; word-break: break-all; }
  .pager, .filters, .empty { font-size: 13px; color: #4f566b; }
  .login { max-width: 420px; margin: 64px auto; background: #fff; border-radius: 12px; padding: 28px; }
  .login input { width: 100%; box-sizing: border-box; padding: 10px; margin: 8px 0; }
  .login button { width: 100%; padding: 10px; background: #635bff; color: #fff; border: 0; border-radius: 6px; }
  .action { display: inline-flex; gap: 6px; margin: 0 12px 12px 0; }
  .action input { padding: 6px; } .action button { padding: 6px 12px; cursor: pointer; }
  .error { background: #fde8e8; color: #9b1c1c; padding: 10px; border-radius: 6px; }
  .mode { font-size: 11px; font-weight: 600; padding: 2px 8px; border-radius: 4px; text-transform: uppercase; }
  .mode.test { background: #fff3c4; color: #7a5b00; } .mode.live { background: #e6f6ec; color: #05603a; }
`

/**
 * A page of the signed-in dashboard. With the key, its header says which environment it
 * acts in (its keys are `sk_live_…` or `sk_test_…`): a refund from a live session moves
 * real money.
 */
function layout(body: string, key?: string): string {
  const nav = NAV.map(([label, href]) => `<a href="${href}">${label}</a>`).join('')
  const mode =
    key === undefined
      ? ''
      : key.startsWith('sk_live_')
        ? '<span class="mode live">Live</span>'
        : '<span class="mode test">Test mode</span>'
  return document(
    `<header><strong>Payrail</strong>${mode}${nav}<form method="post" action="/dashboard/logout"><button>Sign out</button></form></header>
<main>${body}</main>`,
  )
}

function loginPage(error?: string): string {
  return document(`<div class="login"><h1>Payrail dashboard</h1>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/dashboard/login">
<label for="key">Admin API key of the environment</label>
<input id="key" name="key" type="password" autocomplete="off" placeholder="sk_test_…" required>
<button>Sign in</button>
</form></div>`)
}

function document(body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Payrail</title><style>${STYLE}</style></head>
<body>${body}</body></html>`
}
