import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { DASHBOARD_COOKIE } from '../../src/web/dashboard.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import { createSandboxLink, getPayment, invoiceToPay, offlinePayment } from '../payments-helpers.ts'

let ctx: TestContext
let paymentId: string

beforeAll(async () => {
  ctx = await createTestContext()
  paymentId = (await offlinePayment(ctx, '100.00', { name: '<script>alert("x")</script>' })).payment
    .id
  const refund = await ctx.post(`/v1/payments/${paymentId}/refunds`, { amount: '1.00' })
  expect(refund.status, refund.text).toBe(201)
})
afterAll(() => ctx.close())

async function signIn(key: string) {
  return ctx.app.inject({
    method: 'POST',
    url: '/dashboard/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ key }).toString(),
  })
}

/** The session cookie a sign-in with `key` sets: `name=value`. */
async function sessionOf(key: string): Promise<string> {
  const res = await signIn(key)
  expect(res.statusCode, res.body).toBe(303)
  return String(res.headers['set-cookie']).split(';')[0] as string
}

const open = (url: string, cookie?: string) =>
  ctx.app.inject({ method: 'GET', url, headers: cookie ? { cookie } : {} })

describe('signing in', () => {
  test('without a session every page sends to the login form', async () => {
    for (const url of ['/dashboard', '/dashboard/payments', `/dashboard/payments/${paymentId}`]) {
      const res = await open(url)
      expect(res.statusCode).toBe(303)
      expect(res.headers.location).toBe('/dashboard/login')
    }
    const form = await open('/dashboard/login')
    expect(form.statusCode).toBe(200)
    expect(form.body).toContain('<form method="post" action="/dashboard/login">')
  })

  test('a wrong key is 401 and sets nothing; a customer token is 403', async () => {
    const wrong = await signIn('sk_test_nope')
    expect(wrong.statusCode).toBe(401)
    expect(wrong.headers['set-cookie']).toBeUndefined()
    expect(wrong.body).toContain('not a valid API key')
    const customers = await ctx.get<{ items: { id: string }[] }>('/v1/customers?limit=1')
    const token = await ctx.post<{ token: string }>(
      `/v1/customers/${customers.body.items[0]?.id}/tokens`,
      {},
    )
    expect(token.status, token.text).toBe(201)
    const refused = await signIn(token.body.token)
    expect(refused.statusCode).toBe(403)
    expect(refused.headers['set-cookie']).toBeUndefined()
  })

  test('an admin key signs in: an HttpOnly, SameSite=Strict cookie that does not hold the key', async () => {
    const res = await signIn(ctx.main.key)
    expect(res.statusCode).toBe(303)
    expect(res.headers.location).toBe('/dashboard')
    const cookie = String(res.headers['set-cookie'])
    expect(cookie).toMatch(new RegExp(`^${DASHBOARD_COOKIE}=`))
    expect(cookie).toContain('HttpOnly')
    expect(cookie).toContain('SameSite=Strict')
    expect(cookie).toContain('Path=/dashboard')
    expect(cookie).not.toContain(ctx.main.key)
  })

  test('a tampered cookie, or one whose key was revoked, sends back to the login form', async () => {
    const tampered = await open('/dashboard', `${DASHBOARD_COOKIE}=v1.abc.def.ghi`)
    expect(tampered.statusCode).toBe(303)
    const created = await ctx.post<{ id: string; key: string }>('/v1/api_keys', {
      name: 'dashboard',
    })
    expect(created.status, created.text).toBe(201)
    const cookie = await sessionOf(created.body.key)
    expect((await open('/dashboard', cookie)).statusCode).toBe(200)
    expect((await ctx.delete(`/v1/api_keys/${created.body.id}`)).status).toBeLessThan(300)
    const after = await open('/dashboard', cookie)
    expect(after.statusCode).toBe(303)
    expect(after.headers.location).toBe('/dashboard/login')
  })

  test('signing out clears the cookie', async () => {
    const res = await ctx.app.inject({ method: 'POST', url: '/dashboard/logout' })
    expect(res.statusCode).toBe(303)
    expect(String(res.headers['set-cookie'])).toContain('Max-Age=0')
  })
})

describe('pages', () => {
  test('the overview shows the environment totals and its latest payment', async () => {
    const res = await open('/dashboard', await sessionOf(ctx.main.key))
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-security-policy']).toContain("default-src 'none'")
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.body).toContain(paymentId)
  })

  test('payments filter by status; a payment shows its attempts, refunds and events', async () => {
    const cookie = await sessionOf(ctx.main.key)
    const refunded = await open('/dashboard/payments?status=PARTIALLY_REFUNDED', cookie)
    expect(refunded.body).toContain(paymentId)
    const failed = await open('/dashboard/payments?status=FAILED', cookie)
    expect(failed.body).not.toContain(paymentId)
    const one = await open(`/dashboard/payments/${paymentId}`, cookie)
    expect(one.statusCode).toBe(200)
    expect(one.body).toContain('PARTIALLY_REFUNDED')
    expect(one.body).toContain('1.00')
    expect(one.body).toContain('payment.succeeded')
    const missing = await open('/dashboard/payments/pay_missing', cookie)
    expect(missing.statusCode).toBe(404)
  })

  test('what customers typed is shown escaped', async () => {
    const res = await open('/dashboard/customers', await sessionOf(ctx.main.key))
    expect(res.statusCode).toBe(200)
    expect(res.body).not.toContain('<script>alert')
    expect(res.body).toContain('&#60;script&#62;alert')
  })

  test('invoices, events and webhooks pages answer', async () => {
    const cookie = await sessionOf(ctx.main.key)
    for (const url of ['/dashboard/invoices', '/dashboard/events', '/dashboard/webhooks']) {
      const res = await open(url, cookie)
      expect(res.statusCode, url).toBe(200)
    }
  })

  test('another environment key sees its own environment only', async () => {
    const live = await open(`/dashboard/payments/${paymentId}`, await sessionOf(ctx.main.liveKey))
    expect(live.statusCode).toBe(404)
    const list = await open('/dashboard/payments', await sessionOf(ctx.main.liveKey))
    expect(list.body).not.toContain(paymentId)
  })
})

describe('what a dashboard must refuse', () => {
  test('a filter or an id the API refuses is a page, not a 500', async () => {
    const cookie = await sessionOf(ctx.main.key)
    expect((await open('/dashboard/payments?status=FOO', cookie)).statusCode).toBe(200)
    expect((await open(`/dashboard/payments/${':'.repeat(34)}`, cookie)).statusCode).toBe(404)
  })

  test('a key that is not a string is 401', async () => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/dashboard/login',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ key: 1 }),
    })
    expect(res.statusCode).toBe(401)
  })

  test('a session ends after eight hours on the server too', async () => {
    const cookie = await sessionOf(ctx.main.key)
    expect((await open('/dashboard', cookie)).statusCode).toBe(200)
    ctx.clock.advance(8 * 60 * 60 * 1000 + 1)
    const expired = await open('/dashboard', cookie)
    expect(expired.statusCode).toBe(303)
    expect(expired.headers.location).toBe('/dashboard/login')
  })

  test('sign-in and sign-out posted from another site are 403', async () => {
    for (const headers of [
      { origin: 'https://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
    ]) {
      const login = await ctx.app.inject({
        method: 'POST',
        url: '/dashboard/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: new URLSearchParams({ key: ctx.main.key }).toString(),
      })
      expect(login.statusCode).toBe(403)
      expect(login.headers['set-cookie']).toBeUndefined()
      const logout = await ctx.app.inject({ method: 'POST', url: '/dashboard/logout', headers })
      expect(logout.statusCode).toBe(403)
    }
  })

  test('behind a reverse proxy that rewrites Host, a sign-in from the public URL is not cross-site', async () => {
    const login = (origin: string) =>
      ctx.app.inject({
        method: 'POST',
        url: '/dashboard/login',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          // nginx's proxy_pass sends its upstream's name, not the browser's host.
          host: 'payrail-upstream:8080',
          origin,
          'sec-fetch-site': 'same-origin',
        },
        payload: new URLSearchParams({ key: ctx.main.key }).toString(),
      })
    // Before, every dashboard form was refused (403) behind such a proxy.
    expect((await login(new URL(ctx.config.publicUrl).origin)).statusCode).toBe(303)
    expect((await login('https://evil.example')).statusCode).toBe(403)
  })
})

describe('acting from the dashboard', () => {
  /** The hidden idempotency key of the form posting to `action` on `page`. */
  async function formKeyOn(page: string, action: string, cookie: string) {
    const res = await open(page, cookie)
    expect(res.statusCode).toBe(200)
    const form = res.body.split('<form').find((f) => f.includes(`action="${action}"`))
    const key = /name="idempotency_key" value="([^"]+)"/.exec(form ?? '')?.[1]
    expect(key, `${action} on ${page}`).toBeDefined()
    return String(key)
  }

  const post = (url: string, cookie: string, fields: Record<string, string>, headers = {}) =>
    ctx.app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers },
      payload: new URLSearchParams(fields).toString(),
    })

  test('a refund from the payment page refunds once, however often the form is sent', async () => {
    const cookie = await sessionOf(ctx.main.key)
    const paid = (await offlinePayment(ctx)).payment.id
    const page = `/dashboard/payments/${paid}`
    const action = `${page}/refund`
    const idempotency_key = await formKeyOn(page, action, cookie)
    for (let i = 0; i < 2; i++) {
      const res = await post(action, cookie, {
        idempotency_key,
        amount: '10.00',
        reason: 'duplicate',
      })
      expect(res.statusCode, res.body).toBe(303)
      expect(res.headers.location).toBe(page)
    }
    const refunds = await ctx.get<{ items: { amount: string; reason: string }[] }>(
      `/v1/refunds?payment_id=${paid}`,
    )
    expect(refunds.body.items).toEqual([
      expect.objectContaining({ amount: '10.00', reason: 'duplicate' }),
    ])
    // Refused by the API: its message is the page, and nothing is refunded.
    const tooMuch = await post(action, cookie, {
      idempotency_key: await formKeyOn(page, action, cookie),
      amount: '1000.00',
    })
    expect(tooMuch.statusCode).toBe(409)
    expect(tooMuch.body).toContain('still refundable')
    expect((await getPayment(ctx, paid)).amount_refunded).toBe('10.00')
  })

  test('an open link can be cancelled from its page; a delivery sent again from the webhooks page', async () => {
    const cookie = await sessionOf(ctx.main.key)
    const { invoice } = await invoiceToPay(ctx)
    const link = await createSandboxLink(ctx, invoice)
    const page = `/dashboard/payments/${link.body.id}`
    const cancel = await post(`${page}/cancel`, cookie, {
      idempotency_key: await formKeyOn(page, `${page}/cancel`, cookie),
    })
    expect(cancel.statusCode, cancel.body).toBe(303)
    expect((await getPayment(ctx, link.body.id)).payment_status).toBe('CANCELLED')
    // A cancelled payment's page offers neither form.
    const after = await open(page, cookie)
    expect(after.body).not.toContain(`${page}/cancel`)
    expect(after.body).not.toContain(`${page}/refund`)

    const endpoint = await ctx.post<{ id: string }>('/v1/webhook_endpoints', {
      url: 'http://127.0.0.1:9/closed',
      enabled_events: ['payment.cancelled'],
    })
    expect(endpoint.status, endpoint.text).toBe(201)
    const other = await createSandboxLink(ctx, (await invoiceToPay(ctx)).invoice)
    expect((await ctx.post(`/v1/payments/${other.body.id}/cancel`, {})).status).toBe(200)
    const deliveries = await ctx.get<{ items: { id: string }[] }>(
      `/v1/webhook_deliveries?endpoint_id=${endpoint.body.id}`,
    )
    const [delivery] = deliveries.body.items
    const action = `/dashboard/webhook_deliveries/${delivery?.id}/redeliver`
    const redeliver = await post(action, cookie, {
      idempotency_key: await formKeyOn('/dashboard/webhooks', action, cookie),
    })
    expect(redeliver.statusCode, redeliver.body).toBe(303)
    expect(redeliver.headers.location).toBe('/dashboard/webhooks')
  })

  test('an action posted from another site, without a session or without its form key is refused', async () => {
    const cookie = await sessionOf(ctx.main.key)
    const paid = (await offlinePayment(ctx)).payment.id
    const page = `/dashboard/payments/${paid}`
    const idempotency_key = await formKeyOn(page, `${page}/refund`, cookie)
    const crossSite = await post(
      `${page}/refund`,
      cookie,
      { idempotency_key },
      {
        origin: 'https://evil.example',
      },
    )
    expect(crossSite.statusCode).toBe(403)
    const signedOut = await post(`${page}/refund`, '', { idempotency_key })
    expect(signedOut.statusCode).toBe(303)
    expect(signedOut.headers.location).toBe('/dashboard/login')
    const noKey = await post(`${page}/refund`, cookie, {})
    expect(noKey.statusCode).toBe(400)
    // Signed in with another environment's key, the payment is not there to refund.
    const other = await post(`${page}/refund`, await sessionOf(ctx.main.liveKey), {
      idempotency_key,
    })
    expect(other.statusCode).toBe(404)
    expect((await getPayment(ctx, paid)).amount_refunded).toBe('0.00')
  })
})

describe('dashboard session', () => {
  test('the dashboard says which environment (test or live) the signed-in key acts in', async () => {
    // Same tenant, two keys: refunds and cancels from the live one move real money.
    const live = await open('/dashboard', await sessionOf(ctx.main.liveKey))
    const test = await open('/dashboard', await sessionOf(ctx.main.key))
    expect(live.statusCode).toBe(200)
    expect(test.statusCode).toBe(200)
    expect(live.body).toMatch(/\blive\b/i)
    expect(test.body).toMatch(/\btest\b/i)
    expect(live.body).not.toBe(test.body)
  })

  test('a cookie sealed without a session id (before sign-out could end sessions) signs in no more', async () => {
    const exp = ctx.clock.now().getTime() + 60_000
    const sealed = ctx.deps.secretBox.seal(JSON.stringify({ key: ctx.main.key, exp }))
    const res = await open('/dashboard', `${DASHBOARD_COOKIE}=${sealed}`)
    expect(res.statusCode).toBe(303)
    expect(res.headers.location).toBe('/dashboard/login')
  })

  test('signing out without a session, or from another site, changes nothing', async () => {
    const bare = await ctx.app.inject({ method: 'POST', url: '/dashboard/logout' })
    expect(bare.statusCode).toBe(303)
    const cookie = await sessionOf(ctx.main.key)
    const forged = await ctx.app.inject({
      method: 'POST',
      url: '/dashboard/logout',
      headers: { cookie, origin: 'https://evil.example' },
    })
    expect(forged.statusCode).toBe(403)
    // A forced sign-out from another site ends nothing: the session still works.
    expect((await open('/dashboard', cookie)).statusCode).toBe(200)
  })

  test('after signing out, the session cookie no longer opens the dashboard', async () => {
    const cookie = await sessionOf(ctx.main.key)
    expect((await open('/dashboard', cookie)).statusCode).toBe(200)
    const out = await ctx.app.inject({
      method: 'POST',
      url: '/dashboard/logout',
      headers: { cookie },
    })
    expect(out.statusCode).toBe(303)
    // A copy of the cookie (another tab's, a proxy's log, a shared computer) replayed after
    // signing out must be refused, as every session-based dashboard does.
    const replay = await open('/dashboard', cookie)
    expect(replay.statusCode).toBe(303)
    expect(replay.headers.location).toBe('/dashboard/login')
  })
})
