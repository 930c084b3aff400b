/**
 * Races between processing a payment and changing it (cancel, delete, another card): the
 * provider is asked outside any lock, so what the payment became meanwhile is checked again
 * when the answer is recorded.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { sandboxGateway } from '../../src/gateways/sandbox/sandbox.gateway.ts'
import { savePaymentMethod } from '../../src/modules/payment-methods/service.ts'
import { opener } from '../async-helpers.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'
import {
  createSandboxLink,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
  payOffline,
  payrailLockWaits,
  sessionOf,
  submitCard,
  unprocessedCardPayment,
} from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function sessionRowOf(paymentId: string) {
  const { rows } = await ctx.pool.query<{ id: string; status: string }>(
    'select id, status from sandbox_sessions where payment_id = $1',
    [paymentId],
  )
  return rows[0]
}

/**
 * Holds `POST /v1/payments/:id/process` of a sandbox page between its first transaction and
 * its page: the sandbox's session insert waits on this uncommitted row of the same payment
 * (with no foreign-key check, which would lock the payment row). `release` lets it go on.
 */
async function blockSessionOf(payment: { id: string; customer_id: string }) {
  const client = await ctx.pool.connect()
  await client.query('begin')
  await client.query('set local session_replication_role = replica')
  await client.query(
    `insert into sandbox_sessions (id, environment_id, tenant_id, payment_id, customer_id, mode, status, amount, currency, expires_at)
     values ('sbs_blocker_' || md5(random()::text), $1, $2, $3, $4, 'card', 'open', 10000, 'usd', now() + interval '1 day')`,
    [ctx.main.test.id, ctx.main.tenant.id, payment.id, payment.customer_id],
  )
  return {
    async release() {
      await client.query('rollback')
      client.release()
    },
  }
}

/** An unprocessed (INITIATED) sandbox link of a new invoice of 100.00. */
async function unprocessedLink() {
  const { invoice } = await invoiceToPay(ctx)
  const created = await createSandboxLink(ctx, invoice, '100.00', { process_payment: false })
  expect(created.status, created.text).toBe(201)
  return { invoice, payment: created.body }
}

describe('cancel while process opens the page', () => {
  test('a cancel that read the payment before its page was recorded is refused (409), and cancelling again withdraws the page', async () => {
    const { invoice, payment: created } = await unprocessedLink()
    const blocker = await blockSessionOf(created)
    const paymentLock = await ctx.pool.connect()
    try {
      const processing = ctx.post<PaymentBody>(`/v1/payments/${created.id}/process`)
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 1)
      // The payment row is held, so that process, once its page is open, waits to record it.
      await paymentLock.query('begin')
      await paymentLock.query('select id from payments where id = $1 for no key update', [
        created.id,
      ])
      await blocker.release()
      await waitFor(async () => (await sessionRowOf(created.id)) !== undefined)
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 1)
      // The cancel reads the payment now: INITIATED, no page yet. It then waits behind process.
      const cancelling = ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${created.id}/cancel`)
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 2)
      await paymentLock.query('commit')
      const [processed, cancelled] = await Promise.all([processing, cancelling])
      expect(processed.status, processed.text).toBe(200)
      // Before, the cancel moved the payment to CANCELLED with the page left open, and the
      // customer's card was taken on it with the invoice unpaid.
      expect(cancelled.status, cancelled.text).toBe(409)
      expect((cancelled.body as ErrorBody).error.code).toBe('conflict')
      expect((await getPayment(ctx, created.id)).payment_status).toBe('PENDING')
      const again = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/cancel`)
      expect(again.status, again.text).toBe(200)
      expect(again.body.payment_status).toBe('CANCELLED')
      expect((await sessionRowOf(created.id))?.status).toBe('expired')
      const paid = await submitCard(ctx, sessionOf(processed.body), '4242424242424242')
      expect(paid.statusCode).not.toBe(200)
      expect((await getInvoice(ctx, invoice.id)).amount_paid).toBe('0.00')
    } finally {
      paymentLock.release()
    }
  })

  test('process and cancel sent at once, 40 times: a page handed out never takes a card on a CANCELLED payment', async () => {
    const leaks: string[] = []
    for (let round = 0; round < 40; round++) {
      const { payment } = await unprocessedLink()
      const processing = ctx.post<PaymentBody>(`/v1/payments/${payment.id}/process`)
      await new Promise((resolve) => setTimeout(resolve, round % 15))
      const cancelling = ctx.post(`/v1/payments/${payment.id}/cancel`)
      const [processed, cancelled] = await Promise.all([processing, cancelling])
      expect([200, 409, 422]).toContain(processed.status)
      expect([200, 409]).toContain(cancelled.status)
      const after = await getPayment(ctx, payment.id)
      const session = await sessionRowOf(payment.id)
      // A CANCELLED payment never has a page that is still open, handed out or not.
      if (after.payment_status === 'CANCELLED' && session?.status === 'open')
        leaks.push(`${payment.id}: page open on a CANCELLED payment`)
      if (processed.status === 200 && after.payment_status === 'CANCELLED') {
        const paid = await submitCard(ctx, sessionOf(processed.body), '4242424242424242')
        if (paid.statusCode === 200) leaks.push(`${payment.id}: card taken on a CANCELLED payment`)
      }
    }
    expect(leaks).toEqual([])
  })
})

describe('delete while process opens the page', () => {
  test('process is refused (409) and its page withdrawn: a deleted payment takes no money, and its invoice can be voided', async () => {
    const { invoice, payment: created } = await unprocessedLink()
    const blocker = await blockSessionOf(created)
    const processing = ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${created.id}/process`)
    try {
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 1)
      // process has checked the payment (INITIATED, active) and is opening its page.
      const deleted = await ctx.delete<PaymentBody>(`/v1/payments/${created.id}`)
      expect(deleted.status, deleted.text).toBe(200)
      expect(deleted.body.active).toBe(false)
    } finally {
      await blocker.release()
    }
    const processed = await processing
    // Before, the deleted payment took the page (PENDING) and then the card on a voided invoice.
    expect(processed.status, processed.text).toBe(409)
    expect((processed.body as ErrorBody).error.message).toMatch(/was deleted while its page/)
    expect(await sessionRowOf(created.id)).toMatchObject({ status: 'expired' })
    expect((await ctx.post(`/v1/invoices/${invoice.id}/void`)).status).toBe(200)
    const after = await getPayment(ctx, created.id)
    expect(after).toMatchObject({ active: false, payment_status: 'INITIATED', payment_url: null })
    expect((await getInvoice(ctx, invoice.id)).invoice_status).toBe('VOIDED')
  })
})

describe('a card changed while process charges', () => {
  test('process is refused (409) and no card charged; processed again, it charges the card the payment names', async () => {
    const { payment } = await unprocessedCardPayment(ctx)
    // A second saved card of the customer (the provider holds it too).
    const sandboxCardB = `sbcard_b_${payment.id}`
    await ctx.pool.query(
      `insert into sandbox_cards (id, environment_id, customer_id, number, brand, last4, exp_month, exp_year, created_at)
       values ($1, $2, $3, '4242424242424242', 'visa', '4242', 12, 2030, now())`,
      [sandboxCardB, ctx.main.test.id, payment.customer_id],
    )
    const cardB = await savePaymentMethod(ctx.db, ctx.scope, {
      customerId: payment.customer_id,
      gateway: 'sandbox',
      gatewayPaymentMethodId: sandboxCardB,
      last4: '4242',
    })
    expect(payment.payment_method_id).not.toBe(cardB.id)
    // Reads of saved cards wait: process has read the payment (card A) and waits to read
    // its card; the PATCH holds the payment's lock and waits to check card B.
    const tableLock = await ctx.pool.connect()
    let processing: Promise<{ status: number; text: string; body: PaymentBody | ErrorBody }>
    let patching: Promise<{ status: number; text: string; body: PaymentBody }>
    try {
      await tableLock.query('begin')
      await tableLock.query('lock table payment_methods in access exclusive mode')
      processing = ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${payment.id}/process`)
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 1)
      patching = ctx.patch<PaymentBody>(`/v1/payments/${payment.id}`, {
        payment_method_id: cardB.id,
      })
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 2)
    } finally {
      await tableLock.query('commit')
      tableLock.release()
    }
    const [processed, patched] = await Promise.all([processing, patching])
    expect(patched.status, patched.text).toBe(200)
    // Before, card A was charged on a payment that names card B.
    expect(processed.status, processed.text).toBe(409)
    const charged = async () =>
      (
        await ctx.pool.query<{ card: string }>(
          `select payload->'data'->'card'->>'id' as card from webhook_events
           where event_type = 'charge.succeeded' and payload->'data'->>'payment_id' = $1`,
          [payment.id],
        )
      ).rows.map((r) => r.card)
    expect(await charged()).toEqual([])
    expect((await getPayment(ctx, payment.id)).payment_status).toBe('INITIATED')
    const again = await ctx.post<PaymentBody>(`/v1/payments/${payment.id}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ payment_status: 'SUCCEEDED', payment_method_id: cardB.id })
    expect(await charged()).toEqual([sandboxCardB])
  })
})

describe('what the invoice owes changes while process opens the page', () => {
  /**
   * Processes an unprocessed sandbox link of a 100.00 invoice while `meanwhile` runs between
   * the check before its page and the page's record: the page is open at the provider, not
   * yet the payment's.
   */
  async function whileThePageOpens<T>(meanwhile: (invoiceId: string, customerId: string) => T) {
    const { invoice, payment: created } = await unprocessedLink()
    const blocker = await blockSessionOf(created)
    const processing = ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${created.id}/process`)
    let during: Awaited<T>
    try {
      await waitFor(async () => (await payrailLockWaits(ctx)) >= 1)
      during = await meanwhile(invoice.id, created.customer_id)
    } finally {
      await blocker.release()
    }
    return { invoice, created, during, processed: await processing }
  }

  async function newCode(percentOff: number) {
    const res = await ctx.post<{ code: string }>('/v1/discounts', {
      code: `RACE${Date.now()}${Math.floor(Math.random() * 1e6)}`,
      percent_off: percentOff,
    })
    expect(res.status, res.text).toBe(201)
    return res.body.code
  }

  test('a code applied to the payment (PATCH /invoices/:id/payment): its page is withdrawn (409), and processed again it asks the new amount', async () => {
    const code = await newCode(10)
    const { invoice, created, during, processed } = await whileThePageOpens((invoiceId) =>
      ctx.patch<PaymentBody>(`/v1/invoices/${invoiceId}/payment`, { discount_code: code }),
    )
    expect(during.status, during.text).toBe(200)
    expect(during.body).toMatchObject({ id: created.id, amount: '90.00' })
    // Before, the page opened for 100.00 became the payment's, and the customer paid 100.00 of
    // a 90.00 invoice: payment and invoice OVERPAID.
    expect(processed.status, processed.text).toBe(409)
    expect((processed.body as ErrorBody).error).toMatchObject({
      code: 'conflict',
      details: { payment_id: created.id, amount: '90.00', page_amount: '100.00' },
    })
    expect(await sessionRowOf(created.id)).toMatchObject({ status: 'expired' })
    expect(await getPayment(ctx, created.id)).toMatchObject({
      payment_status: 'INITIATED',
      amount: '90.00',
      payment_url: null,
    })
    const again = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ payment_status: 'PENDING', amount: '90.00' })
    const page = await ctx.app.inject({
      method: 'GET',
      url: `/sandbox/checkout/${sessionOf(again.body)}`,
    })
    expect(/class="amount">([^<]*)</.exec(page.body)?.[1]).toBe('90.00 USD')
    const paid = await submitCard(ctx, sessionOf(again.body), '4242424242424242')
    expect(paid.statusCode).toBeLessThan(400)
    expect(await getPayment(ctx, created.id)).toMatchObject({
      payment_status: 'SUCCEEDED',
      amount_paid: '90.00',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_due: '90.00',
      amount_paid: '90.00',
      payment_status: 'SUCCEEDED',
    })
  })

  test('a code taken by another payment (PUT /invoices/:id/payment): the page for the full amount is withdrawn (409), nothing is paid twice', async () => {
    const code = await newCode(10)
    const { invoice, created, during, processed } = await whileThePageOpens(
      (invoiceId, customerId) =>
        ctx.put<PaymentBody>(`/v1/invoices/${invoiceId}/payment`, {
          type: 'PLATFORM',
          account_id: customerId,
          discount_code: code,
        }),
    )
    expect(during.status, during.text).toBe(201)
    expect(during.body.amount).toBe('90.00')
    // Before, the page took 100.00 of the invoice the code had brought down to 90.00.
    expect(processed.status, processed.text).toBe(409)
    expect((processed.body as ErrorBody).error).toMatchObject({
      code: 'conflict',
      details: { invoice_id: invoice.id, still_owed: '90.00', payment_id: created.id },
    })
    expect(await sessionRowOf(created.id)).toMatchObject({ status: 'expired' })
    expect(await getPayment(ctx, created.id)).toMatchObject({
      payment_status: 'INITIATED',
      amount: '100.00',
      payment_url: null,
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_due: '90.00',
      amount_paid: '0.00',
      amount_remaining: '90.00',
    })
  })

  test('an OFFLINE payment of the whole invoice: the page is withdrawn (409), and the invoice is paid once', async () => {
    const { invoice, created, processed } = await whileThePageOpens((invoiceId) =>
      payOffline(ctx, invoiceId, '100.00'),
    )
    // Before, the page became the payment's on the paid invoice, and a card paid it again.
    expect(processed.status, processed.text).toBe(409)
    expect((processed.body as ErrorBody).error.message).toMatch(
      /page opened for payment .* was withdrawn/,
    )
    expect(await sessionRowOf(created.id)).toMatchObject({ status: 'expired' })
    expect((await getPayment(ctx, created.id)).payment_status).toBe('INITIATED')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '100.00',
      payment_status: 'SUCCEEDED',
    })
  })
})

describe('two process calls with a code applied between them', () => {
  test("the sandbox's session, opened by the first for the old amount, is taken by neither; processed again it asks the new one", async () => {
    const { invoice, payment: created } = await unprocessedLink()
    const code = `TWICE${Date.now()}`
    expect((await ctx.post('/v1/discounts', { code, percent_off: 10 })).status).toBe(201)
    // The first call's session (100.00) is opened; its answer is held until the second is done.
    const open = sandboxGateway.createCheckout?.bind(sandboxGateway)
    const { promise: firstOpened, open: opened } = opener()
    const { promise: released, open: release } = opener()
    const spy = vi
      .spyOn(sandboxGateway, 'createCheckout')
      .mockImplementationOnce(async (gctx, request) => {
        if (!open) throw new Error('the sandbox opens no pages')
        const page = await open(gctx, request)
        opened()
        await released
        return page
      })
    try {
      const first = ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${created.id}/process`)
      await firstOpened
      const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
        discount_code: code,
      })
      expect(patched.body.amount).toBe('90.00')
      // The second asks for 90.00 and is given the payment's session as it is: 100.00.
      const second = await ctx.post<PaymentBody | ErrorBody>(`/v1/payments/${created.id}/process`)
      // Before, it became the payment's page, and the customer paid 100.00 of 90.00.
      expect(second.status, second.text).toBe(409)
      expect((second.body as ErrorBody).error.details).toMatchObject({
        amount: '90.00',
        page_amount: '100.00',
      })
      release()
      expect((await first).status).toBe(409)
    } finally {
      release()
      spy.mockRestore()
    }
    expect(await sessionRowOf(created.id)).toMatchObject({ status: 'expired' })
    expect((await getPayment(ctx, created.id)).payment_status).toBe('INITIATED')
    const again = await ctx.post<PaymentBody>(`/v1/payments/${created.id}/process`)
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ payment_status: 'PENDING', amount: '90.00' })
    const paid = await submitCard(ctx, sessionOf(again.body), '4242424242424242')
    expect(paid.statusCode).toBeLessThan(400)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '90.00',
      payment_status: 'SUCCEEDED',
    })
  })
})
