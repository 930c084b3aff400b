import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  type BitpayEmulator,
  type JsonObject,
  type JsonValue,
  startBitpayEmulator,
} from './bitpay/server.ts'

/** An IPN endpoint that records what it receives and answers the queued statuses (then 200). */
interface Receiver {
  url: string
  received: { body: string; headers: IncomingHttpHeaders }[]
  answers: number[]
  /** How long to wait before answering each of the next requests (then at once). */
  delays: number[]
  close(): Promise<void>
}

async function startReceiver(): Promise<Receiver> {
  const received: Receiver['received'] = []
  const answers: number[] = []
  const delays: number[] = []
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: request.headers })
      const status = answers.shift() ?? 200
      setTimeout(() => {
        if (!response.destroyed) response.writeHead(status).end()
      }, delays.shift() ?? 0)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}/v1/webhooks/bitpay`,
    received,
    answers,
    delays,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

interface BitpayAnswer {
  status: number
  body: JsonObject
}

function asObject(value: JsonValue | undefined): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`expected an object, got ${JSON.stringify(value)}`)
  }
  return value
}

function parse(text: string): JsonObject {
  const value: JsonValue = JSON.parse(text)
  return asObject(value)
}

let bitpay: BitpayEmulator
let receiver: Receiver

async function call(
  method: 'GET' | 'POST',
  path: string,
  body?: JsonObject,
  headers: Record<string, string> = { 'x-accept-version': '2.0.0' },
): Promise<BitpayAnswer> {
  const response = await fetch(`${bitpay.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: response.status, body: parse(await response.text()) }
}

async function createInvoice(overrides: JsonObject = {}): Promise<JsonObject> {
  const answer = await call('POST', '/invoices', {
    token: bitpay.token,
    price: 10,
    currency: 'USD',
    orderId: 'order-1',
    posData: '{"payment":"pay_1"}',
    notificationURL: receiver.url,
    redirectURL: 'https://shop.example/return',
    itemDesc: 'A book',
    buyer: { name: 'Ada', email: 'ada@example.com' },
    ...overrides,
  })
  expect(answer.status).toBe(200)
  return asObject(answer.body.data)
}

function idOf(invoice: JsonObject): string {
  const id = invoice.id
  if (typeof id !== 'string') throw new Error('no id')
  return id
}

function notifications(): JsonObject[] {
  return receiver.received.map((entry) => parse(entry.body))
}

beforeAll(async () => {
  bitpay = await startBitpayEmulator({
    token: 'merchant-token',
    notificationRetry: { backoffMs: 5, timeoutMs: 500 },
  })
  receiver = await startReceiver()
})

afterAll(async () => {
  await bitpay.close()
  await receiver.close()
})

beforeEach(async () => {
  // A test may leave an IPN on its way; let it land before the receiver forgets.
  await bitpay.waitForNotifications()
  bitpay.reset()
  bitpay.setNotificationRetry({ maxAttempts: 5, backoffMs: 5, timeoutMs: 500 })
  receiver.received.length = 0
  receiver.answers.length = 0
  receiver.delays.length = 0
})

describe('POST /invoices', () => {
  test('creates a new invoice with a hosted url on the emulator', async () => {
    const invoice = await createInvoice()
    expect(invoice).toMatchObject({
      status: 'new',
      price: 10,
      currency: 'USD',
      orderId: 'order-1',
      posData: '{"payment":"pay_1"}',
      exceptionStatus: false,
      amountPaid: 0,
      redirectURL: 'https://shop.example/return',
      paymentTotals: { BTC: 20_000 },
    })
    expect(invoice.url).toBe(`${bitpay.url}/invoice?id=${idOf(invoice)}`)
    expect(Number(invoice.expirationTime) - Number(invoice.invoiceTime)).toBe(15 * 60 * 1000)
    const page = await fetch(String(invoice.url))
    expect(page.status).toBe(200)
    expect(await page.text()).toContain(idOf(invoice))
  })

  test.each([
    ['no X-Accept-Version', {}, { token: 'merchant-token' }, 400, 'UNSUPPORTED_VERSION'],
    [
      'another X-Accept-Version',
      { 'x-accept-version': '1.0.0' },
      { token: 'merchant-token' },
      400,
      'UNSUPPORTED_VERSION',
    ],
    ['no token', { 'x-accept-version': '2.0.0' }, {}, 401, 'MISSING_TOKEN'],
    ['a wrong token', { 'x-accept-version': '2.0.0' }, { token: 'nope' }, 401, 'INVALID_TOKEN'],
    [
      'a price that is not a number',
      { 'x-accept-version': '2.0.0' },
      { token: 'merchant-token', price: '10' },
      400,
      'INVALID_PARAMETER',
    ],
  ])('refuses %s with BitPay’s error shape', async (_name, headers, fields, status, code) => {
    const answer = await call(
      'POST',
      '/invoices',
      { price: 10, currency: 'USD', ...fields },
      headers,
    )
    expect(answer.status).toBe(status)
    expect(answer.body).toMatchObject({ status: 'error', code })
    expect(typeof answer.body.error).toBe('string')
  })
})

describe('GET /invoices/:id', () => {
  test('answers the current state with the merchant token', async () => {
    const id = idOf(await createInvoice())
    bitpay.pay(id)
    const answer = await call('GET', `/invoices/${id}?token=merchant-token`)
    expect(answer.status).toBe(200)
    expect(answer.body).toMatchObject({ facade: 'pos/invoice', data: { id, status: 'paid' } })
  })

  test('refuses a wrong or missing token and an unknown id', async () => {
    const id = idOf(await createInvoice())
    expect((await call('GET', `/invoices/${id}?token=wrong`)).status).toBe(401)
    expect((await call('GET', `/invoices/${id}`)).status).toBe(401)
    const missing = await call('GET', '/invoices/nope?token=merchant-token')
    expect(missing.status).toBe(404)
    expect(missing.body).toMatchObject({ status: 'error', code: 'NOT_FOUND' })
  })
})

describe('state transitions and IPNs', () => {
  test('paid → confirmed → complete, each with a standard IPN', async () => {
    const id = idOf(await createInvoice())
    bitpay.pay(id)
    bitpay.confirm(id)
    bitpay.complete(id)
    await bitpay.waitForNotifications()
    const sent = notifications()
    expect(sent.map((body) => body.status)).toEqual(['paid', 'confirmed', 'complete'])
    expect(sent[0]).toMatchObject({
      id,
      url: `${bitpay.url}/invoice?id=${id}`,
      price: 10,
      currency: 'USD',
      orderId: 'order-1',
      posData: '{"payment":"pay_1"}',
      exceptionStatus: false,
      amountPaid: 20_000,
    })
    expect(sent[0]).not.toHaveProperty('event')
    expect(receiver.received[0]?.headers['content-type']).toBe('application/json')
  })

  test('the extended format wraps the invoice in {event, data}', async () => {
    const id = idOf(await createInvoice({ extendedNotifications: true }))
    bitpay.pay(id)
    bitpay.confirm(id)
    await bitpay.waitForNotifications()
    expect(notifications()).toEqual([
      expect.objectContaining({
        event: { code: 1003, name: 'invoice_paidInFull' },
        data: expect.objectContaining({ id, status: 'paid' }),
      }),
      expect.objectContaining({
        event: { code: 1005, name: 'invoice_confirmed' },
        data: expect.objectContaining({ id, status: 'confirmed' }),
      }),
    ])
    expect(asObject(notifications()[0]?.data)).not.toHaveProperty('token')
  })

  test('a partial payment stays new with paidPartial, and can be topped up', async () => {
    const id = idOf(await createInvoice())
    expect(bitpay.pay(id, { fraction: 0.5 })).toMatchObject({
      status: 'new',
      exceptionStatus: 'paidPartial',
      amountPaid: 10_000,
    })
    expect(bitpay.pay(id, { fraction: 0.5 })).toMatchObject({
      status: 'paid',
      exceptionStatus: false,
      amountPaid: 20_000,
    })
  })

  test('an overpayment is paid with paidOver', async () => {
    const id = idOf(await createInvoice())
    expect(bitpay.pay(id, { fraction: 1.5 })).toMatchObject({
      status: 'paid',
      exceptionStatus: 'paidOver',
      amountPaid: 30_000,
    })
  })

  test.each([
    ['expire', 'new', 'expired', 'invoice_expired'],
    ['invalidate', 'paid', 'invalid', 'invoice_failedToConfirm'],
    ['decline', 'paid', 'declined', 'invoice_declined'],
  ] as const)('%s moves a %s invoice to %s', async (action, from, to, eventName) => {
    const id = idOf(await createInvoice({ extendedNotifications: true }))
    if (from === 'paid') bitpay.pay(id)
    bitpay[action](id)
    await bitpay.waitForNotifications()
    const last = notifications().at(-1)
    expect(last).toMatchObject({ event: { name: eventName }, data: { status: to } })
    expect((await call('GET', `/invoices/${id}?token=merchant-token`)).body).toMatchObject({
      data: { status: to },
    })
  })

  test('refuses a transition the invoice’s status does not allow', async () => {
    const id = idOf(await createInvoice())
    expect(() => bitpay.confirm(id)).toThrow(/it is new/)
    bitpay.expire(id)
    expect(() => bitpay.pay(id)).toThrow(/it is expired/)
  })

  test('an invoice without notificationURL changes silently', async () => {
    const id = idOf(await createInvoice({ notificationURL: null }))
    bitpay.pay(id)
    await bitpay.waitForNotifications()
    expect(receiver.received).toHaveLength(0)
  })
})

describe('delivery', () => {
  test('retries until the receiver answers 2xx', async () => {
    receiver.answers.push(500, 503)
    const id = idOf(await createInvoice())
    bitpay.pay(id)
    await bitpay.waitForNotifications()
    expect(receiver.received).toHaveLength(3)
    expect(bitpay.deliveries.map((attempt) => [attempt.attempt, attempt.status])).toEqual([
      [1, 500],
      [2, 503],
      [3, 200],
    ])
    expect(new Set(receiver.received.map((entry) => entry.body)).size).toBe(1)
  })

  test('retries a receiver that does not answer in time, and gives up after maxAttempts', async () => {
    bitpay.setNotificationRetry({ maxAttempts: 2, timeoutMs: 50 })
    receiver.delays.push(300, 300)
    const id = idOf(await createInvoice())
    bitpay.pay(id)
    await bitpay.waitForNotifications()
    expect(bitpay.deliveries).toHaveLength(2)
    expect(bitpay.deliveries.every((attempt) => !attempt.ok && attempt.status === null)).toBe(true)
  })

  test('duplicateNext delivers the same IPN twice', async () => {
    const id = idOf(await createInvoice())
    bitpay.duplicateNext()
    bitpay.pay(id)
    bitpay.confirm(id)
    await bitpay.waitForNotifications()
    expect(notifications().map((body) => body.status)).toEqual(['paid', 'paid', 'confirmed'])
  })

  test('deliverOutOfOrder holds IPNs and sends them newest first', async () => {
    const id = idOf(await createInvoice())
    bitpay.deliverOutOfOrder(3)
    bitpay.pay(id)
    bitpay.confirm(id)
    await bitpay.waitForNotifications()
    expect(receiver.received).toHaveLength(0)
    bitpay.complete(id)
    await bitpay.waitForNotifications()
    expect(notifications().map((body) => body.status)).toEqual(['complete', 'confirmed', 'paid'])
  })

  test('sendForgedIpn posts an unsigned lie that only a re-fetch exposes', async () => {
    const id = idOf(await createInvoice())
    const result = await bitpay.sendForgedIpn(receiver.url, { id, status: 'confirmed' })
    expect(result.status).toBe(200)
    expect(notifications()).toEqual([{ id, status: 'confirmed' }])
    expect(bitpay.deliveries).toHaveLength(0)
    const truth = await call('GET', `/invoices/${id}?token=merchant-token`)
    expect(truth.body).toMatchObject({ data: { status: 'new' } })
  })

  test('resendNotification sends the current state again', async () => {
    const id = idOf(await createInvoice({ extendedNotifications: true }))
    bitpay.pay(id)
    bitpay.resendNotification(id)
    await bitpay.waitForNotifications()
    expect(notifications().map((body) => asObject(body.event).name)).toEqual([
      'invoice_paidInFull',
      'invoice_manuallyNotified',
    ])
  })
})

describe('API faults', () => {
  test('failNext answers the status with the error body, count times', async () => {
    bitpay.failNext({ status: 503, count: 2 })
    const first = await call('POST', '/invoices', {
      token: 'merchant-token',
      price: 1,
      currency: 'USD',
    })
    const second = await call('GET', '/invoices/x?token=merchant-token')
    expect([first.status, second.status]).toEqual([503, 503])
    expect(first.body).toMatchObject({ status: 'error', code: 'SERVER_ERROR' })
    await createInvoice()
  })

  test('timeoutNext holds the request, then resets the connection', async () => {
    bitpay.timeoutNext({ ms: 100 })
    const started = Date.now()
    await expect(
      fetch(`${bitpay.url}/invoices/x?token=merchant-token`, {
        headers: { 'x-accept-version': '2.0.0' },
      }),
    ).rejects.toThrow()
    expect(Date.now() - started).toBeGreaterThanOrEqual(90)
    await createInvoice()
  })

  test('a client timeout fires before the held answer', async () => {
    bitpay.timeoutNext({ ms: 5_000 })
    await expect(
      fetch(`${bitpay.url}/invoices/x?token=merchant-token`, {
        headers: { 'x-accept-version': '2.0.0' },
        signal: AbortSignal.timeout(50),
      }),
    ).rejects.toThrow(/aborted|timeout/i)
  })
})
