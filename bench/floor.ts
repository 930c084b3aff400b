/**
 * `offline_floor` in bench:micro: an offline payment's database work through Payrail's
 * own repositories and database layer, and Fastify, without Payrail's logic. The route
 * takes an invoice id and makes the repository calls `POST /v1/payments` `OFFLINE` makes
 * (the invoice's lock, with its lines the first time, and the sum of its charges in flight
 * after it in the same round trip; then the held writes: the payment, its allocation, the
 * invoice's update, two history rows and three events, with the `commit`), so PostgreSQL
 * gets the same statements, and answers with a payment's JSON. What it leaves out is what
 * Payrail's logic costs Node beyond that floor: the API key, the body's schema, the checks
 * and the state machine, building the API objects (the payment, the invoice, the events),
 * the response's schema, the logs. Registered by bench:micro only; never part of the server.
 */

import type { FastifyInstance } from 'fastify'
import type { Db } from '../src/db/client.ts'
import { inTransaction } from '../src/db/transaction.ts'
import { insertEvents } from '../src/modules/events/repository.ts'
import { lockInvoice, updateInvoice } from '../src/modules/invoices/repository.ts'
import {
  inFlightAhead,
  inFlightOf,
  insertPayment,
  insertTransition,
  setAllocationApplied,
} from '../src/modules/payments/repository.ts'

export const FLOOR_PATH = '/bench/offline_floor'

let sequence = 0

/** Registers the floor's route on `app` (before it is ready), writing through `db` in `environmentId`. */
export function registerFloor(app: FastifyInstance, db: Db, environmentId: string): void {
  app.post<{ Body: { invoice_id: string } }>(
    FLOOR_PATH,
    { config: { auth: false } },
    async (request, reply) => {
      const invoiceId = request.body.invoice_id
      const body = await inTransaction(db, async (trx) => {
        inFlightAhead(trx, [invoiceId])
        const invoice = await lockInvoice(trx, environmentId, invoiceId)
        if (!invoice) throw new Error(`no invoice ${invoiceId}`)
        await inFlightOf(trx, [invoiceId])
        const now = new Date()
        const n = sequence++
        const id = `pay_floor_${process.pid}_${n}`
        const payment = {
          id,
          // Seven characters: never one of the six Payrail draws for its own payments.
          human_id: `B${n.toString(36).toUpperCase().padStart(6, '0')}`,
          tenant_id: invoice.tenant_id,
          environment_id: invoice.environment_id,
          customer_id: invoice.customer_id,
          destination_type: 'INVOICE' as const,
          destination_id: invoiceId,
          subject: invoiceId,
          amount: 1000n,
          currency: 'usd',
          payment_status: 'SUCCEEDED' as const,
          payment_method_type: 'OFFLINE' as const,
          payment_method_id: null,
          payment_gateway: 'offline',
          success_url: null,
          cancel_url: null,
          save_card_and_make_default: false,
          metadata: '{}',
          gateway_metadata: '{}',
          idempotency_key: null,
          description: null,
          billing_address: null,
          discount_code: null,
          payment_date: null,
          invoice_number: invoice.number,
          invoice_ids: [invoiceId],
          created_by: 'bench',
          updated_by: 'bench',
          created_at: now,
          updated_at: now,
          amount_paid: 1000n,
          succeeded_at: now,
        }
        await insertPayment(trx, payment, [{ invoice_id: invoiceId, position: 0, amount: 1000n }])
        await setAllocationApplied(trx, id, invoiceId, 1000n)
        await updateInvoice(trx, invoiceId, {
          amount_paid: 1000n,
          amount_remaining: 0n,
          payment_status: 'SUCCEEDED',
          paid_at: now,
          next_payment_attempt: null,
          updated_at: now,
        })
        // Columns in the order Payrail's state machine writes them: the same statement text.
        const history = (from: 'INITIATED' | null, to: 'INITIATED' | 'SUCCEEDED') => ({
          payment_id: id,
          from_status: from,
          to_status: to,
          cause: 'api' as const,
          cause_id: 'bench',
          note: from === null ? null : 'POST',
          created_at: now,
        })
        await insertTransition(trx, history(null, 'INITIATED'))
        await insertTransition(trx, history('INITIATED', 'SUCCEEDED'))
        // The API objects as plain copies of the rows: the events carry them, as Payrail's do.
        const json = JSON.stringify({ ...plain(payment), object: 'payment', attempts: [] })
        const invoiceJson = JSON.stringify({ ...plain(invoice), object: 'invoice' })
        await insertEvents(
          trx,
          [
            ['payment.created', 'payment', json],
            ['invoice.paid', 'invoice', invoiceJson],
            ['payment.succeeded', 'payment', json],
          ].map(([type, objectType, data], i) => ({
            id: `evt_floor_${process.pid}_${n}_${i}`,
            tenant_id: payment.tenant_id,
            environment_id: payment.environment_id,
            type: type as string,
            object_type: objectType as string,
            object_id: objectType === 'payment' ? id : invoiceId,
            data: data as string,
            created_at: now,
          })),
        )
        return json
      })
      return reply.code(201).type('application/json').send(body)
    },
  )
}

/** A row's values as JSON takes them (amounts as text), without a replacer function, which costs more. */
function plain(row: object): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(row)) {
    out[key] = typeof value === 'bigint' ? value.toString() : value
  }
  return out
}
