/**
 * `offline_floor` in bench:micro: an offline payment's database work through Payrail's
 * own database layer and Fastify, without Payrail's logic. The route takes an invoice
 * id and does what `POST /v1/payments` `OFFLINE` sends PostgreSQL (`begin` with the
 * invoice's lock and its lines, the sum of its charges in flight read after it in the
 * same round trip, then the held writes: the payment, its allocation, the invoice's
 * update, two history rows and three events, with the `commit`) and answers with a
 * payment's JSON. What it leaves out is what Payrail's logic costs Node beyond that floor:
 * the API key, the body's schema, the checks and the state machine, building the API
 * objects (the payment, the invoice, the events), the response's schema, the logs.
 * Registered by bench:micro only; never part of the server.
 */

import type { FastifyInstance } from 'fastify'
import { CompiledQuery } from 'kysely'
import type { Db } from '../src/db/client.ts'
import {
  appendRows,
  holdInsert,
  holdUpdate,
  inTransaction,
  readAhead,
  takeReadAhead,
} from '../src/db/transaction.ts'

export const FLOOR_PATH = '/bench/offline_floor'

const LOCK = `select "invoices".*, "l"."id" as "line_id", "l"."position" as "line_position", "l"."description" as "line_description", "l"."quantity" as "line_quantity", "l"."unit_amount" as "line_unit_amount", "l"."amount" as "line_amount", "l"."price_id" as "line_price_id", "l"."period_start" as "line_period_start", "l"."period_end" as "line_period_end" from "invoices" left join "invoice_lines" as "l" on "l"."invoice_id" = "invoices"."id" where "invoices"."environment_id" = $1 and "invoices"."id" = $2 order by "l"."position" for update of "invoices"`
const IN_FLIGHT = `select "payment_allocations"."invoice_id", sum("payment_allocations"."amount") as "total" from "payment_allocations" inner join "payments" on "payments"."id" = "payment_allocations"."payment_id" where "payment_allocations"."invoice_id" in ($1) and "payments"."payment_status" = $2 group by "payment_allocations"."invoice_id"`

let sequence = 0

/** Registers the floor's route on `app` (before it is ready), writing through `db` in `environmentId`. */
export function registerFloor(app: FastifyInstance, db: Db, environmentId: string): void {
  app.post<{ Body: { invoice_id: string } }>(
    FLOOR_PATH,
    { config: { auth: false } },
    async (request, reply) => {
      const invoiceId = request.body.invoice_id
      const body = await inTransaction(db, async (trx) => {
        readAhead(trx, 'in flight', CompiledQuery.raw(IN_FLIGHT, [invoiceId, 'PROCESSING']))
        const { rows } = await trx.executeQuery<Record<string, unknown>>(
          CompiledQuery.raw(LOCK, [environmentId, invoiceId]),
        )
        const invoice = rows[0]
        if (!invoice) throw new Error(`no invoice ${invoiceId}`)
        await takeReadAhead(trx, 'in flight')
        const now = new Date()
        const n = sequence++
        const id = `pay_floor_${process.pid}_${n}`
        const payment = {
          id,
          // Seven characters: never one of the six Payrail draws for its own payments.
          human_id: `B${n.toString(36).toUpperCase().padStart(6, '0')}`,
          tenant_id: invoice.tenant_id as string,
          environment_id: invoice.environment_id as string,
          customer_id: invoice.customer_id as string,
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
          invoice_number: invoice.number as string,
          invoice_ids: [invoiceId],
          created_by: 'bench',
          updated_by: 'bench',
          created_at: now,
          updated_at: now,
          amount_paid: 1000n,
          succeeded_at: now,
        }
        holdInsert(trx, 'payments', { id }, payment)
        holdInsert(
          trx,
          'payment_allocations',
          { payment_id: id, invoice_id: invoiceId },
          {
            invoice_id: invoiceId,
            position: 0,
            amount: 1000n,
            payment_id: id,
            applied_amount: 1000n,
          },
        )
        holdUpdate(
          trx,
          'invoices',
          { id: invoiceId },
          {
            amount_paid: 1000n,
            amount_remaining: 0n,
            payment_status: 'SUCCEEDED',
            paid_at: now,
            next_payment_attempt: null,
            updated_at: now,
          },
        )
        const transition = {
          payment_id: id,
          cause: 'api' as const,
          cause_id: 'bench',
          created_at: now,
        }
        await appendRows(trx, 'payment_transitions', [
          { ...transition, from_status: null, to_status: 'INITIATED', note: null },
          { ...transition, from_status: 'INITIATED', to_status: 'SUCCEEDED', note: 'POST' },
        ])
        // The API objects as plain copies of the rows: the events carry them, as Payrail's do.
        const json = JSON.stringify({ ...plain(payment), object: 'payment', attempts: [] })
        const invoiceJson = JSON.stringify({ ...plain(invoice), object: 'invoice' })
        await appendRows(
          trx,
          'events',
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
