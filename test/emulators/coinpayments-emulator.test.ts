import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  type CoinpaymentsEmulator,
  coinpaymentsHmac,
  type JsonObject,
  type JsonValue,
  startCoinpaymentsEmulator,
  verifyCoinpaymentsHmac,
} from './coinpayments/server.ts'

/** An IPN endpoint that records what it receives and answers the queued statuses (then 200). */
interface Receiver {
  url: string
  received: { body: string; headers: IncomingHttpHeaders }[]
  answers: number[]
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
        if (!response.destroyed) response.writeHead(status).end('IPN OK')
      }, delays.shift() ?? 0)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}/v1/webhooks/coinpayments`,
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

function asObject(value: JsonValue | undefined): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`expected an object, got ${JSON.stringify(value)}`)
  }
  return value
}

let coinpayments: CoinpaymentsEmulator
let receiver: Receiver

interface ApiAnswer {
  status: number
  body: JsonObject
}

/** Posts a raw body with the given HMAC header (or none). */
async function post(body: string, hmac: string | null): Promise<ApiAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
  if (hmac !== null) headers.hmac = hmac
  const response = await fetch(coinpayments.apiUrl, { method: 'POST', headers, body })
  const parsed: JsonValue = JSON.parse(await response.text())
  return { status: response.status, body: asObject(parsed) }
}

/** A signed call as a client of the legacy API makes it. */
function call(cmd: string, fields: Record<string, string> = {}): Promise<ApiAnswer> {
  const body = new URLSearchParams({
    version: '1',
    key: coinpayments.publicKey,
    cmd,
    format: 'json',
    ...fields,
  }).toString()
  return post(body, coinpaymentsHmac(body, coinpayments.privateKey))
}

async function createTransaction(fields: Record<string, string> = {}): Promise<JsonObject> {
  const answer = await call('create_transaction', {
    amount: '10.00',
    currency1: 'USD',
    currency2: 'BTC',
    buyer_email: 'ada@example.com',
    buyer_name: 'Ada',
    item_name: 'A book',
    invoice: 'pay_1',
    custom: 'tenant_1',
    ipn_url: receiver.url,
    success_url: 'https://shop.example/ok',
    cancel_url: 'https://shop.example/cancel',
    ...fields,
  })
  expect(answer.body.error).toBe('ok')
  return asObject(answer.body.result)
}

function txnIdOf(result: JsonObject): string {
  const id = result.txn_id
  if (typeof id !== 'string') throw new Error('no txn_id')
  return id
}

/** The IPNs received, as parsed forms. */
function ipns(): URLSearchParams[] {
  return receiver.received.map((entry) => new URLSearchParams(entry.body))
}

beforeAll(async () => {
  coinpayments = await startCoinpaymentsEmulator({
    publicKey: 'public-key',
    privateKey: 'private-key',
    merchantId: 'merchant-1',
    ipnSecret: 'ipn-secret',
  })
  receiver = await startReceiver()
})

afterAll(async () => {
  await coinpayments.close()
  await receiver.close()
})

beforeEach(async () => {
  // A test may leave an IPN on its way; let it land before the receiver forgets.
  await coinpayments.waitForNotifications()
  coinpayments.reset()
  coinpayments.setNotificationRetry({ maxAttempts: 5, backoffMs: 5, timeoutMs: 500 })
  receiver.received.length = 0
  receiver.answers.length = 0
  receiver.delays.length = 0
})

describe('POST /api.php authentication', () => {
  test.each([
    ['no HMAC header', (body: string) => [body, null] as const, 'No HMAC signature sent.'],
    [
      'an HMAC made with another key',
      (body: string) => [body, coinpaymentsHmac(body, 'other-key')] as const,
      'HMAC signature does not match',
    ],
    [
      'an HMAC of different bytes',
      (body: string) => [`${body}&x=1`, coinpaymentsHmac(body, 'private-key')] as const,
      'HMAC signature does not match',
    ],
  ])('refuses %s', async (_name, tamper, message) => {
    const body = 'version=1&key=public-key&cmd=get_tx_info&format=json&txid=x'
    const [sent, hmac] = tamper(body)
    const answer = await post(sent, hmac)
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual({ error: message, result: [] })
  })

  test('refuses an unknown public key even with a matching HMAC', async () => {
    const body = 'version=1&key=someone-else&cmd=get_tx_info&format=json&txid=x'
    const answer = await post(body, coinpaymentsHmac(body, 'private-key'))
    expect(answer.body).toEqual({ error: 'HMAC signature does not match', result: [] })
  })

  test('refuses another API version and an unknown command', async () => {
    const body = 'version=2&key=public-key&cmd=get_tx_info'
    expect((await post(body, coinpaymentsHmac(body, 'private-key'))).body.error).toMatch(/version/)
    expect((await call('rates')).body.error).toBe('Unknown command')
  })
})

describe('create_transaction and get_tx_info', () => {
  test('creates a transaction with hosted pages on the emulator', async () => {
    const result = await createTransaction()
    expect(result).toMatchObject({
      amount: '0.00020000',
      confirms_needed: '2',
      timeout: 9000,
    })
    const txnId = txnIdOf(result)
    expect(txnId).toMatch(/^CP[A-Z0-9]{24}$/)
    expect(String(result.checkout_url)).toContain(`${coinpayments.url}/index.php?cmd=checkout`)
    const page = await fetch(String(result.checkout_url))
    expect(page.status).toBe(200)
    expect(await page.text()).toContain(txnId)
    expect((await fetch(String(result.status_url))).status).toBe(200)
    expect((await fetch(String(result.qrcode_url))).status).toBe(200)
  })

  test('get_tx_info answers the current state', async () => {
    const txnId = txnIdOf(await createTransaction())
    const answer = await call('get_tx_info', { txid: txnId })
    expect(answer.body).toMatchObject({
      error: 'ok',
      result: {
        status: 0,
        status_text: 'Waiting for buyer funds...',
        type: 'coins',
        coin: 'BTC',
        amount: 20_000,
        amountf: '0.00020000',
        received: 0,
        receivedf: '0.00000000',
        recv_confirms: 0,
      },
    })
    const result = asObject(answer.body.result)
    expect(Number(result.time_expires) - Number(result.time_created)).toBe(9000)
    expect((await call('get_tx_info', { txid: 'CPNOPE' })).body.error).toMatch(/Invalid/)
  })

  test.each([
    ['a missing amount', { amount: '' }, 'Invalid amount'],
    ['a zero amount', { amount: '0' }, 'Invalid amount'],
    ['an unsupported currency', { currency2: 'DOGE' }, 'Invalid or unsupported currency'],
    ['no buyer_email', { buyer_email: '' }, 'buyer_email is required'],
  ])('refuses %s', async (_name, fields, message) => {
    const answer = await call('create_transaction', {
      amount: '10',
      currency1: 'USD',
      currency2: 'BTC',
      buyer_email: 'ada@example.com',
      ...fields,
    })
    expect(answer.body).toEqual({ error: message, result: [] })
  })
})

describe('state transitions and IPNs', () => {
  test('receive (1) then confirm (100), each a signed IPN', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.receive(txnId)
    coinpayments.confirm(txnId)
    await coinpayments.waitForNotifications()
    expect(receiver.received).toHaveLength(2)
    for (const entry of receiver.received) {
      expect(entry.headers['content-type']).toMatch(/^application\/x-www-form-urlencoded/)
      expect(entry.headers.hmac).toBe(coinpaymentsHmac(entry.body, 'ipn-secret'))
      expect(verifyCoinpaymentsHmac(entry.body, 'ipn-secret', String(entry.headers.hmac))).toBe(
        true,
      )
    }
    const [received, complete] = ipns()
    expect(Object.fromEntries(received!)).toMatchObject({
      ipn_version: '1.0',
      ipn_type: 'api',
      ipn_mode: 'hmac',
      merchant: 'merchant-1',
      txn_id: txnId,
      status: '1',
      status_text: 'We have confirmed coin reception from the buyer',
      currency1: 'USD',
      currency2: 'BTC',
      amount1: '10.00000000',
      amount2: '0.00020000',
      buyer_name: 'Ada',
      email: 'ada@example.com',
      item_name: 'A book',
      invoice: 'pay_1',
      custom: 'tenant_1',
      received_amount: '0.00020000',
      received_confirms: '0',
    })
    expect(complete?.get('status')).toBe('100')
    expect(complete?.get('received_confirms')).toBe('2')
    expect(received?.get('ipn_id')).not.toBe(complete?.get('ipn_id'))
  })

  test('a nightly payout confirms with status 2, then 100', async () => {
    const txnId = txnIdOf(await createTransaction())
    expect(coinpayments.confirm(txnId, { payout: 'nightly' })).toMatchObject({
      status: 2,
      status_text: 'Queued for nightly payout',
    })
    expect(coinpayments.confirm(txnId)).toMatchObject({ status: 100 })
  })

  test('cancel sends status -1', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.cancel(txnId)
    await coinpayments.waitForNotifications()
    expect(ipns()[0]?.get('status')).toBe('-1')
    expect(ipns()[0]?.get('status_text')).toBe('Cancelled / Timed Out')
  })

  test.each([
    ['underpayment', 0.5, '0.00010000'],
    ['overpayment', 1.25, '0.00025000'],
  ])('an %s shows in received_amount', async (_name, fraction, received) => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.receive(txnId, { fraction })
    coinpayments.confirm(txnId)
    await coinpayments.waitForNotifications()
    expect(ipns().map((form) => [form.get('status'), form.get('received_amount')])).toEqual([
      ['1', received],
      ['100', received],
    ])
    expect(ipns()[1]?.get('amount2')).toBe('0.00020000')
  })

  test('refuses a transition the status does not allow', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.cancel(txnId)
    expect(() => coinpayments.receive(txnId)).toThrow(/status is -1/)
    expect(() => coinpayments.confirm(txnId)).toThrow(/status is -1/)
  })

  test('the account IPN URL is used when the transaction has none', async () => {
    coinpayments.ipnUrl = receiver.url
    try {
      const txnId = txnIdOf(await createTransaction({ ipn_url: '' }))
      coinpayments.receive(txnId)
      await coinpayments.waitForNotifications()
      expect(ipns()).toHaveLength(1)
    } finally {
      coinpayments.ipnUrl = null
    }
  })
})

describe('IPN delivery and faults', () => {
  test('retries until the receiver answers 2xx', async () => {
    receiver.answers.push(500, 404)
    const txnId = txnIdOf(await createTransaction())
    coinpayments.receive(txnId)
    await coinpayments.waitForNotifications()
    expect(coinpayments.deliveries.map((attempt) => attempt.status)).toEqual([500, 404, 200])
    expect(new Set(receiver.received.map((entry) => entry.body)).size).toBe(1)
  })

  test('retries a receiver that times out, up to maxAttempts', async () => {
    coinpayments.setNotificationRetry({ maxAttempts: 3, timeoutMs: 50 })
    receiver.delays.push(300, 300, 300)
    const txnId = txnIdOf(await createTransaction())
    coinpayments.receive(txnId)
    await coinpayments.waitForNotifications()
    expect(coinpayments.deliveries).toHaveLength(3)
    expect(coinpayments.deliveries.every((attempt) => attempt.status === null)).toBe(true)
  })

  test('badSignatureNext signs the next IPN with a wrong secret', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.badSignatureNext()
    coinpayments.receive(txnId)
    coinpayments.confirm(txnId)
    await coinpayments.waitForNotifications()
    const valid = receiver.received.map((entry) =>
      verifyCoinpaymentsHmac(entry.body, 'ipn-secret', String(entry.headers.hmac)),
    )
    expect(valid).toEqual([false, true])
  })

  test('wrongMerchantNext sends another merchant id, correctly signed', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.wrongMerchantNext()
    coinpayments.receive(txnId)
    coinpayments.confirm(txnId)
    await coinpayments.waitForNotifications()
    expect(ipns().map((form) => form.get('merchant'))).toEqual(['not-merchant-1', 'merchant-1'])
    const first = receiver.received[0]!
    expect(verifyCoinpaymentsHmac(first.body, 'ipn-secret', String(first.headers.hmac))).toBe(true)
  })

  test('duplicateNext delivers the same IPN twice', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.duplicateNext()
    coinpayments.receive(txnId)
    await coinpayments.waitForNotifications()
    expect(receiver.received).toHaveLength(2)
    expect(receiver.received[0]?.body).toBe(receiver.received[1]?.body)
  })

  test('deliverOutOfOrder sends the held IPNs newest first', async () => {
    const txnId = txnIdOf(await createTransaction())
    coinpayments.deliverOutOfOrder(2)
    coinpayments.receive(txnId)
    await coinpayments.waitForNotifications()
    expect(receiver.received).toHaveLength(0)
    coinpayments.confirm(txnId)
    await coinpayments.waitForNotifications()
    expect(ipns().map((form) => form.get('status'))).toEqual(['100', '1'])
  })

  test('failNext answers the status to the next API calls', async () => {
    coinpayments.failNext({ status: 502, count: 2 })
    expect((await call('get_tx_info', { txid: 'x' })).status).toBe(502)
    expect((await call('get_tx_info', { txid: 'x' })).status).toBe(502)
    await createTransaction()
  })

  test('timeoutNext holds the API call, then resets the connection', async () => {
    coinpayments.timeoutNext({ ms: 100 })
    await expect(call('get_tx_info', { txid: 'x' })).rejects.toThrow()
    await createTransaction()
  })
})
