import { createServer, type Server } from 'node:http'
import Stripe from 'stripe'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { parseForm } from './stripe/form.ts'
import { type JsonObject, type StripeEmulator, startStripeEmulator } from './stripe/server.ts'
import { signatureHeader } from './stripe/signing.ts'

/** A webhook endpoint that records what it receives and answers the queued statuses (then 200). */
interface Receiver {
  url: string
  received: { payload: string; signature: string }[]
  answers: number[]
  close(): Promise<void>
}

async function startReceiver(): Promise<Receiver> {
  const received: Receiver['received'] = []
  const answers: number[] = []
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      received.push({
        payload: Buffer.concat(chunks).toString('utf8'),
        signature: String(request.headers['stripe-signature']),
      })
      response.writeHead(answers.shift() ?? 200).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}/webhooks/stripe`,
    received,
    answers,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail')
}

function eventOf(payload: string): { id: string; type: string } {
  const parsed: { id: string; type: string } = JSON.parse(payload)
  return parsed
}

let emulator: StripeEmulator
let stripe: Stripe
let receiver: Receiver

beforeAll(async () => {
  emulator = await startStripeEmulator()
  stripe = new Stripe(emulator.secretKey, emulator.stripeConfig())
  receiver = await startReceiver()
})

afterAll(async () => {
  await emulator.close()
  await receiver.close()
})

beforeEach(() => {
  emulator.reset()
  emulator.setWebhookUrl(null)
  emulator.setWebhookDelivery('auto')
  receiver.received.length = 0
  receiver.answers.length = 0
})

async function customerWithCard(card = 'pm_card_visa') {
  const customer = await stripe.customers.create({ email: 'jenny@example.com', name: 'Jenny' })
  const paymentMethod = await stripe.paymentMethods.attach(card, { customer: customer.id })
  return { customer, paymentMethod }
}

describe('customers and saved cards', () => {
  test('a card attached from pm_card_visa is charged off-session', async () => {
    const { customer, paymentMethod } = await customerWithCard()
    expect(paymentMethod.id).toMatch(/^pm_/)
    expect(paymentMethod.card).toMatchObject({ brand: 'visa', last4: '4242' })
    expect(paymentMethod.customer).toBe(customer.id)

    const updated = await stripe.customers.update(customer.id, {
      invoice_settings: { default_payment_method: paymentMethod.id },
      metadata: { payrail_id: 'cus_1' },
    })
    expect(updated.invoice_settings.default_payment_method).toBe(paymentMethod.id)
    expect(updated.metadata).toEqual({ payrail_id: 'cus_1' })

    const intent = await stripe.paymentIntents.create({
      amount: 2500,
      currency: 'usd',
      customer: customer.id,
      payment_method: paymentMethod.id,
      off_session: true,
      confirm: true,
      metadata: { payment_id: 'pay_1' },
    })
    expect(intent).toMatchObject({
      status: 'succeeded',
      amount_received: 2500,
      metadata: { payment_id: 'pay_1' },
    })
    expect(intent.latest_charge).toMatch(/^ch_/)
    expect(intent.lastResponse.requestId).toMatch(/^req_/)

    const fetched = await stripe.paymentIntents.retrieve(intent.id, {
      expand: ['latest_charge', 'payment_method'],
    })
    const charge = fetched.latest_charge
    if (charge === null || typeof charge === 'string') throw new Error('latest_charge not expanded')
    expect(charge).toMatchObject({ status: 'succeeded', amount: 2500, paid: true })
    expect(charge.payment_method_details?.card?.last4).toBe('4242')
    expect(typeof fetched.payment_method === 'object' && fetched.payment_method?.id).toBe(
      paymentMethod.id,
    )
    const listed = await stripe.customers.listPaymentMethods(customer.id)
    expect(listed.data.map((method) => method.id)).toEqual([paymentMethod.id])
  })

  test.each([
    ['pm_card_visa_chargeDeclined', 'card_declined', 'generic_decline'],
    ['pm_card_chargeDeclinedInsufficientFunds', 'card_declined', 'insufficient_funds'],
    ['pm_card_chargeDeclinedExpiredCard', 'expired_card', 'expired_card'],
    ['pm_card_chargeDeclinedLostCard', 'card_declined', 'lost_card'],
  ])(
    '%s declines with %s / %s and the PaymentIntent in the 402',
    async (card, code, declineCode) => {
      const { customer, paymentMethod } = await customerWithCard(card)
      const error = await rejection(
        stripe.paymentIntents.create({
          amount: 1000,
          currency: 'usd',
          customer: customer.id,
          payment_method: paymentMethod.id,
          off_session: true,
          confirm: true,
        }),
      )
      expect(error).toBeInstanceOf(Stripe.errors.StripeCardError)
      if (!(error instanceof Stripe.errors.StripeCardError)) return
      expect(error.statusCode).toBe(402)
      expect(error.code).toBe(code)
      expect(error.decline_code).toBe(declineCode)
      expect(error.charge).toMatch(/^ch_/)
      expect(error.requestId).toMatch(/^req_/)
      expect(error.payment_intent).toMatchObject({
        object: 'payment_intent',
        status: 'requires_payment_method',
        payment_method: null,
        latest_charge: error.charge,
        last_payment_error: { code, decline_code: declineCode, type: 'card_error' },
      })
      const charge = await stripe.charges.retrieve(error.charge ?? '')
      expect(charge).toMatchObject({ status: 'failed', failure_code: code, paid: false })
    },
  )

  test('pm_card_authenticationRequired: off-session is declined authentication_required', async () => {
    const { customer, paymentMethod } = await customerWithCard('pm_card_authenticationRequired')
    const error = await rejection(
      stripe.paymentIntents.create({
        amount: 1000,
        currency: 'eur',
        customer: customer.id,
        payment_method: paymentMethod.id,
        off_session: true,
        confirm: true,
      }),
    )
    if (!(error instanceof Stripe.errors.StripeCardError)) throw error
    expect(error.code).toBe('authentication_required')
    expect(error.decline_code).toBe('authentication_required')
    // Stripe: "Off-session PaymentIntents that fail confirmation due to SCA requirements
    // have a status of requires_payment_method" (support.stripe.com, manual confirmation).
    expect(error.payment_intent?.status).toBe('requires_payment_method')
    expect(error.payment_intent?.last_payment_error?.code).toBe('authentication_required')
  })

  test('pm_card_authenticationRequired: on-session it requires_action until 3D Secure passes', async () => {
    const { customer, paymentMethod } = await customerWithCard('pm_card_authenticationRequired')
    const intent = await stripe.paymentIntents.create({
      amount: 1000,
      currency: 'usd',
      customer: customer.id,
      payment_method: paymentMethod.id,
      confirm: true,
      return_url: 'https://shop.example/return',
    })
    expect(intent.status).toBe('requires_action')
    expect(intent.next_action?.type).toBe('redirect_to_url')
    expect(intent.next_action?.redirect_to_url?.url).toContain(emulator.url)

    expect(emulator.authenticatePaymentIntent(intent.id).status).toBe('succeeded')
    expect((await stripe.paymentIntents.retrieve(intent.id)).status).toBe('succeeded')
  })

  test('a card used once without a customer cannot be reused', async () => {
    const first = await stripe.paymentIntents.create({
      amount: 1000,
      currency: 'usd',
      payment_method: 'pm_card_visa',
      confirm: true,
    })
    expect(first.status).toBe('succeeded')
    const error = await rejection(
      stripe.paymentIntents.create({
        amount: 1000,
        currency: 'usd',
        payment_method: String(first.payment_method),
        confirm: true,
      }),
    )
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError)
  })

  test('unknown ids and missing or unknown params answer like Stripe', async () => {
    const missing = await rejection(stripe.customers.retrieve('cus_nope'))
    if (!(missing instanceof Stripe.errors.StripeInvalidRequestError)) throw missing
    expect(missing).toMatchObject({ statusCode: 404, code: 'resource_missing', param: 'id' })
    expect(missing.message).toBe("No such customer: 'cus_nope'")

    const noAmount = await rejection(
      stripe.rawRequest('POST', '/v1/payment_intents', { currency: 'usd' }),
    )
    expect(noAmount).toMatchObject({
      statusCode: 400,
      code: 'parameter_missing',
      param: 'amount',
      message: 'Missing required param: amount.',
    })

    const unknown = await rejection(
      stripe.rawRequest('POST', '/v1/customers', { emial: 'typo@example.com' }),
    )
    expect(unknown).toMatchObject({ statusCode: 400, code: 'parameter_unknown', param: 'emial' })

    const tooSmall = await rejection(stripe.paymentIntents.create({ amount: 10, currency: 'usd' }))
    expect(tooSmall).toMatchObject({ code: 'amount_too_small', param: 'amount' })
  })
})

describe('checkout sessions', () => {
  async function createSession(customer?: string) {
    return stripe.checkout.sessions.create({
      mode: 'payment',
      customer,
      success_url: 'https://shop.example/success?session={CHECKOUT_SESSION_ID}',
      cancel_url: 'https://shop.example/cancel',
      metadata: { payment_id: 'pay_1' },
      expires_at: Math.floor(Date.now() / 1000) + 3600,
      line_items: [
        {
          quantity: 2,
          price_data: { currency: 'usd', unit_amount: 1250, product_data: { name: 'Seat' } },
        },
      ],
      payment_intent_data: {
        setup_future_usage: 'off_session',
        metadata: { payment_id: 'pay_1' },
      },
    })
  }

  test('open → completed by the customer, with the card saved for later', async () => {
    const customer = await stripe.customers.create({ email: 'buyer@example.com' })
    const session = await createSession(customer.id)
    expect(session.id).toMatch(/^cs_test_/)
    expect(session).toMatchObject({
      object: 'checkout.session',
      status: 'open',
      payment_status: 'unpaid',
      payment_intent: null,
      amount_total: 2500,
      currency: 'usd',
      metadata: { payment_id: 'pay_1' },
    })
    expect(session.url).toBe(`${emulator.url}/c/pay/${session.id}`)

    const completion = emulator.completeCheckoutSession(session.id, {
      paymentMethod: 'pm_card_visa',
    })
    expect(completion.error).toBeNull()

    const paid = await stripe.checkout.sessions.retrieve(session.id, {
      expand: ['payment_intent.latest_charge', 'line_items'],
    })
    expect(paid).toMatchObject({ status: 'complete', payment_status: 'paid', url: null })
    const intent = paid.payment_intent
    if (intent === null || typeof intent === 'string') throw new Error('not expanded')
    expect(intent).toMatchObject({
      status: 'succeeded',
      amount: 2500,
      customer: customer.id,
      metadata: { payment_id: 'pay_1' },
      setup_future_usage: 'off_session',
    })
    expect(typeof intent.latest_charge === 'object' && intent.latest_charge?.status).toBe(
      'succeeded',
    )
    expect(paid.line_items?.data[0]).toMatchObject({ quantity: 2, amount_total: 2500 })

    const saved = await stripe.customers.listPaymentMethods(customer.id)
    expect(saved.data).toHaveLength(1)
    const offSession = await stripe.paymentIntents.create({
      amount: 900,
      currency: 'usd',
      customer: customer.id,
      payment_method: saved.data[0]?.id,
      off_session: true,
      confirm: true,
    })
    expect(offSession.status).toBe('succeeded')
  })

  test('a declined card leaves the session open for another try', async () => {
    const session = await createSession()
    const declined = emulator.completeCheckoutSession(session.id, {
      paymentMethod: 'pm_card_chargeDeclinedInsufficientFunds',
    })
    expect(declined.error).toMatchObject({
      code: 'card_declined',
      decline_code: 'insufficient_funds',
    })
    expect((await stripe.checkout.sessions.retrieve(session.id)).status).toBe('open')

    const paid = emulator.completeCheckoutSession(session.id)
    expect(paid.error).toBeNull()
    expect(paid.session.status).toBe('complete')
    expect(paid.paymentIntent.id).toBe(declined.paymentIntent.id)
  })

  test('expires by the switch or through the API, only once', async () => {
    const first = await createSession()
    expect(emulator.expireCheckoutSession(first.id).status).toBe('expired')
    const expired = await stripe.checkout.sessions.retrieve(first.id)
    expect(expired).toMatchObject({ status: 'expired', url: null })

    const second = await createSession()
    expect((await stripe.checkout.sessions.expire(second.id)).status).toBe('expired')
    const again = await rejection(stripe.checkout.sessions.expire(second.id))
    expect(again).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError)
    expect(() => emulator.completeCheckoutSession(second.id)).toThrow(/expired/)
    expect(emulator.listEvents('checkout.session.expired')).toHaveLength(2)
  })

  test('expires_at outside 30 minutes – 24 hours is refused', async () => {
    const error = await rejection(
      stripe.checkout.sessions.create({
        mode: 'payment',
        expires_at: Math.floor(Date.now() / 1000) + 60,
        line_items: [
          { quantity: 1, price_data: { currency: 'usd', unit_amount: 500, product: 'prod_x' } },
        ],
      }),
    )
    expect(error).toMatchObject({ statusCode: 400, param: 'expires_at' })
  })
})

describe('webhooks', () => {
  test('checkout completion is delivered signed; constructEvent accepts it and refuses a tampered copy', async () => {
    emulator.setWebhookUrl(receiver.url)
    const session = await stripe.checkout.sessions.create({
      mode: 'payment',
      success_url: 'https://shop.example/ok',
      line_items: [
        {
          quantity: 1,
          price_data: { currency: 'usd', unit_amount: 700, product_data: { name: 'Pass' } },
        },
      ],
    })
    emulator.completeCheckoutSession(session.id)
    await emulator.waitForDeliveries()

    const types = receiver.received.map((delivery) => eventOf(delivery.payload).type)
    expect(types).toEqual([
      'payment_intent.created',
      'charge.succeeded',
      'payment_intent.succeeded',
      'checkout.session.completed',
    ])
    const completed = receiver.received[3]!
    const event = stripe.webhooks.constructEvent(
      completed.payload,
      completed.signature,
      emulator.webhookSecret,
      300,
    )
    expect(event.type).toBe('checkout.session.completed')
    if (event.type !== 'checkout.session.completed') return
    expect(event.data.object).toMatchObject({
      id: session.id,
      status: 'complete',
      payment_status: 'paid',
    })
    expect(completed.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/)

    const tampered = completed.payload.replace('"paid"', '"unpaid"')
    expect(() =>
      stripe.webhooks.constructEvent(tampered, completed.signature, emulator.webhookSecret, 300),
    ).toThrow(Stripe.errors.StripeSignatureVerificationError)
    expect(() =>
      stripe.webhooks.constructEvent(completed.payload, completed.signature, 'whsec_other', 300),
    ).toThrow(Stripe.errors.StripeSignatureVerificationError)

    const listed = await stripe.events.retrieve(event.id)
    expect(listed.type).toBe('checkout.session.completed')
  })

  test('duplicates carry the same event id, each validly signed', async () => {
    emulator.setWebhookUrl(receiver.url)
    const customer = emulator.seedCustomer({ email: 'dup@example.com' })
    const invoice = emulator.seedInvoice({
      customer: String(customer.id),
      amountDue: 1200,
      status: 'paid',
    })
    const event = emulator.sendEvent('invoice.paid', String(invoice.id), { duplicate: 2 })
    await emulator.waitForDeliveries()

    expect(receiver.received).toHaveLength(3)
    for (const delivery of receiver.received) {
      const verified = stripe.webhooks.constructEvent(
        delivery.payload,
        delivery.signature,
        emulator.webhookSecret,
      )
      expect(verified.id).toBe(event.id)
    }
  })

  test('held events go out in reverse order on demand', async () => {
    emulator.setWebhookUrl(receiver.url)
    emulator.setWebhookDelivery('manual')
    const object: JsonObject = { id: 'pi_123', object: 'payment_intent' }
    const sent = [
      'payment_intent.created',
      'payment_intent.processing',
      'payment_intent.succeeded',
    ].map((type) => emulator.sendEvent(type, object).id)
    expect(emulator.outbox).toHaveLength(3)
    expect(receiver.received).toHaveLength(0)

    const attempts = await emulator.deliverOutbox({ order: 'reverse' })
    expect(attempts.every((attempt) => attempt.ok)).toBe(true)
    expect(receiver.received.map((delivery) => eventOf(delivery.payload).id)).toEqual(
      sent.reverse(),
    )
    expect(emulator.outbox).toHaveLength(0)
  })

  test('late: an old signature fails the tolerance; a delayed event arrives after a later one', async () => {
    emulator.setWebhookUrl(receiver.url)
    const object: JsonObject = { id: 'cs_test_1', object: 'checkout.session' }
    emulator.sendEvent('checkout.session.completed', object, { timestampOffsetSeconds: -600 })
    await emulator.waitForDeliveries()
    const old = receiver.received[0]!
    expect(() =>
      stripe.webhooks.constructEvent(old.payload, old.signature, emulator.webhookSecret, 300),
    ).toThrow(/tolerance/)

    receiver.received.length = 0
    const late = emulator.sendEvent('checkout.session.expired', object, { delayMs: 150 }).id
    const prompt = emulator.sendEvent('checkout.session.completed', object).id
    await emulator.waitForDeliveries()
    expect(receiver.received.map((delivery) => eventOf(delivery.payload).id)).toEqual([
      prompt,
      late,
    ])
  })

  test('retries until a 2xx, and gives up after maxAttempts', async () => {
    emulator.setWebhookUrl(receiver.url)
    emulator.setWebhookRetry({ maxAttempts: 3, backoffMs: 5 })
    receiver.answers.push(500, 503)
    emulator.sendEvent('invoice.paid', { id: 'in_1', object: 'invoice' })
    await emulator.waitForDeliveries()
    expect(emulator.deliveries.map((attempt) => [attempt.attempt, attempt.status])).toEqual([
      [1, 500],
      [2, 503],
      [3, 200],
    ])

    receiver.answers.push(500, 500, 500)
    emulator.sendEvent('invoice.paid', { id: 'in_2', object: 'invoice' })
    await emulator.waitForDeliveries()
    expect(emulator.deliveries.slice(3).map((attempt) => attempt.ok)).toEqual([false, false, false])
  })

  test('the signature is the one stripe-node would compute', () => {
    const payload = '{"id":"evt_1"}'
    const header = signatureHeader(payload, 'whsec_test', 1_700_000_000)
    expect(header).toBe(
      stripe.webhooks.generateTestHeaderString({
        payload,
        secret: 'whsec_test',
        timestamp: 1_700_000_000,
      }),
    )
  })
})

describe('refunds', () => {
  test('partial, then the rest; a third refund and an oversized one are refused', async () => {
    const intent = await stripe.paymentIntents.create({
      amount: 5000,
      currency: 'usd',
      payment_method: 'pm_card_visa',
      confirm: true,
    })
    const partial = await stripe.refunds.create({
      payment_intent: intent.id,
      amount: 2000,
      metadata: { refund_id: 're_local_1' },
    })
    expect(partial).toMatchObject({
      object: 'refund',
      status: 'succeeded',
      amount: 2000,
      payment_intent: intent.id,
      charge: intent.latest_charge,
      metadata: { refund_id: 're_local_1' },
    })
    expect(partial.id).toMatch(/^re_/)
    let charge = await stripe.charges.retrieve(String(intent.latest_charge))
    expect(charge).toMatchObject({ amount_refunded: 2000, refunded: false })

    const tooMuch = await rejection(
      stripe.refunds.create({ payment_intent: intent.id, amount: 3001 }),
    )
    expect(tooMuch).toMatchObject({ statusCode: 400, param: 'amount' })

    const rest = await stripe.refunds.create({ payment_intent: intent.id })
    expect(rest.amount).toBe(3000)
    charge = await stripe.charges.retrieve(String(intent.latest_charge))
    expect(charge).toMatchObject({ amount_refunded: 5000, refunded: true })
    expect((await stripe.refunds.retrieve(rest.id)).id).toBe(rest.id)

    const again = await rejection(stripe.refunds.create({ payment_intent: intent.id }))
    expect(again).toMatchObject({ code: 'charge_already_refunded' })
    expect(emulator.listEvents('charge.refunded')).toHaveLength(2)
  })
})

describe('request handling', () => {
  test('the same Idempotency-Key and body replays; another body is an idempotency error', async () => {
    const first = await stripe.customers.create(
      { email: 'once@example.com' },
      { idempotencyKey: 'create-once' },
    )
    const replay = await stripe.customers.create(
      { email: 'once@example.com' },
      { idempotencyKey: 'create-once' },
    )
    expect(replay.id).toBe(first.id)
    expect(replay.lastResponse.headers['idempotent-replayed']).toBe('true')
    expect(replay.lastResponse.headers['original-request']).toBe(first.lastResponse.requestId)
    expect(replay.lastResponse.requestId).not.toBe(first.lastResponse.requestId)

    const conflict = await rejection(
      stripe.customers.create({ email: 'other@example.com' }, { idempotencyKey: 'create-once' }),
    )
    expect(conflict).toBeInstanceOf(Stripe.errors.StripeIdempotencyError)
    expect((await stripe.customers.list()).data).toHaveLength(1)
  })

  test('a declined charge is replayed as the same 402', async () => {
    const { customer, paymentMethod } = await customerWithCard('pm_card_visa_chargeDeclined')
    const params = {
      amount: 1000,
      currency: 'usd',
      customer: customer.id,
      payment_method: paymentMethod.id,
      off_session: true,
      confirm: true,
    }
    const first = await rejection(stripe.paymentIntents.create(params, { idempotencyKey: 'k-402' }))
    const second = await rejection(
      stripe.paymentIntents.create(params, { idempotencyKey: 'k-402' }),
    )
    if (!(first instanceof Stripe.errors.StripeCardError)) throw first
    if (!(second instanceof Stripe.errors.StripeCardError)) throw second
    expect(second.payment_intent?.id).toBe(first.payment_intent?.id)
    expect((await stripe.paymentIntents.list()).data).toHaveLength(1)
  })

  test('a wrong API key is a StripeAuthenticationError', async () => {
    const wrong = new Stripe('sk_test_wrong_key_1234', emulator.stripeConfig())
    const error = await rejection(wrong.customers.list())
    expect(error).toBeInstanceOf(Stripe.errors.StripeAuthenticationError)
    if (!(error instanceof Stripe.errors.StripeAuthenticationError)) return
    expect(error.message).toMatch(/^Invalid API Key provided: sk_test_\*+1234$/)
    expect(error.requestId).toMatch(/^req_/)
  })

  test('failNext answers api_error; only the matching path and count', async () => {
    emulator.failNext({ status: 500, pathPrefix: '/v1/payment_intents' })
    expect((await stripe.customers.list()).object).toBe('list')
    const error = await rejection(stripe.paymentIntents.list())
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError)
    expect(error).toMatchObject({ statusCode: 500, rawType: 'api_error' })
    expect((await stripe.paymentIntents.list()).object).toBe('list')

    emulator.failNext({ status: 503, count: 2 })
    const retrying = new Stripe(emulator.secretKey, emulator.stripeConfig({ maxNetworkRetries: 2 }))
    expect((await retrying.customers.list()).object).toBe('list')
    expect(emulator.requests.slice(-3).map((entry) => entry.status)).toEqual([503, 503, 200])
  })

  test('timeoutNext makes the SDK give up with a StripeConnectionError', async () => {
    const impatient = new Stripe(emulator.secretKey, { ...emulator.stripeConfig(), timeout: 200 })
    emulator.timeoutNext({ ms: 2000 })
    const error = await rejection(impatient.customers.create({ email: 'slow@example.com' }))
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError)
    expect((await stripe.customers.list()).data).toHaveLength(0)
  })

  test('a timeout after processing: the retry with the same key gets the original answer', async () => {
    const impatient = new Stripe(emulator.secretKey, { ...emulator.stripeConfig(), timeout: 200 })
    emulator.timeoutNext({ ms: 2000, afterProcessing: true })
    const lost = await rejection(
      impatient.customers.create({ email: 'lost@example.com' }, { idempotencyKey: 'lost-1' }),
    )
    expect(lost).toBeInstanceOf(Stripe.errors.StripeConnectionError)
    const retried = await stripe.customers.create(
      { email: 'lost@example.com' },
      { idempotencyKey: 'lost-1' },
    )
    expect(retried.lastResponse.headers['idempotent-replayed']).toBe('true')
    expect((await stripe.customers.list()).data.map((customer) => customer.id)).toEqual([
      retried.id,
    ])
  })

  test('raw HTTP: bracketed form bodies, request-id on every answer, Stripe error shapes', async () => {
    const auth = { authorization: `Bearer ${emulator.secretKey}` }
    const body =
      'mode=payment&line_items[0][quantity]=3&line_items[0][price_data][currency]=eur' +
      '&line_items[0][price_data][unit_amount]=400&line_items[0][price_data][product_data][name]=Mug' +
      '&metadata[order]=42&expand[]=line_items'
    const created = await fetch(`${emulator.url}/v1/checkout/sessions`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    })
    expect(created.status).toBe(200)
    expect(created.headers.get('request-id')).toMatch(/^req_/)
    expect(await created.json()).toMatchObject({
      amount_total: 1200,
      currency: 'eur',
      metadata: { order: '42' },
      line_items: { object: 'list', data: [{ quantity: 3, description: 'Mug' }] },
    })

    const unknown = await fetch(`${emulator.url}/v1/nothing_here`, { headers: auth })
    expect(unknown.status).toBe(404)
    expect(unknown.headers.get('request-id')).toMatch(/^req_/)
    expect(await unknown.json()).toMatchObject({
      error: {
        type: 'invalid_request_error',
        message: expect.stringContaining('Unrecognized request URL (GET: /v1/nothing_here)'),
      },
    })

    const anonymous = await fetch(`${emulator.url}/v1/customers`)
    expect(anonymous.status).toBe(401)
    expect(await anonymous.json()).toMatchObject({ error: { type: 'invalid_request_error' } })
  })
})

describe('switches over HTTP and the hosted pages', () => {
  test('the hosted Checkout page takes a test card and redirects to success_url', async () => {
    const session = await stripe.checkout.sessions.create({
      mode: 'payment',
      success_url: 'https://shop.example/done?session={CHECKOUT_SESSION_ID}',
      line_items: [
        {
          quantity: 1,
          price_data: { currency: 'usd', unit_amount: 990, product_data: { name: 'Book' } },
        },
      ],
    })
    const page = await fetch(String(session.url))
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('pm_card_chargeDeclinedInsufficientFunds')

    const declined = await fetch(String(session.url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'payment_method=pm_card_chargeDeclinedInsufficientFunds&email=reader%40example.com',
      redirect: 'manual',
    })
    expect(declined.status).toBe(402)
    expect(await declined.text()).toContain('Your card has insufficient funds.')

    const paid = await fetch(String(session.url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'payment_method=pm_card_visa&email=reader%40example.com',
      redirect: 'manual',
    })
    expect(paid.status).toBe(303)
    expect(paid.headers.get('location')).toBe(`https://shop.example/done?session=${session.id}`)
    const done = await stripe.checkout.sessions.retrieve(session.id)
    expect(done).toMatchObject({
      status: 'complete',
      customer_details: { email: 'reader@example.com' },
    })
  })

  test('/_emulator controls take JSON: seed, fault, complete, send an event', async () => {
    const control = (path: string, body: object) =>
      fetch(`${emulator.url}/_emulator${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    const customer: unknown = await (
      await control('/seed/customers', { email: 'c@example.com' })
    ).json()
    if (typeof customer !== 'object' || customer === null || !('id' in customer)) throw new Error()
    const seeded = await control('/seed/invoices', {
      customer: customer.id,
      amount_due: 3100,
      lines: [{ description: 'Hosting', amount: 3100 }],
    })
    expect(await seeded.json()).toMatchObject({
      object: 'invoice',
      amount_due: 3100,
      status: 'open',
    })

    expect((await control('/faults', { kind: 'fail', status: 502 })).status).toBe(200)
    const failed = await rejection(stripe.invoices.list())
    expect(failed).toMatchObject({ statusCode: 502 })

    const session = await stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [
        {
          quantity: 1,
          price_data: { currency: 'gbp', unit_amount: 500, product_data: { name: 'Tea' } },
        },
      ],
    })
    const completed = await control(`/checkout/sessions/${session.id}/complete`, {
      payment_method: 'pm_card_mastercard',
    })
    expect(await completed.json()).toMatchObject({
      session: { status: 'complete' },
      payment_intent: { status: 'succeeded', currency: 'gbp' },
      error: null,
    })

    emulator.setWebhookUrl(receiver.url)
    const sent = await control('/events', {
      type: 'customer.subscription.deleted',
      object: { id: 'sub_123', object: 'subscription', status: 'canceled' },
      duplicate: 1,
    })
    expect(sent.status).toBe(200)
    await emulator.waitForDeliveries()
    expect(receiver.received).toHaveLength(2)
  })

  test('a session past expires_at expires when next read, on the emulator clock', async () => {
    let now = new Date('2030-01-01T00:00:00Z')
    const timed = await startStripeEmulator({ clock: { now: () => now } })
    try {
      const client = new Stripe(timed.secretKey, timed.stripeConfig())
      const session = await client.checkout.sessions.create({
        mode: 'payment',
        expires_at: Math.floor(now.getTime() / 1000) + 3600,
        line_items: [
          {
            quantity: 1,
            price_data: { currency: 'usd', unit_amount: 500, product_data: { name: 'X' } },
          },
        ],
      })
      expect(session.created).toBe(Math.floor(now.getTime() / 1000))
      now = new Date(now.getTime() + 3601 * 1000)
      expect((await client.checkout.sessions.retrieve(session.id)).status).toBe('expired')
      expect(timed.listEvents('checkout.session.expired')).toHaveLength(1)
    } finally {
      await timed.close()
    }
  })

  test('a reset connection: stripe-node retries once by itself, then reports it', async () => {
    emulator.timeoutNext({ mode: 'destroy', count: 2, pathPrefix: '/v1/customers' })
    const error = await rejection(stripe.customers.list())
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError)
    expect(emulator.requests.filter((entry) => entry.fault === 'timeout')).toHaveLength(2)
  })
})

describe('invoices and seeded history', () => {
  test('lists page through seeded invoices with starting_after and has_more', async () => {
    const customer = String(emulator.seedCustomer({ email: 'history@example.com' }).id)
    const start = 1_700_000_000
    const seeded = Array.from(
      { length: 25 },
      (_, index) =>
        emulator.seedInvoice({ customer, amountDue: 100 * (index + 1), created: start + index }).id,
    )
    const page = await stripe.invoices.list({ customer, limit: 10 })
    expect(page).toMatchObject({ object: 'list', has_more: true, url: '/v1/invoices' })
    expect(page.data.map((invoice) => invoice.id)).toEqual(seeded.slice(-10).reverse())

    const next = await stripe.invoices.list({
      customer,
      limit: 10,
      starting_after: page.data[9]?.id,
    })
    expect(next.data[0]?.id).toBe(seeded[14])

    const all = await stripe.invoices.list({ limit: 7 }).autoPagingToArray({ limit: 100 })
    expect(all.map((invoice) => invoice.id)).toEqual([...seeded].reverse())

    const early = await stripe.invoices.list({ created: { lt: start + 5 } })
    expect(early.data).toHaveLength(5)
  })

  test('products, prices, subscriptions, schedules and balance transactions list as seeded', async () => {
    const customer = String(emulator.seedCustomer().id)
    const product = String(emulator.seedProduct({ name: 'Pro plan' }).id)
    const monthly = emulator.seedPrice({
      product,
      unitAmount: 2000,
      recurring: { interval: 'month', intervalCount: 1 },
    })
    const subscription = emulator.seedSubscription({
      customer,
      items: [{ price: String(monthly.id) }],
    })
    emulator.seedSubscription({
      customer,
      items: [{ price: String(monthly.id) }],
      status: 'canceled',
    })
    emulator.seedSubscriptionSchedule({
      customer,
      subscription: String(subscription.id),
      phases: [{ startDate: 1, endDate: 2_000_000_000, items: [{ price: String(monthly.id) }] }],
    })
    emulator.seedBalanceTransaction({ amount: 2000, fee: 88, source: 'ch_old' })

    expect((await stripe.products.list()).data.map((item) => item.name)).toEqual(['Pro plan'])
    const prices = await stripe.prices.list({ product })
    expect(prices.data[0]).toMatchObject({ unit_amount: 2000, type: 'recurring' })
    const active = await stripe.subscriptions.list({ customer })
    expect(active.data).toHaveLength(1)
    expect(active.data[0]?.items.data[0]?.price.id).toBe(monthly.id)
    expect((await stripe.subscriptions.list({ customer, status: 'all' })).data).toHaveLength(2)
    const schedules = await stripe.subscriptionSchedules.list({ customer })
    expect(schedules.data[0]?.subscription).toBe(subscription.id)
    const transactions = await stripe.balanceTransactions.list()
    expect(transactions.data[0]).toMatchObject({ amount: 2000, fee: 88, net: 1912 })
  })

  test('pay: out of band, with the default card, and a decline', async () => {
    const customer = String(emulator.seedCustomer({ email: 'payer@example.com' }).id)
    const offline = emulator.seedInvoice({ customer, amountDue: 4200 })
    const paidOffline = await stripe.invoices.pay(String(offline.id), { paid_out_of_band: true })
    expect(paidOffline).toMatchObject({ status: 'paid', amount_paid: 4200, amount_remaining: 0 })
    expect(paidOffline.status_transitions.paid_at).not.toBeNull()
    const again = await rejection(stripe.invoices.pay(String(offline.id)))
    expect(again).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError)

    emulator.seedPaymentMethod(customer, 'pm_card_visa', { makeDefault: true })
    const charged = await stripe.invoices.pay(
      String(emulator.seedInvoice({ customer, amountDue: 1500 }).id),
    )
    expect(charged).toMatchObject({ status: 'paid', amount_paid: 1500, attempt_count: 1 })

    const declining = emulator.seedPaymentMethod(
      customer,
      'pm_card_chargeDeclinedInsufficientFunds',
    )
    const open = String(emulator.seedInvoice({ customer, amountDue: 1500 }).id)
    const declined = await rejection(
      stripe.invoices.pay(open, { payment_method: String(declining.id) }),
    )
    expect(declined).toMatchObject({ statusCode: 402, decline_code: 'insufficient_funds' })
    expect(await stripe.invoices.retrieve(open)).toMatchObject({ status: 'open', attempt_count: 1 })
  })
})

describe('form encoding', () => {
  test.each([
    ['a=1&b=2', { a: '1', b: '2' }],
    ['metadata[key]=v&metadata[other]=', { metadata: { key: 'v', other: '' } }],
    ['a[b][c]=1', { a: { b: { c: '1' } } }],
    ['expand[]=x&expand[]=y', { expand: ['x', 'y'] }],
    ['items[1][q]=2&items[0][q]=1', { items: [{ q: '1' }, { q: '2' }] }],
    [
      'line_items[0][price_data][currency]=usd&line_items[0][quantity]=1',
      { line_items: [{ price_data: { currency: 'usd' }, quantity: '1' }] },
    ],
    ['name=Jenny+Rosen&email=j%40example.com', { name: 'Jenny Rosen', email: 'j@example.com' }],
    ['a%5Bb%5D=1', { a: { b: '1' } }],
  ])('%s', (encoded, expected) => {
    expect(parseForm(encoded)).toEqual(expected)
  })

  test('__proto__ stays data', () => {
    const parsed = parseForm('__proto__[polluted]=yes&a[__proto__][x]=1')
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype)
    expect(({} as { polluted?: string }).polluted).toBeUndefined()
  })

  test('a key that is both a value and a hash is refused', () => {
    expect(() => parseForm('a=1&a[b]=2')).toThrow(/Invalid value/)
  })
})
