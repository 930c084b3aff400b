/**
 * An invoice's payment status, what it owes, and whether it may be written off, after money
 * that moved in an unusual order: a failure then a part payment, money on a voided invoice,
 * a refund of all it was paid.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createCustomer, finalizedInvoice, payInvoice } from '../fixtures.ts'
import { createTestContext, type TestContext } from '../harness.ts'
import {
  getInvoice,
  getPayment,
  invoiceToPay,
  openSandboxCrypto,
  pagePost,
  payOffline,
} from '../payments-helpers.ts'

let ctx: TestContext
beforeAll(async () => {
  ctx = await createTestContext()
})
afterAll(() => ctx.close())

describe("an invoice's status and amounts agree with its money", () => {
  test('an invoice whose last payment succeeded (in part) is PENDING again, not still FAILED', async () => {
    const { invoice, crypto } = await openSandboxCrypto(ctx)
    const page = String(crypto.body.payment_url).replace(/^https?:\/\/[^/]+/, '')
    expect((await pagePost(ctx, page, 'expire')).statusCode).toBe(200)
    expect((await getPayment(ctx, crypto.body.id)).payment_status).toBe('FAILED')
    expect((await getInvoice(ctx, invoice.id)).payment_status).toBe('FAILED')
    // The customer then pays part of it by bank transfer: its last payment succeeded.
    await payOffline(ctx, invoice.id, '40.00')
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      amount_paid: '40.00',
      amount_remaining: '60.00',
      payment_status: 'PENDING',
    })
  })

  test('money recorded on a voided invoice (a payment in flight when it was voided) leaves it owing nothing', async () => {
    const customer = await createCustomer(ctx)
    const invoice = await finalizedInvoice(ctx, customer.id)
    expect((await ctx.post(`/v1/invoices/${invoice.id}/void`)).status).toBe(200)
    expect((await getInvoice(ctx, invoice.id)).amount_remaining).toBe('0.00')
    // As the reconciliation of a payment in flight when the invoice was voided does
    // (docs/payments.md: recorded on the voided invoice, for the merchant to refund).
    await payInvoice(ctx, invoice.id, 4000n)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      invoice_status: 'VOIDED',
      amount_paid: '40.00',
      amount_remaining: '0.00',
    })
  })

  test('an invoice paid in full and then refunded cannot be marked uncollectible', async () => {
    const { invoice } = await invoiceToPay(ctx)
    const payment = await payOffline(ctx, invoice.id, '100.00')
    expect((await ctx.post(`/v1/payments/${payment.id}/refunds`, {})).status).toBe(201)
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      payment_status: 'REFUNDED',
      amount_remaining: '0.00',
    })
    const res = await ctx.post(`/v1/invoices/${invoice.id}/mark_uncollectible`)
    expect(res.status).toBe(422)
    expect((await getInvoice(ctx, invoice.id)).invoice_status).toBe('FINALIZED')
  })
})
