import { Webhook, WebhookVerificationError } from 'standardwebhooks'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { verifyWebhookSignature } from '../../src/core/webhook-signature.ts'
import { inTransaction } from '../../src/db/transaction.ts'
import { deliverMerchantWebhook } from '../../src/jobs/tasks/deliver-merchant-webhook.ts'
import { startWorker } from '../../src/jobs/worker.ts'
import { recordEvents } from '../../src/modules/events/service.ts'
import { EVENT_TYPES } from '../../src/modules/events/types.ts'
import { webhookEndpoints } from '../../src/modules/webhook-endpoints/registry.ts'
import {
  isPrivateAddress,
  PrivateTargetError,
  postJson,
  publicOnlyLookup,
} from '../../src/modules/webhook-endpoints/sender.ts'
import { MERCHANT_SIGNATURE_HEADER } from '../../src/modules/webhook-endpoints/service.ts'
import { createCustomer } from '../fixtures.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  type MerchantReceiver,
  type ReceivedRequest,
  startMerchantReceiver,
} from '../merchant-receiver.ts'
import { createPayment, invoiceToPay } from '../payments-helpers.ts'

interface EndpointBody {
  id: string
  object: string
  url: string
  enabled_events: string[]
  status: string
  secret: string | null
  previous_secret_expires_at: string | null
}
interface DeliveryBody {
  id: string
  endpoint_id: string
  event_id: string
  event_type: string
  status: string
  attempts: number
  response_status: number | null
  error_message: string | null
  delivered_at: string | null
}

let ctx: TestContext
let merchant: MerchantReceiver
let receiverUrl: string

beforeAll(async () => {
  ctx = await createTestContext({ start: new Date() })
  merchant = await startMerchantReceiver()
  receiverUrl = merchant.url
  for (let i = 0; i < 200 && !webhookEndpoints.live; i++)
    await new Promise((r) => setTimeout(r, 10))
})
afterAll(async () => {
  await merchant.close()
  await ctx.close()
})
beforeEach(async () => {
  merchant.reset()
  // One endpoint at a time: each test registers its own.
  await ctx.pool.query('delete from webhook_endpoints; delete from webhook_deliveries')
  webhookEndpoints.forget(ctx.main.test.id)
})

async function register(body: Record<string, unknown> = {}) {
  const res = await ctx.post<EndpointBody>('/v1/webhook_endpoints', { url: receiverUrl, ...body })
  expect(res.status, res.text).toBe(201)
  return res.body
}

/** An OFFLINE payment of a new invoice in full: its payment id. */
async function payOffline(): Promise<string> {
  const { invoice } = await invoiceToPay(ctx)
  const res = await createPayment(ctx, {
    destination_id: invoice.id,
    payment_method_type: 'OFFLINE',
    amount: invoice.amount_due,
  })
  expect(res.status, res.text).toBe(201)
  return res.body.id
}

/** Pays an invoice (an `invoice.paid` event), delivers its delivery to the endpoint: the request received. */
async function deliverOne(endpointId: string) {
  merchant.received.length = 0
  await payOffline()
  const [delivery] = await deliveriesOf(`&endpoint_id=${endpointId}&status=pending`)
  if (!delivery) throw new Error('no delivery')
  expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry)).toBe(
    'succeeded',
  )
  const [request] = merchant.received
  if (!request) throw new Error('nothing received')
  return request
}

/** The `Payrail-Signature` check, at the test clock's time. */
function verifyPayrailSignature(secret: string, request: ReceivedRequest) {
  return verifyWebhookSignature(
    secret,
    Buffer.from(request.body),
    String(request.headers[MERCHANT_SIGNATURE_HEADER]),
    ctx.clock.now(),
  )
}

async function deliveriesOf(query = '') {
  const res = await ctx.get<{ items: DeliveryBody[] }>(`/v1/webhook_deliveries?limit=1000${query}`)
  expect(res.status, res.text).toBe(200)
  return res.body.items
}

/** The queued jobs of deliveries, by delivery id. */
async function queuedJobs(): Promise<Map<string, unknown>> {
  const { rows } = await ctx.pool.query<{ payload: { deliveryId: string } }>(
    `select j.payload from graphile_worker._private_jobs j
       join graphile_worker._private_tasks t on t.id = j.task_id
      where t.identifier = 'deliver_merchant_webhook'`,
  )
  return new Map(rows.map((row) => [row.payload.deliveryId, row.payload]))
}

const firstTry = { attempts: 1, max_attempts: 12 }
const lastTry = { attempts: 12, max_attempts: 12 }

describe('webhook endpoints', () => {
  test('created with its signing secret, shown once; listed and retrieved without it', async () => {
    const created = await register({ enabled_events: ['payment.*'], description: 'orders' })
    expect(created).toMatchObject({
      object: 'webhook_endpoint',
      url: receiverUrl,
      enabled_events: ['payment.*'],
      status: 'enabled',
    })
    // Standard Webhooks' form: `whsec_` and the base64 of the key's bytes.
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/)
    expect(created.previous_secret_expires_at).toBeNull()
    const shown = await ctx.get<EndpointBody>(`/v1/webhook_endpoints/${created.id}`)
    // Every key present, as every answer has them: null where there is nothing to show.
    expect(shown.body).toHaveProperty('secret', null)
    const list = await ctx.get<{ items: EndpointBody[] }>('/v1/webhook_endpoints')
    expect(list.body.items.map((e) => e.id)).toEqual([created.id])
    expect(list.body.items[0]).toHaveProperty('secret', null)
    // Sealed at rest.
    const { rows } = await ctx.pool.query('select secret from webhook_endpoints where id = $1', [
      created.id,
    ])
    expect(rows[0].secret).not.toContain(created.secret)
  })

  test.each([
    ['ftp://example.com/hook'],
    ['javascript:alert(1)'],
    ['not a url'],
    [''],
    ['http://[::1'],
    ['http://'],
  ])('a url that is not http(s) (%s) is 400', async (url) => {
    const res = await ctx.post<ErrorBody>('/v1/webhook_endpoints', { url })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('enabled_events that are not event types are 400; none at all is 400', async () => {
    for (const enabled_events of [['payment succeeded'], [], ['*.payment'], [42]]) {
      const res = await ctx.post('/v1/webhook_endpoints', { url: receiverUrl, enabled_events })
      expect(res.status, JSON.stringify(enabled_events)).toBe(400)
    }
  })

  test('enabled_events naming no event Payrail sends are 400, on create and on update; every type it sends, its prefixes and * are taken', async () => {
    for (const enabled_events of [
      ['payment.succeded'],
      ['invoice.paid', 'charge.*'],
      ['paymnt.*'],
    ]) {
      const res = await ctx.post<ErrorBody>('/v1/webhook_endpoints', {
        url: receiverUrl,
        enabled_events,
      })
      expect(res.status, JSON.stringify(enabled_events)).toBe(400)
      expect(res.body.error).toMatchObject({
        code: 'validation_error',
        details: { field: 'enabled_events' },
      })
    }
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    const refused = await ctx.patch<ErrorBody>(`/v1/webhook_endpoints/${endpoint.id}`, {
      enabled_events: ['invoice.payed'],
    })
    expect(refused.status).toBe(400)
    expect(refused.body.error.details).toMatchObject({ unknown: ['invoice.payed'] })
    const shown = await ctx.get<{ enabled_events: string[] }>(
      `/v1/webhook_endpoints/${endpoint.id}`,
    )
    expect(shown.body.enabled_events).toEqual(['invoice.paid'])
    const all = await ctx.patch(`/v1/webhook_endpoints/${endpoint.id}`, {
      enabled_events: [...EVENT_TYPES, 'payment.*', 'customer.balance_transaction.*', '*'],
    })
    expect(all.status, all.text).toBe(200)
  })

  test('concurrent PATCHes of metadata merge one after the other: no key is lost', async () => {
    const created = await register({ metadata: { base: '1' } })
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.patch(`/v1/webhook_endpoints/${created.id}`, { metadata: { [`k${i}`]: String(i) } }),
      ),
    )
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200))
    const shown = await ctx.get<{ metadata: Record<string, string> }>(
      `/v1/webhook_endpoints/${created.id}`,
    )
    expect(Object.keys(shown.body.metadata).sort()).toEqual(
      ['base', ...Array.from({ length: 10 }, (_, i) => `k${i}`)].sort(),
    )
  })

  test('another environment cannot see, change, rotate or delete the endpoint', async () => {
    const created = await register()
    const live = { key: ctx.main.liveKey }
    expect((await ctx.get(`/v1/webhook_endpoints/${created.id}`, live)).status).toBe(404)
    expect(
      (await ctx.patch(`/v1/webhook_endpoints/${created.id}`, { status: 'disabled' }, live)).status,
    ).toBe(404)
    expect((await ctx.delete(`/v1/webhook_endpoints/${created.id}`, live)).status).toBe(404)
    expect(
      (await ctx.post(`/v1/webhook_endpoints/${created.id}/rotate_secret`, {}, live)).status,
    ).toBe(404)
    // Nor can a customer token, which reaches no admin route.
    const { customer } = await invoiceToPay(ctx)
    const token = (await ctx.post<{ token: string }>(`/v1/customers/${customer.id}/tokens`)).body
      .token
    expect(
      (await ctx.post(`/v1/webhook_endpoints/${created.id}/rotate_secret`, {}, { key: token }))
        .status,
    ).toBe(403)
    // The secret was not rolled: the endpoint still has no previous one.
    expect((await ctx.get(`/v1/webhook_endpoints/${created.id}`)).body).toMatchObject({
      status: 'enabled',
      previous_secret_expires_at: null,
    })
  })
})

describe('deliveries', () => {
  test('each subscribed event of a payment gets one delivery, queued with it; others none', async () => {
    const endpoint = await register({ enabled_events: ['payment.*'] })
    const paymentId = await payOffline()
    const deliveries = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    expect(deliveries.map((d) => d.event_type).sort()).toEqual([
      'payment.created',
      'payment.succeeded',
    ])
    expect(deliveries.every((d) => d.status === 'pending' && d.attempts === 0)).toBe(true)
    const jobs = await queuedJobs()
    for (const delivery of deliveries) expect(jobs.has(delivery.id)).toBe(true)
    const events = await ctx.get<{ items: { id: string; type: string }[] }>(
      `/v1/events?object_id=${paymentId}`,
    )
    expect(new Set(deliveries.map((d) => d.event_id))).toEqual(
      new Set(events.body.items.map((e) => e.id)),
    )
  })

  // One delivery per event and endpoint, all in the payment's commit: ten orders paid at once
  // in an environment of 300 endpoints hold some 10,000 deliveries, more values than one
  // statement may carry (the held writes go in several, src/db/transaction.ts).
  test('a payment of many orders in an environment of many endpoints: every delivery written, nothing refused', async () => {
    const first = await register()
    await ctx.pool.query(
      `insert into webhook_endpoints (id, tenant_id, environment_id, url, enabled_events, secret)
       select $1 || '_' || n, tenant_id, environment_id, url, enabled_events, secret
       from webhook_endpoints, generate_series(2, 300) as n where id = $1`,
      [first.id],
    )
    webhookEndpoints.forget(ctx.main.test.id)
    const customer = await createCustomer(ctx)
    const orders: string[] = []
    for (let i = 0; i < 10; i++) {
      const order = await ctx.post<{ id: string }>('/v1/orders', {
        customer_id: customer.id,
        type: 'CREDIT_TOP_UP',
        amount: '1.00',
        currency: 'usd',
      })
      expect(order.status, order.text).toBe(201)
      orders.push(order.body.id)
    }
    const paid = await ctx.post<{ id: string; payment_status: string }>('/v1/orders/pay', {
      orders,
      payment_method_type: 'OFFLINE',
    })
    expect(paid.status, paid.text).toBe(201)
    expect(paid.body.payment_status).toBe('SUCCEEDED')
    const { rows } = await ctx.pool.query<{ events: number; deliveries: number }>(
      `select (select count(*)::int from events e where e.environment_id = $1
                 and exists (select 1 from webhook_deliveries d where d.event_id = e.id)) as events,
              (select count(*)::int from webhook_deliveries where environment_id = $1) as deliveries`,
      [ctx.main.test.id],
    )
    expect(rows[0]?.events).toBeGreaterThan(30)
    expect(rows[0]?.deliveries).toBe((rows[0]?.events ?? 0) * 300)
    expect(rows[0]?.deliveries).toBeGreaterThan(65_535 / 8)
    // Each queued its job, as one delivery does (the statement's jobs in one call, migration 0019).
    const { rows: jobs } = await ctx.pool.query<{ n: number; keyed: number; tries: number }>(
      `select count(*)::int as n, count(*) filter (where j.key = 'merchant-webhook-' || d.id)::int as keyed,
              min(j.max_attempts)::int as tries
       from webhook_deliveries d
       join graphile_worker._private_jobs j on (j.payload->>'deliveryId') = d.id
       where d.environment_id = $1`,
      [ctx.main.test.id],
    )
    expect(jobs[0]).toEqual({ n: rows[0]?.deliveries, keyed: rows[0]?.deliveries, tries: 12 })
  }, 60_000)

  test('signed as Standard Webhooks sign: the standardwebhooks library verifies a delivery with the endpoint secret', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    const request = await deliverOne(endpoint.id)
    const delivery = (await deliveriesOf(`&endpoint_id=${endpoint.id}`))[0]
    expect(request.headers['webhook-id']).toBe(delivery?.event_id)
    expect(Number(request.headers['webhook-timestamp'])).toBe(
      Math.floor(ctx.clock.now().getTime() / 1000),
    )
    const verified = new Webhook(String(endpoint.secret)).verify(
      request.body,
      request.headers as Record<string, string>,
    )
    expect(verified).toMatchObject({ id: delivery?.event_id, type: 'invoice.paid' })
    expect(() =>
      new Webhook(`whsec_${Buffer.from('another key').toString('base64')}`).verify(
        request.body,
        request.headers as Record<string, string>,
      ),
    ).toThrow(WebhookVerificationError)
  })

  test('a rotated secret: the answer has the new one, and the old one signs beside it until it expires', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    const oldSecret = String(endpoint.secret)
    const rotated = await ctx.post<EndpointBody>(
      `/v1/webhook_endpoints/${endpoint.id}/rotate_secret`,
      { expires_in: 3600 },
    )
    expect(rotated.status, rotated.text).toBe(200)
    const newSecret = String(rotated.body.secret)
    expect(newSecret).toMatch(/^whsec_/)
    expect(newSecret).not.toBe(oldSecret)
    const until = new Date(ctx.clock.now().getTime() + 3600_000).toISOString()
    expect(rotated.body.previous_secret_expires_at).toBe(until)
    expect(
      (await ctx.get<EndpointBody>(`/v1/webhook_endpoints/${endpoint.id}`)).body,
    ).toMatchObject({ secret: null, previous_secret_expires_at: until })

    // Meanwhile each delivery carries a signature of each secret: either verifies it.
    const during = await deliverOne(endpoint.id)
    for (const secret of [newSecret, oldSecret]) {
      expect(
        new Webhook(secret).verify(during.body, during.headers as Record<string, string>),
      ).toBeTruthy()
      expect(verifyPayrailSignature(secret, during)).toEqual({ ok: true })
    }

    // Once it expires, the old secret signs nothing.
    ctx.clock.advance(3600_000 + 1000)
    const after = await deliverOne(endpoint.id)
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1)
    expect(verifyPayrailSignature(newSecret, after)).toEqual({ ok: true })
    expect(verifyPayrailSignature(oldSecret, after).ok).toBe(false)
  })

  test('expires_in 0 drops the old secret at once; bad input is 400 and an unknown endpoint 404', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    const rotated = await ctx.post<EndpointBody>(
      `/v1/webhook_endpoints/${endpoint.id}/rotate_secret`,
      { expires_in: 0 },
    )
    expect(rotated.status, rotated.text).toBe(200)
    expect(rotated.body.previous_secret_expires_at).toBeNull()
    const request = await deliverOne(endpoint.id)
    expect(verifyPayrailSignature(String(rotated.body.secret), request)).toEqual({ ok: true })
    expect(verifyPayrailSignature(String(endpoint.secret), request).ok).toBe(false)

    for (const body of [{ expires_in: -1 }, { expires_in: 8 * 24 * 3600 }, { expires_in: '1h' }]) {
      const bad = await ctx.post<ErrorBody>(
        `/v1/webhook_endpoints/${endpoint.id}/rotate_secret`,
        body,
      )
      expect(bad.status, bad.text).toBe(400)
      expect(bad.body.error.code).toBe('validation_error')
    }
    const missing = await ctx.post<ErrorBody>('/v1/webhook_endpoints/we_missing/rotate_secret')
    expect(missing.status, missing.text).toBe(404)
    // Without a body: the default overlap of a day.
    const defaulted = await ctx.post<EndpointBody>(
      `/v1/webhook_endpoints/${endpoint.id}/rotate_secret`,
    )
    expect(defaulted.status, defaulted.text).toBe(200)
    expect(defaulted.body.previous_secret_expires_at).toBe(
      new Date(ctx.clock.now().getTime() + 24 * 3600_000).toISOString(),
    )
  })

  test('sent signed with the endpoint secret: the body is the event as the API shows it', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    if (!delivery) throw new Error('no delivery')
    expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry)).toBe(
      'succeeded',
    )
    expect(merchant.received).toHaveLength(1)
    const [request] = merchant.received
    const signature = request?.headers[MERCHANT_SIGNATURE_HEADER]
    expect(
      verifyWebhookSignature(
        String(endpoint.secret),
        Buffer.from(request?.body ?? ''),
        String(signature),
        ctx.clock.now(),
      ),
    ).toEqual({ ok: true })
    expect(
      verifyWebhookSignature(
        'whsec_wrong',
        Buffer.from(request?.body ?? ''),
        String(signature),
        ctx.clock.now(),
      ).ok,
    ).toBe(false)
    const event = await ctx.get(`/v1/events/${delivery.event_id}`)
    expect(JSON.parse(request?.body ?? '')).toEqual(event.body)
    const [after] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    expect(after).toMatchObject({ status: 'succeeded', attempts: 1, response_status: 200 })
    expect(after?.delivered_at).not.toBeNull()
    // Sent once: a job that runs again (a redelivered duplicate) sends nothing more.
    expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry)).toBe(
      'skipped',
    )
    expect(merchant.received).toHaveLength(1)
  })

  test('no 2xx: the try throws for graphile-worker to retry; the last try fails it; redeliver sends it again', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    if (!delivery) throw new Error('no delivery')
    merchant.answer.status = 503
    await expect(
      deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry),
    ).rejects.toThrow(/tried again later/)
    expect((await deliveriesOf(`&endpoint_id=${endpoint.id}`))[0]).toMatchObject({
      status: 'pending',
      attempts: 1,
      response_status: 503,
      error_message: 'The endpoint answered 503',
    })
    expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, lastTry)).toBe(
      'failed',
    )
    expect(
      (await deliveriesOf(`&status=failed&endpoint_id=${endpoint.id}`)).map((d) => d.id),
    ).toEqual([delivery.id])
    await ctx.pool.query(
      `delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t
        where t.id = j.task_id and t.identifier = 'deliver_merchant_webhook'`,
    )
    merchant.answer.status = 200
    const again = await ctx.post<DeliveryBody>(`/v1/webhook_deliveries/${delivery.id}/redeliver`)
    expect(again.status, again.text).toBe(202)
    expect(again.body.status).toBe('pending')
    expect((await queuedJobs()).has(delivery.id)).toBe(true)
    expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry)).toBe(
      'succeeded',
    )
    expect((await deliveriesOf(`&endpoint_id=${endpoint.id}`))[0]).toMatchObject({
      status: 'succeeded',
      attempts: 3,
      error_message: null,
    })
  })

  test('an endpoint that cannot be reached is retried with the reason recorded', async () => {
    const endpoint = await register({
      url: 'http://127.0.0.1:9/closed',
      enabled_events: ['invoice.paid'],
    })
    await payOffline()
    const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    if (!delivery) throw new Error('no delivery')
    await expect(
      deliverMerchantWebhook(ctx.deps, { deliveryId: delivery.id }, firstTry),
    ).rejects.toThrow()
    const [after] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    expect(after).toMatchObject({ status: 'pending', attempts: 1, response_status: null })
    expect(after?.error_message).toMatch(/^No answer/)
  })

  test('a disabled endpoint gets no new deliveries, and one queued before is not sent', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [queued] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    const disabled = await ctx.patch<EndpointBody>(`/v1/webhook_endpoints/${endpoint.id}`, {
      status: 'disabled',
    })
    expect(disabled.body.status).toBe('disabled')
    await payOffline()
    expect(await deliveriesOf(`&endpoint_id=${endpoint.id}`)).toHaveLength(1)
    expect(
      await deliverMerchantWebhook(ctx.deps, { deliveryId: String(queued?.id) }, firstTry),
    ).toBe('failed')
    expect(merchant.received).toHaveLength(0)
  })

  test('a deleted endpoint takes its deliveries with it', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [queued] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    expect((await ctx.delete(`/v1/webhook_endpoints/${endpoint.id}`)).status).toBe(200)
    expect(await deliveriesOf(`&endpoint_id=${endpoint.id}`)).toHaveLength(0)
    expect(
      await deliverMerchantWebhook(ctx.deps, { deliveryId: String(queued?.id) }, firstTry),
    ).toBe('skipped')
    expect((await ctx.post(`/v1/webhook_deliveries/${queued?.id}/redeliver`)).status).toBe(404)
  })

  test('events of a rolled-back transaction make no delivery and queue no job', async () => {
    await register()
    const before = (await queuedJobs()).size
    await expect(
      inTransaction(ctx.db, async (trx) => {
        await recordEvents(trx, ctx.scope, new Date(), [
          { type: 'payment.pending', objectType: 'payment', objectId: 'pay_x', data: {} },
        ])
        throw new Error('rolled back')
      }),
    ).rejects.toThrow('rolled back')
    expect(await deliveriesOf()).toHaveLength(0)
    expect((await queuedJobs()).size).toBe(before)
  })

  test("another environment's events go to its own endpoints only; its deliveries are not shown", async () => {
    const endpoint = await register()
    const live = { key: ctx.main.liveKey }
    await inTransaction(ctx.db, (trx) =>
      recordEvents(
        trx,
        { tenantId: ctx.main.tenant.id, environmentId: ctx.main.live.id },
        ctx.clock.now(),
        [{ type: 'payment.pending', objectType: 'payment', objectId: 'pay_live', data: {} }],
      ),
    )
    expect(await deliveriesOf(`&endpoint_id=${endpoint.id}`)).toHaveLength(0)
    await payOffline()
    const [mine] = await deliveriesOf()
    const theirs = await ctx.get<{ items: unknown[] }>('/v1/webhook_deliveries', live)
    expect(theirs.body.items).toHaveLength(0)
    expect((await ctx.post(`/v1/webhook_deliveries/${mine?.id}/redeliver`, {}, live)).status).toBe(
      404,
    )
  })

  test('an endpoint changed outside this process is followed once its notification arrives', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    expect(await deliveriesOf()).toHaveLength(1)
    // As another process (or SQL) would: the trigger announces it, this process drops its copy.
    await ctx.pool.query(`update webhook_endpoints set status = 'disabled' where id = $1`, [
      endpoint.id,
    ])
    for (let i = 0; i < 200; i++) {
      if ((await webhookEndpoints.enabled(ctx.db, ctx.main.test.id)).length === 0) break
      await new Promise((r) => setTimeout(r, 10))
    }
    await payOffline()
    expect(await deliveriesOf()).toHaveLength(1)
  })

  test('the worker sends what a payment records, as it commits', async () => {
    const endpoint = await register({ enabled_events: ['payment.succeeded'] })
    const worker = await startWorker(ctx.deps, { connectionString: ctx.url, concurrency: 1 })
    try {
      const paymentId = await payOffline()
      let deliveries: DeliveryBody[] = []
      for (let i = 0; i < 500; i++) {
        deliveries = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
        if (deliveries[0]?.status === 'succeeded') break
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(deliveries).toHaveLength(1)
      expect(deliveries[0]).toMatchObject({ status: 'succeeded', attempts: 1 })
      expect(merchant.received).toHaveLength(1)
      const sent = JSON.parse(merchant.received[0]?.body ?? '{}') as {
        type: string
        data: { object: { id: string } }
      }
      expect(sent.type).toBe('payment.succeeded')
      expect(sent.data.object.id).toBe(paymentId)
    } finally {
      await worker.stop()
    }
  })

  test('an endpoint deleted while a transaction records events for it does not fail that transaction', async () => {
    const endpoint = await register()
    await webhookEndpoints.enabled(ctx.db, ctx.main.test.id)
    await inTransaction(ctx.db, async (trx) => {
      await recordEvents(trx, ctx.scope, new Date(), [
        { type: 'payment.pending', objectType: 'payment', objectId: 'pay_gone', data: {} },
      ])
      // Deleted by another connection before this transaction commits its held deliveries.
      await ctx.pool.query('delete from webhook_endpoints where id = $1', [endpoint.id])
    })
    const { rows } = await ctx.pool.query<{ id: string }>(
      'select id from webhook_deliveries where endpoint_id = $1',
      [endpoint.id],
    )
    expect(rows).toHaveLength(1)
    expect(await deliverMerchantWebhook(ctx.deps, { deliveryId: rows[0]?.id }, firstTry)).toBe(
      'failed',
    )
  })

  test('an answer with NUL characters is recorded, not retried as unrecordable', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    merchant.answer.body = 'ok\u0000done'
    expect(
      await deliverMerchantWebhook(ctx.deps, { deliveryId: String(delivery?.id) }, firstTry),
    ).toBe('succeeded')
    const [after] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    expect(after).toMatchObject({ status: 'succeeded', response_body: 'okdone' })
  })

  test('a try overtaken by a redelivery writes nothing over it', async () => {
    const endpoint = await register({ enabled_events: ['invoice.paid'] })
    await payOffline()
    const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
    merchant.answer.delayMs = 300
    merchant.answer.status = 503
    const slow = deliverMerchantWebhook(ctx.deps, { deliveryId: String(delivery?.id) }, lastTry)
    while (merchant.received.length === 0) await new Promise((r) => setTimeout(r, 5))
    expect((await ctx.post(`/v1/webhook_deliveries/${delivery?.id}/redeliver`)).status).toBe(202)
    expect(await slow).toBe('skipped')
    expect((await deliveriesOf(`&endpoint_id=${endpoint.id}`))[0]).toMatchObject({
      status: 'pending',
      attempts: 0,
    })
  })

  test('private and public addresses are told apart', () => {
    expect(isPrivateAddress('127.0.0.1')).toBe(true)
    expect(isPrivateAddress('10.1.2.3')).toBe(true)
    expect(isPrivateAddress('172.20.0.1')).toBe(true)
    expect(isPrivateAddress('192.168.1.1')).toBe(true)
    expect(isPrivateAddress('169.254.169.254')).toBe(true)
    expect(isPrivateAddress('::1')).toBe(true)
    expect(isPrivateAddress('fd00::1')).toBe(true)
    expect(isPrivateAddress('::ffff:10.0.0.1')).toBe(true)
    // IPv4-mapped in hex, as a URL writes it: still 127.0.0.1, 10.0.0.1, 169.254.169.254.
    expect(isPrivateAddress('::ffff:7f00:1')).toBe(true)
    expect(isPrivateAddress('::ffff:a00:1')).toBe(true)
    expect(isPrivateAddress('::ffff:a9fe:a9fe')).toBe(true)
    expect(isPrivateAddress('::7f00:1')).toBe(true)
    expect(isPrivateAddress('fe80::1')).toBe(true)
    expect(isPrivateAddress('::ffff:5db8:d822')).toBe(false)
    expect(isPrivateAddress('93.184.216.34')).toBe(false)
    expect(isPrivateAddress('2606:2800:220:1::1')).toBe(false)
  })

  test('ranges beyond the private networks, and IPv4 carried in IPv6, are told apart', () => {
    // The IETF's protocol block and the benchmarking range (RFC 6890) are not the internet.
    expect(isPrivateAddress('192.0.0.8')).toBe(true)
    expect(isPrivateAddress('198.18.0.1')).toBe(true)
    expect(isPrivateAddress('198.19.255.254')).toBe(true)
    expect(isPrivateAddress('198.20.0.1')).toBe(false)
    // NAT64 and 6to4 reach the IPv4 address they carry: judged by it, in either spelling.
    expect(isPrivateAddress('64:ff9b::7f00:1')).toBe(true)
    expect(isPrivateAddress('64:ff9b::127.0.0.1')).toBe(true)
    expect(isPrivateAddress('64:ff9b::a9fe:a9fe')).toBe(true)
    expect(isPrivateAddress('64:ff9b:1::a00:1')).toBe(true)
    expect(isPrivateAddress('2002:7f00:1::')).toBe(true)
    expect(isPrivateAddress('2002:c0a8:101::1')).toBe(true)
    // What a DNS64 resolver gives a public host, and a public 6to4 site, stay reachable.
    expect(isPrivateAddress('64:ff9b::5db8:d822')).toBe(false)
    expect(isPrivateAddress('2002:5db8:d822::1')).toBe(false)
  })

  test.each([
    ['an address', '127.0.0.1', /^Not sent: 127\.0\.0\.1 is a private address/],
    ['a host name resolving to one', 'localhost', /^Not sent: localhost is a private address/],
  ])(
    'in production, an endpoint on %s private is not sent to (unless allowed)',
    async (_, host, why) => {
      const endpoint = await register({
        enabled_events: ['invoice.paid'],
        url: receiverUrl.replace('127.0.0.1', host),
      })
      await payOffline()
      const [delivery] = await deliveriesOf(`&endpoint_id=${endpoint.id}`)
      const environment = process.env.NODE_ENV
      process.env.NODE_ENV = 'production'
      try {
        await expect(
          deliverMerchantWebhook(ctx.deps, { deliveryId: String(delivery?.id) }, firstTry),
        ).rejects.toThrow()
        expect(merchant.received).toHaveLength(0)
        expect((await deliveriesOf(`&endpoint_id=${endpoint.id}`))[0]?.error_message).toMatch(why)
        process.env.PAYRAIL_WEBHOOK_PRIVATE_TARGETS = 'allow'
        expect(
          await deliverMerchantWebhook(ctx.deps, { deliveryId: String(delivery?.id) }, firstTry),
        ).toBe('succeeded')
      } finally {
        process.env.NODE_ENV = environment
        delete process.env.PAYRAIL_WEBHOOK_PRIVATE_TARGETS
      }
    },
  )

  test('a host name is checked on the addresses the connection uses, not on an earlier lookup', async () => {
    const local = receiverUrl.replace('127.0.0.1', 'localhost')
    const options = { publicOnly: true, timeoutMs: 2_000, bodyLimit: 100 }
    // localhost resolves to a loopback address inside the connection's own lookup: refused
    // there, so no second resolution can differ from the one checked (DNS rebinding).
    await expect(postJson(local, {}, '{}', options)).rejects.toBeInstanceOf(PrivateTargetError)
    await expect(postJson(receiverUrl, {}, '{}', options)).rejects.toThrow(/private address/)
    expect(merchant.received).toHaveLength(0)
    const sent = await postJson(local, {}, '{}', { ...options, publicOnly: false })
    expect(sent.status).toBe(200)
    expect(merchant.received).toHaveLength(1)
    // A public address passes through the lookup unchanged, in either form the socket asks.
    const lookedUp = (all: boolean) =>
      new Promise<unknown>((resolve, reject) =>
        publicOnlyLookup('93.184.216.34', { all }, (error, address, family) =>
          error ? reject(error) : resolve(all ? address : [address, family]),
        ),
      )
    expect(await lookedUp(true)).toEqual([{ address: '93.184.216.34', family: 4 }])
    expect(await lookedUp(false)).toEqual(['93.184.216.34', 4])
  })
})
