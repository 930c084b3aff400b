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
 *
 * `offline_floor_grouped` takes the same requests and writes them by groups of concurrent
 * ones, each group in one transaction (docs/performance.md, eighteenth session): what
 * grouping would save. A measurement, not a write path: a failure fails the whole group,
 * and nothing keeps two requests for one invoice apart.
 */

import type { FastifyInstance } from 'fastify'
import type { Db } from '../src/db/client.ts'
import type { Invoice } from '../src/db/database.ts'
import { StatementCache } from '../src/db/statement-cache.ts'
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
/** `offline_floor_grouped`: the same payments, written by groups of concurrent requests in one transaction. */
export const GROUPED_FLOOR_PATH = '/bench/offline_floor_grouped'

/** Largest group (`BENCH_GROUP_SIZE`, default 8) and groups in flight at once (`BENCH_GROUPS_IN_FLIGHT`, default 2). */
const GROUP_SIZE = Number(process.env.BENCH_GROUP_SIZE ?? 8)
const GROUPS_IN_FLIGHT = Number(process.env.BENCH_GROUPS_IN_FLIGHT ?? 2)

const STATEMENTS = new StatementCache()

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
        return writeFloorPayment(trx, invoice)
      })
      return reply.code(201).type('application/json').send(body)
    },
  )

  // Requests wait while GROUPS_IN_FLIGHT groups are out; the next group takes up to
  // GROUP_SIZE of them: one lock of their invoices, one sum, one statement of every
  // request's held writes with the commit.
  const queue: { invoiceId: string; done: (error: unknown, json?: string) => void }[] = []
  let inFlight = 0
  const groupSizes: number[] = []
  const runGroup = async (group: typeof queue) => {
    groupSizes.push(group.length)
    try {
      const ids = group.map((r) => r.invoiceId).sort()
      const bodies = await inTransaction(db, async (trx) => {
        inFlightAhead(trx, ids)
        const { rows } = await trx.executeQuery(
          STATEMENTS.compile(`group lock ${ids.length}`, [environmentId, ...ids], ($) =>
            trx
              .selectFrom('invoices')
              .selectAll()
              .where('environment_id', '=', $(0))
              .where(
                'id',
                'in',
                ids.map((_, i) => $(i + 1)),
              )
              .orderBy('id')
              .forUpdate(),
          ),
        )
        await inFlightOf(trx, ids)
        const byId = new Map(rows.map((row) => [row.id, row]))
        const out = new Map<string, string>()
        for (const id of ids) {
          const invoice = byId.get(id)
          if (!invoice) throw new Error(`no invoice ${id}`)
          out.set(id, await writeFloorPayment(trx, invoice))
        }
        return out
      })
      for (const request of group) request.done(undefined, bodies.get(request.invoiceId))
    } catch (error) {
      for (const request of group) request.done(error)
    }
  }
  const pump = () => {
    while (inFlight < GROUPS_IN_FLIGHT && queue.length > 0) {
      const group = queue.splice(0, GROUP_SIZE)
      inFlight++
      void runGroup(group).finally(() => {
        inFlight--
        pump()
      })
    }
  }
  app.addHook('onClose', async () => {
    if (groupSizes.length === 0) return
    const mean = groupSizes.reduce((a, b) => a + b, 0) / groupSizes.length
    console.log(
      `offline_floor_grouped: ${groupSizes.length} groups, ${mean.toFixed(2)} requests each`,
    )
  })
  app.post<{ Body: { invoice_id: string } }>(
    GROUPED_FLOOR_PATH,
    { config: { auth: false } },
    async (request, reply) => {
      const body = await new Promise<string>((resolve, reject) => {
        queue.push({
          invoiceId: request.body.invoice_id,
          done: (error, json) => (error ? reject(error) : resolve(json as string)),
        })
        pump()
      })
      return reply.code(201).type('application/json').send(body)
    },
  )
}

/** An offline payment's held writes for a locked `invoice`, as Payrail makes them; its JSON. */
async function writeFloorPayment(trx: Db, invoice: Invoice): Promise<string> {
  const invoiceId = invoice.id
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
}

/** A row's values as JSON takes them (amounts as text), without a replacer function, which costs more. */
function plain(row: object): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(row)) {
    out[key] = typeof value === 'bigint' ? value.toString() : value
  }
  return out
}
