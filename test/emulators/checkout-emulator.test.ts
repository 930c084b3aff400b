import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { Checkout } from 'checkout-sdk-node'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  type CheckoutEmulator,
  type JsonObject,
  type JsonValue,
  startCheckoutEmulator,
  verifyCkoSignature,
} from './checkout/server.ts'

interface ReceivedWebhook {
  body: string
  headers: IncomingHttpHeaders
  event: JsonObject
}

/** A stand-in for Payrail's webhook route: records each POST and answers the queued statuses. */
class WebhookReceiver {
  readonly received: ReceivedWebhook[] = []
  readonly statuses: number[] = []
  private readonly server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      this.received.push({ body, headers: request.headers, event: asObject(JSON.parse(body)) })
      response.writeHead(this.statuses.shift() ?? 200).end()
    })
  })

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    const address = this.server.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    return `http://127.0.0.1:${address.port}/v1/webhooks/checkout`
  }

  types(): string[] {
    return this.received.map((webhook) => text(webhook.event, 'type'))
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

function asObject(value: unknown): JsonObject {
  const json: JsonValue = JSON.parse(JSON.stringify(value ?? null))
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Not an object: ${String(value)}`)
  }
  return json
}

function text(object: JsonObject, key: string): string {
  const value = object[key]
  if (typeof value !== 'string') throw new Error(`${key} is not a string: ${String(value)}`)
  return value
}

function field(object: JsonObject, ...path: string[]): JsonValue | undefined {
  let current: JsonValue | undefined = object
  for (const key of path) {
    if (typeof current !== 'object' || current === null || Array.isArray(current)) return undefined
    current = current[key]
  }
  return current
}

interface SdkError {
  name: string
  http_code: number | undefined
  body: JsonValue | undefined
  message: string
}

/** The error a rejected SDK call threw, in the shape checkout-sdk-node gives its errors. */
async function sdkError(call: Promise<unknown>): Promise<SdkError> {
  try {
    await call
  } catch (error) {
    if (!(error instanceof Error)) throw error
    const code = 'http_code' in error ? error.http_code : undefined
    const body = 'body' in error ? asBody(error.body) : undefined
    return {
      name: error.name,
      http_code: typeof code === 'number' ? code : undefined,
      body,
      message: error.message,
    }
  }
  throw new Error('Expected the SDK call to fail')
}

function asBody(value: unknown): JsonValue | undefined {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value))
}

const PAYRAIL = 'http://127.0.0.1:8080/v1/checkout'

function hostedPaymentRequest(overrides: JsonObject = {}): JsonObject {
  return {
    amount: 2500,
    currency: 'EUR',
    reference: 'pay_ref_1',
    description: 'Order 1',
    customer: { email: 'jenny@example.com', name: 'Jenny Rosen' },
    billing: { address: { country: 'DE' } },
    success_url: `${PAYRAIL}/success`,
    failure_url: `${PAYRAIL}/failure`,
    cancel_url: `${PAYRAIL}/failure?canceled=1`,
    metadata: { payrail_payment_id: 'pmt_123' },
    ...overrides,
  }
}

let emulator: CheckoutEmulator
let receiver: WebhookReceiver
let cko: Checkout

beforeAll(async () => {
  receiver = new WebhookReceiver()
  const webhookUrl = await receiver.start()
  emulator = await startCheckoutEmulator({ webhookUrl, webhookRetry: { backoffMs: 5 } })
  cko = new Checkout(emulator.secretKey, emulator.sdkOptions())
})

afterAll(async () => {
  await emulator.close()
  await receiver.close()
})

beforeEach(async () => {
  await emulator.waitForDeliveries()
  emulator.reset()
  receiver.received.length = 0
  receiver.statuses.length = 0
})

async function payHostedPage(card?: string): Promise<{ paymentId: string; redirectUrl: string }> {
  const page = asObject(await cko.hostedPayments.create(hostedPaymentRequest()))
  return emulator.completeHostedPayment(text(page, 'id'), { card })
}

describe('hosted payments page', () => {
  test('create, pay, verify: the payment is Captured and webhooks are signed', async () => {
    const page = asObject(await cko.hostedPayments.create(hostedPaymentRequest()))
    const id = text(page, 'id')
    expect(id).toMatch(/^hpp_[a-z2-7]{26}$/)
    expect(page.reference).toBe('pay_ref_1')
    expect(field(page, '_links', 'redirect', 'href')).toBe(`${emulator.url}/pay/${id}`)
    expect(asObject(await cko.hostedPayments.get(id)).status).toBe('Payment Pending')

    const { paymentId, redirectUrl } = emulator.completeHostedPayment(id)
    const redirect = new URL(redirectUrl)
    expect(`${redirect.origin}${redirect.pathname}`).toBe(`${PAYRAIL}/success`)
    expect(redirect.searchParams.get('cko-payment-id')).toBe(paymentId)
    const sessionId = redirect.searchParams.get('cko-session-id') ?? ''
    expect(sessionId).toMatch(/^sid_/)

    const payment = asObject(await cko.payments.get(paymentId))
    expect(payment).toMatchObject({
      id: paymentId,
      status: 'Captured',
      approved: true,
      amount: 2500,
      currency: 'EUR',
      reference: 'pay_ref_1',
      metadata: { payrail_payment_id: 'pmt_123' },
      source: { type: 'card', last4: '4242', scheme: 'Visa' },
      balances: { total_captured: 2500, available_to_refund: 2500 },
    })
    expect(asObject(await cko.payments.get(sessionId)).id).toBe(paymentId)
    expect(asObject(await cko.hostedPayments.get(id))).toMatchObject({
      status: 'Payment Received',
      payment_id: paymentId,
    })

    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual(['payment_approved', 'payment_captured'])
    for (const webhook of receiver.received) {
      const signature = String(webhook.headers['cko-signature'])
      expect(verifyCkoSignature(webhook.body, signature, emulator.signatureKey)).toBe(true)
      expect(webhook.event).toMatchObject({
        id: expect.stringMatching(/^evt_/),
        data: {
          id: paymentId,
          amount: 2500,
          currency: 'EUR',
          metadata: { payrail_payment_id: 'pmt_123' },
        },
      })
    }
  })

  test('a declining card redirects to failure_url with a Declined payment', async () => {
    const { paymentId, redirectUrl } = await payHostedPage('4544249167673670')
    expect(redirectUrl.startsWith(`${PAYRAIL}/failure?`)).toBe(true)
    expect(new URL(redirectUrl).searchParams.get('cko-payment-id')).toBe(paymentId)
    expect(asObject(await cko.payments.get(paymentId))).toMatchObject({
      status: 'Declined',
      approved: false,
    })
    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual(['payment_declined'])
    expect(receiver.received[0]?.event.data).toMatchObject({
      response_code: '20051',
      response_summary: 'Insufficient Funds',
    })
  })

  test('expiring the page gives an Expired payment and payment_expired', async () => {
    const page = asObject(await cko.hostedPayments.create(hostedPaymentRequest()))
    const { paymentId } = emulator.expireHostedPayment(text(page, 'id'))
    expect(asObject(await cko.payments.get(paymentId)).status).toBe('Expired')
    expect(asObject(await cko.hostedPayments.get(text(page, 'id'))).status).toBe('Expired')
    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual(['payment_expired'])
    expect(() => emulator.completeHostedPayment(text(page, 'id'))).toThrow(/Expired/)
  })

  test('the hosted page takes a card by form POST and redirects like Checkout.com', async () => {
    const page = asObject(await cko.hostedPayments.create(hostedPaymentRequest()))
    const href = String(field(page, '_links', 'redirect', 'href'))
    const form = await fetch(href)
    expect(form.status).toBe(200)
    expect(await form.text()).toContain('name="card"')
    const paid = await fetch(href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'card=4242+4242+4242+4242',
      redirect: 'manual',
    })
    expect(paid.status).toBe(303)
    const location = new URL(paid.headers.get('location') ?? '')
    expect(location.pathname).toBe('/v1/checkout/success')
    const payment = asObject(
      await cko.payments.get(location.searchParams.get('cko-payment-id') ?? ''),
    )
    expect(payment.status).toBe('Captured')
    expect(emulator.cancelHostedPayment(text(page, 'id')).redirectUrl).toBe(
      `${PAYRAIL}/failure?canceled=1`,
    )
  })

  test('payment links redirect to return_url; payment sessions add cko-payment-session-id', async () => {
    const link = asObject(
      await cko.paymentLinks.create({
        ...hostedPaymentRequest({ success_url: null, failure_url: null }),
        return_url: `${PAYRAIL}/success`,
      }),
    )
    expect(text(link, 'id')).toMatch(/^pl_/)
    expect(asObject(await cko.paymentLinks.get(text(link, 'id'))).status).toBe('Active')
    const paid = emulator.completeHostedPayment(text(link, 'id'))
    expect(paid.redirectUrl.startsWith(`${PAYRAIL}/success?cko-session-id=sid_`)).toBe(true)

    const session = asObject(await cko.paymentSessions.request(hostedPaymentRequest()))
    expect(text(session, 'id')).toMatch(/^ps_/)
    const done = emulator.completeHostedPayment(text(session, 'id'))
    const query = new URL(done.redirectUrl).searchParams
    expect(query.get('cko-payment-session-id')).toBe(session.id)
    expect(query.get('cko-payment-id')).toBe(done.paymentId)
  })

  test('a missing success_url is a 422 in Checkout.com’s error shape', async () => {
    const error = await sdkError(
      cko.hostedPayments.create(hostedPaymentRequest({ success_url: null })),
    )
    expect(error).toMatchObject({
      name: 'ValidationError',
      http_code: 422,
      body: { error_type: 'request_invalid', error_codes: ['success_url_required'] },
    })
    expect(field(asObject(error.body), 'request_id')).toEqual(expect.any(String))
  })
})

describe('card payments', () => {
  test.each([
    ['4544249167673670', '20051', 'Insufficient Funds'],
    ['4724117215951699', '20054', 'Expired Card'],
    ['4000000000000002', '20005', 'Declined - Do Not Honour'],
  ])('card %s is Declined with %s', async (number, code, summary) => {
    const payment = asObject(
      await cko.payments.request({
        source: { type: 'card', number, expiry_month: 12, expiry_year: 2030, cvv: '100' },
        amount: 1000,
        currency: 'USD',
        reference: 'ord_1',
      }),
    )
    expect(payment).toMatchObject({
      status: 'Declined',
      approved: false,
      response_code: code,
      response_summary: summary,
    })
  })

  test('a recurring, merchant-initiated payment on a stored source; capture and void', async () => {
    const sourceId = emulator.seedCardSource()
    const customerId = emulator.seedCustomer({ email: 'jenny@example.com' })
    const authorized = asObject(
      await cko.payments.request({
        source: { type: 'id', id: sourceId },
        customer: { id: customerId },
        amount: 900,
        currency: 'GBP',
        payment_type: 'Recurring',
        merchant_initiated: true,
        capture: false,
      }),
    )
    expect(authorized).toMatchObject({
      status: 'Authorized',
      approved: true,
      response_code: '10000',
    })
    const id = text(authorized, 'id')
    const capture = asObject(await cko.payments.capture(id, { reference: 'cap_1' }))
    expect(capture.action_id).toEqual(expect.stringMatching(/^act_/))
    expect(asObject(await cko.payments.get(id))).toMatchObject({
      status: 'Captured',
      payment_type: 'Recurring',
      customer: { id: customerId },
    })
    const actions = await cko.payments.getActions(id)
    expect(asBody(actions)).toMatchObject([{ type: 'Capture' }, { type: 'Authorization' }])
    expect(await sdkError(cko.payments.void(id))).toMatchObject({
      name: 'ActionNotAllowed',
      http_code: 403,
    })

    const second = asObject(
      await cko.payments.request({
        source: { id: sourceId },
        amount: 500,
        currency: 'GBP',
        capture: false,
      }),
    )
    await cko.payments.void(text(second, 'id'))
    expect(asObject(await cko.payments.get(text(second, 'id'))).status).toBe('Voided')
    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual([
      'payment_approved',
      'payment_captured',
      'payment_approved',
      'payment_voided',
    ])
  })

  test('payments are listed by reference, newest first, with limit and skip; the reference is required', async () => {
    const sourceId = emulator.seedCardSource()
    const ids: string[] = []
    for (const amount of [100, 200, 300]) {
      const made = asObject(
        await cko.payments.request({
          source: { type: 'id', id: sourceId },
          amount,
          currency: 'EUR',
          reference: 'ord_listed',
        }),
      )
      ids.push(text(made, 'id'))
    }
    const page = asObject(
      await cko.payments.getPaymentList({ reference: 'ord_listed', limit: 2, skip: 0 }),
    )
    expect(page).toMatchObject({ limit: 2, skip: 0, total_count: 3 })
    expect((page.data as { id: string }[]).map((p) => p.id)).toEqual([ids[2], ids[1]])
    expect(page.data).toEqual([
      expect.objectContaining({ amount: 300, reference: 'ord_listed', status: 'Captured' }),
      expect.objectContaining({ amount: 200 }),
    ])
    const rest = asObject(
      await cko.payments.getPaymentList({ reference: 'ord_listed', limit: 2, skip: 2 }),
    )
    expect((rest.data as { id: string }[]).map((p) => p.id)).toEqual([ids[0]])
    expect(asObject(await cko.payments.getPaymentList({ reference: 'ord_none' }))).toMatchObject({
      total_count: 0,
      data: [],
    })
    expect(await sdkError(cko.payments.getPaymentList({}))).toMatchObject({ http_code: 422 })
  })

  test('deferCaptureNext: a capture: true payment answers Authorized until capturePayment', async () => {
    const sourceId = emulator.seedCardSource()
    emulator.deferCaptureNext()
    const answer = asObject(
      await cko.payments.request({
        source: { type: 'id', id: sourceId },
        amount: 1200,
        currency: 'USD',
        payment_type: 'Unscheduled',
        merchant_initiated: true,
        capture: true,
      }),
    )
    expect(answer).toMatchObject({ status: 'Authorized', approved: true })
    const id = text(answer, 'id')
    expect(emulator.deferredCaptures).toEqual([id])
    expect(asObject(await cko.payments.get(id))).toMatchObject({
      status: 'Authorized',
      balances: { total_captured: 0, available_to_capture: 1200 },
    })
    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual(['payment_approved'])

    const actionId = emulator.capturePayment(id)
    expect(actionId).toMatch(/^act_/)
    expect(emulator.deferredCaptures).toEqual([])
    expect(asObject(await cko.payments.get(id)).status).toBe('Captured')
    await emulator.waitForDeliveries()
    expect(receiver.types()).toEqual(['payment_approved', 'payment_captured'])
    expect(receiver.received[1]?.event.data).toMatchObject({ action_id: actionId, amount: 1200 })

    // The switch was for one payment: the next is captured at once.
    const next = asObject(
      await cko.payments.request({
        source: { type: 'id', id: sourceId },
        amount: 100,
        currency: 'USD',
      }),
    )
    expect(next.status).toBe('Captured')
  })

  test('refunds honour Cko-Idempotency-Key and end Refunded', async () => {
    const { paymentId } = await payHostedPage()
    const first = asObject(
      await cko.payments.refund(paymentId, { amount: 1000, reference: 'rf_1' }, 'key-1'),
    )
    const replay = asObject(
      await cko.payments.refund(paymentId, { amount: 1000, reference: 'rf_1' }, 'key-1'),
    )
    expect(replay.action_id).toBe(first.action_id)
    expect(asObject(await cko.payments.get(paymentId))).toMatchObject({
      status: 'Partially Refunded',
      balances: { total_refunded: 1000, available_to_refund: 1500 },
    })
    expect(emulator.requests.filter((entry) => entry.replayed)).toHaveLength(1)
    expect(await sdkError(cko.payments.refund(paymentId, { amount: 5 }, 'key-1'))).toMatchObject({
      http_code: 422,
      body: { error_codes: ['idempotency_key_reused'] },
    })
    expect(await sdkError(cko.payments.refund(paymentId, { amount: 1501 }, 'key-2'))).toMatchObject(
      {
        http_code: 422,
        body: { error_codes: ['refund_amount_exceeds_balance'] },
      },
    )
    await cko.payments.refund(paymentId, { amount: 1500 }, 'key-2')
    expect(asObject(await cko.payments.get(paymentId)).status).toBe('Refunded')
    await emulator.waitForDeliveries()
    expect(receiver.types().filter((type) => type === 'payment_refunded')).toHaveLength(2)
  })
})

describe('authentication and headers', () => {
  test('a wrong key is a 401 AuthenticationError', async () => {
    const stranger = new Checkout('sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e', emulator.sdkOptions())
    expect(await sdkError(stranger.payments.get('pay_x'))).toMatchObject({
      name: 'AuthenticationError',
      http_code: 401,
    })
  })

  test('the SDK sends Bearer sk_…; every answer carries Cko-Request-Id', async () => {
    await sdkError(cko.payments.get('pay_unknown'))
    expect(emulator.requests.at(-1)).toMatchObject({
      authorization: `Bearer ${emulator.secretKey}`,
      status: 404,
    })
    for (const headers of [
      new Headers(),
      new Headers({ authorization: `Bearer ${emulator.secretKey}` }),
    ]) {
      const response = await fetch(`${emulator.url}/payments/pay_unknown`, { headers })
      expect(response.headers.get('cko-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    }
  })
})

describe('webhooks', () => {
  test('a tampered body or a bad signature does not verify', async () => {
    emulator.badSignatureNext()
    emulator.setWebhookRetry({ maxAttempts: 2 })
    await payHostedPage()
    await emulator.waitForDeliveries()
    emulator.setWebhookRetry({ maxAttempts: 5 })
    const [bad, good] = [receiver.received[0], receiver.received.at(-1)]
    if (bad === undefined || good === undefined) throw new Error('no webhooks')
    expect(
      verifyCkoSignature(bad.body, String(bad.headers['cko-signature']), emulator.signatureKey),
    ).toBe(false)
    const signature = String(good.headers['cko-signature'])
    expect(verifyCkoSignature(good.body, signature, emulator.signatureKey)).toBe(true)
    const tampered = good.body.replace('"amount":2500', '"amount":1')
    expect(tampered).not.toBe(good.body)
    expect(verifyCkoSignature(tampered, signature, emulator.signatureKey)).toBe(false)
  })

  test('event data is shaped like Checkout.com’s: no status; only authorization events carry the card', async () => {
    const { paymentId } = await payHostedPage()
    await emulator.waitForDeliveries()
    const [approved, captured] = receiver.received.map((webhook) => webhook.event)
    if (approved === undefined || captured === undefined) throw new Error('no webhooks')
    expect(approved).toMatchObject({
      type: 'payment_approved',
      data: {
        id: paymentId,
        action_id: expect.stringMatching(/^act_/),
        payment_type: 'Regular',
        auth_code: expect.any(String),
        source: { id: expect.stringMatching(/^src_/), last_4: '4242', scheme: 'Visa' },
        balances: { total_captured: 0 },
      },
    })
    expect(captured).toMatchObject({
      type: 'payment_captured',
      data: { id: paymentId, amount: 2500, balances: { total_captured: 2500 } },
    })
    for (const event of [approved, captured]) {
      expect(field(event, 'data', 'status')).toBeUndefined()
      expect(field(event, 'data', 'approved')).toBeUndefined()
    }
    expect(field(captured, 'data', 'source')).toBeUndefined()
    // listEvents gives the bodies as they were sent, not the payment as it is now.
    expect(emulator.listEvents('payment_approved')[0]).toEqual(approved)
  })

  test('a delivery is retried with the same body until a 2xx', async () => {
    receiver.statuses.push(500, 503)
    await payHostedPage('4544249167673670')
    await emulator.waitForDeliveries()
    expect(emulator.deliveries.map((attempt) => attempt.status)).toEqual([500, 503, 200])
    expect(new Set(receiver.received.map((webhook) => webhook.body)).size).toBe(1)
  })

  test('duplicateNext delivers the same event twice', async () => {
    emulator.duplicateNext()
    await payHostedPage('4544249167673670')
    await emulator.waitForDeliveries()
    const ids = receiver.received.map((webhook) => text(webhook.event, 'id'))
    expect(ids).toHaveLength(2)
    expect(ids[0]).toBe(ids[1])
  })

  test('held webhooks can be released out of order', async () => {
    emulator.holdWebhooks()
    const { paymentId } = await payHostedPage()
    await cko.payments.refund(paymentId, {}, 'rf-all')
    expect(emulator.heldWebhooks).toHaveLength(3)
    await emulator.releaseWebhooks({ order: 'reverse' })
    expect(receiver.types()).toEqual(['payment_refunded', 'payment_captured', 'payment_approved'])
  })
})

describe('API faults surface as SDK errors', () => {
  test('failNext answers the status', async () => {
    const { paymentId } = await payHostedPage()
    emulator.failNext({ status: 503 })
    expect(await sdkError(cko.payments.get(paymentId))).toMatchObject({
      name: 'API Error',
      http_code: 503,
    })
    emulator.failNext({ status: 502 })
    expect(await sdkError(cko.payments.get(paymentId))).toMatchObject({ http_code: 502 })
    expect(asObject(await cko.payments.get(paymentId)).status).toBe('Captured')
  })

  test('timeoutNext: ApiTimeout with the axios client, a failed request with fetch', async () => {
    const axiosClient = new Checkout(
      emulator.secretKey,
      emulator.sdkOptions({ httpClient: 'axios', timeout: 200 }),
    )
    emulator.timeoutNext({ ms: 2_000 })
    expect(await sdkError(axiosClient.payments.get('pay_x'))).toMatchObject({
      name: 'ApiTimeout',
      http_code: 408,
    })

    emulator.timeoutNext({ mode: 'destroy' })
    // determineError wraps the fetch failure in an ApiError whose body is the message.
    const reset = await sdkError(cko.payments.get('pay_x'))
    expect(reset).toMatchObject({ name: 'API Error', http_code: undefined })
    expect(String(reset.body)).toMatch(/^request to .* failed/)
  })

  test('a payment whose answer was lost is replayed for the same idempotency key', async () => {
    const request = {
      source: { type: 'card', number: '4242424242424242', expiry_month: 12, expiry_year: 2030 },
      amount: 700,
      currency: 'EUR',
    }
    emulator.timeoutNext({ mode: 'destroy', afterProcessing: true })
    await sdkError(cko.payments.request(structuredClone(request), 'pay-key'))
    const retried = asObject(await cko.payments.request(structuredClone(request), 'pay-key'))
    expect(emulator.state.payments.size).toBe(1)
    expect(emulator.payment(text(retried, 'id'))?.status).toBe('Captured')
  })
})
