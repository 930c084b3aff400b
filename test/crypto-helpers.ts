import { expect } from 'vitest'
import type { BitpayEmulator } from './emulators/bitpay/emulator.ts'
import type { CoinpaymentsEmulator } from './emulators/coinpayments/emulator.ts'
import type { TestContext } from './harness.ts'
import { unansweredPayment } from './payments-helpers.ts'

/**
 * Serves the test app on a port of its own and makes that its public URL: BitPay and
 * CoinPayments post their notifications to the URL Payrail gives them, built from it.
 * Returns the address.
 */
export async function listenForNotifications(ctx: TestContext): Promise<string> {
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  ctx.deps.config.publicUrl = address
  return address
}

/** Connects the BitPay emulator to the main test environment. */
export async function connectBitpay(ctx: TestContext, bitpay: BitpayEmulator): Promise<void> {
  const res = await ctx.post('/v1/gateway_connections', {
    gateway: 'bitpay',
    credentials: { token: bitpay.token },
    settings: { base_url: bitpay.url },
  })
  expect(res.status, res.text).toBe(201)
}

/** Connects the CoinPayments emulator to the main test environment. */
export async function connectCoinpayments(
  ctx: TestContext,
  cp: CoinpaymentsEmulator,
): Promise<void> {
  const res = await ctx.post('/v1/gateway_connections', {
    gateway: 'coinpayments',
    credentials: {
      public_key: cp.publicKey,
      private_key: cp.privateKey,
      ipn_secret: cp.ipnSecret,
      merchant_id: cp.merchantId,
    },
    settings: { base_url: cp.url },
  })
  expect(res.status, res.text).toBe(201)
}

/**
 * A BitPay payment of 100.00 on `invoiceId` whose invoice BitPay made but whose answer was
 * lost (502, the payment `INITIATED`, tracking nothing), and the id of that lost invoice,
 * whose IPN URL and `orderId` are the payment's, as BitPay would have it.
 */
export async function bitpayPaymentWithLostInvoice(
  ctx: TestContext,
  bitpay: BitpayEmulator,
  address: string,
  invoiceId: string,
): Promise<{ paymentId: string; lostId: string }> {
  bitpay.timeoutNext({ ms: 0 })
  const paymentId = await unansweredPayment(ctx, {
    destination_id: invoiceId,
    payment_method_type: 'CRYPTO',
    payment_gateway: 'bitpay',
  })
  const lost = await fetch(`${bitpay.url}/invoices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-accept-version': '2.0.0' },
    body: JSON.stringify({
      token: bitpay.token,
      price: 100,
      currency: 'USD',
      orderId: paymentId,
      notificationURL: `${address}/v1/webhooks/bitpay/${ctx.main.tenant.id}/${ctx.main.test.id}`,
      extendedNotifications: true,
    }),
  })
  const lostId = String(((await lost.json()) as { data: { id: string } }).data.id)
  return { paymentId, lostId }
}
