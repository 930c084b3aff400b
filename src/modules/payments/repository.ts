import {
  type Insertable,
  type RawBuilder,
  type SelectQueryBuilder,
  sql,
  type Updateable,
} from 'kysely'
import type { PaymentStatus } from '../../core/payment-state.ts'
import type { Db } from '../../db/client.ts'
import type {
  Database,
  Payment,
  PaymentAllocation,
  PaymentAllocationTable,
  PaymentAttempt,
  PaymentMethodType,
  PaymentTable,
  PaymentTransition,
  PaymentTransitionTable,
  Refund,
  RefundTable,
} from '../../db/database.ts'
import { compiledOnce } from '../../db/json-sql.ts'
import { fetchPage, whereCreatedIn } from '../../db/list.ts'
import { rowOf, StatementCache } from '../../db/statement-cache.ts'
import {
  appendRows,
  holdInsert,
  holdUpdate,
  MemoKey,
  readAhead,
  recall,
  remember,
  takeReadAhead,
  updateHeldRow,
} from '../../db/transaction.ts'
import type { ListRequest, TimeRange } from '../../http/list-query.ts'
import { lockInvoicesOfPayment } from '../invoices/repository.ts'
import { paymentJson } from './json.ts'

export type PaymentSortField = 'created_at' | 'amount' | 'updated_at'

/**
 * The attempts of a payment the current transaction holds: none for one it created, else
 * as first read; kept current by `insertAttempt`.
 */
const HELD_PAYMENT_ATTEMPTS = new MemoKey<PaymentAttempt[]>('held_payment_attempts')
/** Payments this transaction holds: locked, updated or inserted by it, so no one else can change them. */
const HELD_PAYMENTS = new MemoKey<Payment>('held_payments')

/**
 * A new payment as inserted: its times given (`created_at` and `updated_at` have no
 * default Node could know), and as `Date`s, as every timestamp it sets must be.
 */
export type NewPaymentRow = Insertable<PaymentTable> & {
  created_at: Date
  updated_at: Date
  payment_date?: Date | null
  succeeded_at?: Date | null
  failed_at?: Date | null
  refunded_at?: Date | null
  cancelled_at?: Date | null
}

/**
 * The row PostgreSQL makes of `row`: the defaults of the `payments` table (migration
 * 0003) where it leaves a column out, JSON given as text parsed. Every column is named,
 * in one literal (one object shape for every payment), so a column added to the table
 * fails to compile here until it is; `test/db/transaction.test.ts` compares the result
 * with the row PostgreSQL wrote.
 */
function newPaymentRow(row: NewPaymentRow): Payment {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    environment_id: row.environment_id,
    human_id: row.human_id,
    customer_id: row.customer_id,
    destination_type: row.destination_type,
    destination_id: row.destination_id,
    subject: row.subject ?? null,
    amount: row.amount,
    amount_paid: row.amount_paid ?? 0n,
    amount_reserved: row.amount_reserved ?? 0n,
    amount_refunded: row.amount_refunded ?? 0n,
    currency: row.currency,
    payment_status: row.payment_status,
    payment_method_type: row.payment_method_type,
    payment_method_id: row.payment_method_id ?? null,
    payment_gateway: row.payment_gateway ?? null,
    gateway_payment_id: row.gateway_payment_id ?? null,
    gateway_tracking_id: row.gateway_tracking_id ?? null,
    payment_url: row.payment_url ?? null,
    active: row.active ?? true,
    payment_date: row.payment_date ?? null,
    billing_address: parsed(row.billing_address, null),
    description: row.description ?? null,
    metadata: parsed(row.metadata, {}),
    gateway_metadata: parsed(row.gateway_metadata, {}),
    status_code: row.status_code ?? null,
    error_message: row.error_message ?? null,
    success_url: row.success_url ?? null,
    cancel_url: row.cancel_url ?? null,
    save_card_and_make_default: row.save_card_and_make_default ?? false,
    idempotency_key: row.idempotency_key ?? null,
    track_attempts: row.track_attempts ?? true,
    invoice_number: row.invoice_number ?? null,
    discount_code: row.discount_code ?? null,
    invoice_ids: row.invoice_ids ?? [],
    created_by: row.created_by ?? null,
    updated_by: row.updated_by ?? null,
    succeeded_at: row.succeeded_at ?? null,
    failed_at: row.failed_at ?? null,
    refunded_at: row.refunded_at ?? null,
    cancelled_at: row.cancelled_at ?? null,
    created_at: row.created_at,
    updated_at: row.updated_at,
  }
}

/** A JSON column's value as it reads: text parsed, an object as given, `fallback` when left out. */
function parsed<T>(value: T | string | undefined, fallback: T): T {
  if (value === undefined) return fallback
  return typeof value === 'string' ? (JSON.parse(value) as T) : value
}

/**
 * Inserts a payment and its allocations. In a transaction of `inTransaction` both are
 * held (`holdInsert`) and written with the transaction's next statement or its commit,
 * with whatever the transaction does to them meanwhile folded in: a payment settled
 * where it is created is written once, as it ends. Otherwise they are written at once,
 * in one statement.
 *
 * A `human_id` or `idempotency_key` already taken in the environment fails the
 * statement that writes the row (a unique violation), and the transaction with it.
 */
export async function insertPayment(
  db: Db,
  row: NewPaymentRow,
  allocations: Omit<Insertable<PaymentAllocationTable>, 'payment_id'>[],
): Promise<Payment> {
  const rows = allocations.map((a) => ({ ...a, payment_id: row.id }))
  let payment: Payment
  if (holdInsert(db, 'payments', { id: row.id }, row)) {
    for (const allocation of rows) {
      const key = { payment_id: allocation.payment_id, invoice_id: allocation.invoice_id }
      holdInsert(db, 'payment_allocations', key, allocation)
    }
    payment = newPaymentRow(row)
  } else {
    payment = await writePayment(db, row, rows)
  }
  remember(db, HELD_PAYMENTS, payment.id, payment)
  remember(db, HELD_PAYMENT_ATTEMPTS, payment.id, [])
  remember(
    db,
    HELD_PAYMENT_ALLOCATIONS,
    payment.id,
    rows.map((a) => ({ ...a, applied_amount: 0n })),
  )
  return { ...payment }
}

/** The payment and its allocations in one statement, now (the allocations as a data-modifying CTE). */
async function writePayment(
  db: Db,
  row: NewPaymentRow,
  allocations: Insertable<PaymentAllocationTable>[],
): Promise<Payment> {
  const inserting = rowOf(row)
  const values = [
    ...inserting.values,
    ...allocations.flatMap((a) => [a.payment_id, a.invoice_id, a.position, a.amount]),
  ]
  const shape = `payment ${inserting.shape}|${allocations.length}`
  const query = STATEMENTS.compile(shape, values, ($) => {
    let next = inserting.columns.length
    const allocated = sql.join(
      allocations.map(
        () => sql`(${$(next++)}, ${$(next++)}, ${$(next++)}::int, ${$(next++)}::bigint)`,
      ),
    )
    return db
      .with('a', (qb) =>
        qb
          .insertInto('payment_allocations')
          .columns(['payment_id', 'invoice_id', 'position', 'amount'])
          .expression(sql`values ${allocated}`),
      )
      .insertInto('payments')
      .values(inserting.slots($))
      .returningAll()
  })
  const [payment] = (await db.executeQuery(query)).rows
  if (!payment) throw new Error('payment insert returned no row')
  return payment
}

/**
 * The amount of PROCESSING payments allocated to each of `invoiceIds` (0 for none), for
 * a payment about to be created on them (see `inFlightAmount`): read after the caller
 * locked the invoices, from a snapshot of its own (by the statement `inFlightAhead`
 * sent after the lock, when it did).
 */
export async function inFlightOf(db: Db, invoiceIds: string[]): Promise<Map<string, bigint>> {
  const query = inFlightStatement(db, invoiceIds)
  const ahead = takeReadAhead<{ invoice_id: string; total: string }>(db, inFlightKey(invoiceIds))
  const rows = ahead ? await ahead : (await db.executeQuery(query)).rows
  const totals = new Map(invoiceIds.map((id) => [id, 0n]))
  for (const { invoice_id, total } of rows) totals.set(invoice_id, BigInt(total))
  return totals
}

/**
 * Has `inFlightOf(db, invoiceIds)`'s statement go after the transaction's next
 * statement, the lock of the last of these invoices, in its round trip (`readAhead`):
 * the same read, under the same locks, as long as the transaction moves no payment of
 * these invoices before `inFlightOf` takes it.
 */
export function inFlightAhead(db: Db, invoiceIds: string[]): void {
  readAhead(db, inFlightKey(invoiceIds), inFlightStatement(db, invoiceIds))
}

/** Read-ahead keys: the sum of invoices' charges in flight, a payment's attempts. */
const inFlightKey = (invoiceIds: string[]) => `in flight ${invoiceIds}`
const attemptsKey = (paymentId: string) => `attempts of ${paymentId}`

function inFlightStatement(db: Db, invoiceIds: string[]) {
  return STATEMENTS.compile(`in flight ${invoiceIds.length}`, invoiceIds, ($) =>
    inFlightTotals(
      db,
      invoiceIds.map((_, i) => $(i) as string),
    ),
  )
}

/** The hot path's statements, built once per shape (`StatementCache`). */
const STATEMENTS = new StatementCache()

/** The attempts of a payment this transaction holds, when known without a query; else undefined. */
export function attemptsOfHeldPayment(db: Db, paymentId: string): PaymentAttempt[] | undefined {
  return recall(db, HELD_PAYMENT_ATTEMPTS, paymentId)
}

/**
 * The allocations of a payment the current transaction created or holds locked, as this
 * transaction left them: they change only under the payment's lock.
 */
const HELD_PAYMENT_ALLOCATIONS = new MemoKey<PaymentAllocation[]>('held_payment_allocations')

export async function findPayment(
  db: Db,
  environmentId: string,
  id: string,
  customerId: string | null = null,
): Promise<Payment | undefined> {
  let query = db
    .selectFrom('payments')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  if (customerId !== null) query = query.where('customer_id', '=', customerId)
  return query.executeTakeFirst()
}

export async function findPaymentByIdempotencyKey(
  db: Db,
  environmentId: string,
  key: string,
): Promise<Payment | undefined> {
  return db
    .selectFrom('payments')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst()
}

/** The payment row under `SELECT … FOR UPDATE`: every state change goes through this. */
export async function lockPayment(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Payment | undefined> {
  const held = recall(db, HELD_PAYMENTS, id)
  if (held?.environment_id === environmentId) return { ...held }
  // Its attempts come in the same round trip, read once the lock is held.
  attemptsAhead(db, id)
  const [payment] = (await db.executeQuery(lockStatement(db, environmentId, id))).rows
  const attempts = takeReadAhead<PaymentAttempt>(db, attemptsKey(id))
  if (!payment) return undefined
  remember(db, HELD_PAYMENTS, payment.id, payment)
  if (attempts) remember(db, HELD_PAYMENT_ATTEMPTS, payment.id, await attempts)
  return { ...payment }
}

function lockStatement(db: Db, environmentId: string, id: string) {
  return STATEMENTS.compile('lock', [environmentId, id], ($) =>
    db
      .selectFrom('payments')
      .selectAll()
      .where('environment_id', '=', $(0))
      .where('id', '=', $(1))
      .forUpdate(),
  )
}

/**
 * A payment's attempts, read after the statement that locks it (in its round trip, on a
 * snapshot taken once the lock is held): attempts are only written under that lock,
 * and every state change of the payment shows them.
 */
function attemptsAhead(db: Db, paymentId: string): void {
  if (recall(db, HELD_PAYMENT_ATTEMPTS, paymentId)) return
  const query = STATEMENTS.compile('attempts of', [paymentId], ($) =>
    db
      .selectFrom('payment_attempts')
      .selectAll()
      .where('payment_id', '=', $(0))
      .orderBy('created_at')
      .orderBy('id'),
  )
  readAhead(db, attemptsKey(paymentId), query)
}

export async function lockPaymentByTracking(
  db: Db,
  environmentId: string,
  gateway: string,
  trackingId: string,
): Promise<Payment | undefined> {
  const query = STATEMENTS.compile('lock by tracking', [environmentId, gateway, trackingId], ($) =>
    db
      .selectFrom('payments')
      .selectAll()
      .where('environment_id', '=', $(0))
      .where('payment_gateway', '=', $(1))
      .where('gateway_tracking_id', '=', $(2))
      .forUpdate(),
  )
  const [payment] = (await db.executeQuery(query)).rows
  if (payment) remember(db, HELD_PAYMENTS, payment.id, payment)
  return payment ? { ...payment } : undefined
}

/**
 * Updates a payment. One this transaction holds (`lockPayment`, `insertPayment`) is
 * updated in memory and written with the transaction's next statement on payments
 * or its commit (`holdUpdate`).
 */
export async function updatePayment(
  db: Db,
  id: string,
  changes: Updateable<PaymentTable>,
): Promise<Payment> {
  return updateHeldRow(db, 'payments', HELD_PAYMENTS, id, changes, () =>
    db
      .updateTable('payments')
      .set(changes)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow(),
  )
}

export async function allocationsOf(db: Db, paymentIds: string[]): Promise<PaymentAllocation[]> {
  if (paymentIds.length === 0) return []
  const [only] = paymentIds
  const known =
    paymentIds.length === 1 && only ? recall(db, HELD_PAYMENT_ALLOCATIONS, only) : undefined
  if (known) return known.map((a) => ({ ...a }))
  const query = STATEMENTS.compile(`allocations ${paymentIds.length}`, paymentIds, ($) =>
    db
      .selectFrom('payment_allocations')
      .selectAll()
      .where(
        'payment_id',
        'in',
        paymentIds.map((_, i) => $(i)),
      )
      .orderBy('payment_id')
      .orderBy('position'),
  )
  return (await db.executeQuery(query)).rows
}

/**
 * The allocations of a payment the caller holds locked, with each allocated invoice
 * locked too, in allocation order: what settling, refunding or checking the payment
 * does first. Allocations this transaction knows cost no query: it knows them only
 * for a payment it created (under its invoices' locks) or read here. Else one statement
 * reads them and locks the invoices (`lockInvoicesOfPayment`), and they are then known
 * for the rest of the transaction (they change only under the payment's lock).
 */
export async function allocationsLockingInvoices(
  db: Db,
  environmentId: string,
  payment: Payment,
): Promise<PaymentAllocation[]> {
  const known = recall(db, HELD_PAYMENT_ALLOCATIONS, payment.id)
  if (known) return known.map((a) => ({ ...a }))
  const allocations = await lockInvoicesOfPayment(db, environmentId, payment.id)
  const ids = allocations.map((a) => a.invoice_id)
  // An invoice outside the environment would be missing: then each is read as before.
  if (
    ids.length !== payment.invoice_ids.length ||
    ids.some((id, i) => id !== payment.invoice_ids[i])
  )
    return allocationsOf(db, [payment.id])
  if (recall(db, HELD_PAYMENTS, payment.id))
    remember(db, HELD_PAYMENT_ALLOCATIONS, payment.id, allocations)
  return allocations.map((a) => ({ ...a }))
}

export async function setAllocationApplied(
  db: Db,
  paymentId: string,
  invoiceId: string,
  applied: bigint,
): Promise<void> {
  await updateAllocation(db, paymentId, invoiceId, { applied_amount: applied })
}

export async function setAllocationAmount(
  db: Db,
  paymentId: string,
  invoiceId: string,
  amount: bigint,
): Promise<void> {
  await updateAllocation(db, paymentId, invoiceId, { amount })
}

async function updateAllocation(
  db: Db,
  paymentId: string,
  invoiceId: string,
  changes: { amount?: bigint; applied_amount?: bigint },
): Promise<void> {
  if (
    !holdUpdate(
      db,
      'payment_allocations',
      { payment_id: paymentId, invoice_id: invoiceId },
      changes,
    )
  ) {
    await db
      .updateTable('payment_allocations')
      .set(changes)
      .where('payment_id', '=', paymentId)
      .where('invoice_id', '=', invoiceId)
      .execute()
  }
  const known = recall(db, HELD_PAYMENT_ALLOCATIONS, paymentId)
  if (known) {
    const updated = known.map((a) => (a.invoice_id === invoiceId ? { ...a, ...changes } : a))
    remember(db, HELD_PAYMENT_ALLOCATIONS, paymentId, updated)
  }
}

/**
 * Records an attempt. Attempts are only written under their payment's row lock, so while
 * this transaction holds the payment its attempts are known (`lockPayment` reads them
 * with the lock): the new one is then held (`holdInsert`) and goes with the
 * transaction's next statement or its commit. Otherwise a first insert reads the
 * earlier ones in the same statement, and later reads cost no query.
 */
export async function insertAttempt(db: Db, row: PaymentAttempt): Promise<PaymentAttempt> {
  const paymentId = row.payment_id
  const known = recall(db, HELD_PAYMENT_ATTEMPTS, paymentId)
  if (known && holdInsert(db, 'payment_attempts', { id: row.id }, row)) {
    remember(db, HELD_PAYMENT_ATTEMPTS, paymentId, [...known, { ...row }])
    return { ...row }
  }
  const { columns, shape, values, slots } = rowOf(row)
  if (known || !recall(db, HELD_PAYMENTS, paymentId)) {
    const query = STATEMENTS.compile(`attempt ${shape}`, values, ($) =>
      db.insertInto('payment_attempts').values(slots($)).returningAll(),
    )
    const [attempt] = (await db.executeQuery(query)).rows
    if (!attempt) throw new Error('attempt insert returned no row')
    if (known) remember(db, HELD_PAYMENT_ATTEMPTS, paymentId, [...known, attempt])
    return attempt
  }
  // The earlier attempts come from the statement's snapshot, which cannot see the new one.
  const earlier = [...values, paymentId]
  const query = STATEMENTS.compile(`attempt with earlier ${shape}`, earlier, ($) =>
    db
      .with('inserted', (qb) => qb.insertInto('payment_attempts').values(slots($)).returningAll())
      .selectFrom('payment_attempts')
      .selectAll()
      .where('payment_id', '=', $(columns.length))
      .unionAll((qb) => qb.selectFrom('inserted').selectAll()),
  )
  const { rows } = await db.executeQuery(query)
  const attempt = rows.at(-1)
  if (!attempt) throw new Error('attempt insert returned no row')
  // In the order `attemptsOf` reads them.
  const all = rows.sort(
    (a, b) =>
      a.created_at.getTime() - b.created_at.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  )
  remember(db, HELD_PAYMENT_ATTEMPTS, paymentId, all)
  return attempt
}

/** The attempts of payments, oldest first; one this transaction holds is read at most once. */
export async function attemptsOf(db: Db, paymentIds: string[]): Promise<PaymentAttempt[]> {
  if (paymentIds.length === 0) return []
  const [only] = paymentIds
  const single = paymentIds.length === 1 ? only : undefined
  const known = single ? recall(db, HELD_PAYMENT_ATTEMPTS, single) : undefined
  if (known) return known
  const attempts = await db
    .selectFrom('payment_attempts')
    .selectAll()
    .where('payment_id', 'in', paymentIds)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  if (single && recall(db, HELD_PAYMENTS, single))
    remember(db, HELD_PAYMENT_ATTEMPTS, single, attempts)
  return attempts
}

export async function insertTransition(
  db: Db,
  row: Insertable<PaymentTransitionTable>,
): Promise<void> {
  await appendRows(db, 'payment_transitions', [row])
}

export async function transitionsOf(db: Db, paymentId: string): Promise<PaymentTransition[]> {
  return db
    .selectFrom('payment_transitions')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .orderBy('id')
    .execute()
}

/** When the payment last moved to PROCESSING (its current charge began then), if it did. */
export async function processingSince(db: Db, paymentId: string): Promise<Date | undefined> {
  const row = await db
    .selectFrom('payment_transitions')
    .select((eb) => eb.fn.max('created_at').as('since'))
    .where('payment_id', '=', paymentId)
    .where('to_status', '=', 'PROCESSING')
    .executeTakeFirst()
  return row?.since ?? undefined
}

/** The active payments allocated to an invoice, as a query to narrow. */
function activePaymentsOfInvoice(db: Db, environmentId: string, invoiceId: string) {
  return db
    .selectFrom('payments')
    .innerJoin('payment_allocations', 'payment_allocations.payment_id', 'payments.id')
    .selectAll('payments')
    .where('payments.environment_id', '=', environmentId)
    .where('payment_allocations.invoice_id', '=', invoiceId)
    .where('payments.active', '=', true)
}

/**
 * Payments of an invoice that may still take money: the on-ramp reuses one of these
 * instead of creating another, and the invoice cannot be voided while one is open.
 */
export async function openPaymentsForInvoice(
  db: Db,
  environmentId: string,
  invoiceId: string,
): Promise<Payment[]> {
  return activePaymentsOfInvoice(db, environmentId, invoiceId)
    .where('payments.payment_status', 'in', [
      'INITIATED',
      'PENDING',
      'PROCESSING',
      'RESERVED',
      'CAPTURED',
      'ON_RETRY',
    ])
    .orderBy('payments.created_at', 'desc')
    .execute()
}

/** A start's error that says nothing of what the provider did: no answer, or a 5xx. */
export const ANSWER_LOST = /^(network_error|timeout|http_5\d\d)$/

/**
 * The failures, by the code their gateway records, that a provider documenting money after
 * a failure (its gateway's `paysAfterFailure`) may still turn into money: BitPay completes an
 * `invalid` invoice (paid, not confirmed within its hour) once the transaction confirms, and
 * CoinPayments reopens a transaction that was cancelled or timed out (`cancelled`, its status
 * -1) when the coins come. BitPay's other failures end with no money kept: an invoice
 * `expired` unpaid, and one `underpaid` or `declined`, whose coins BitPay refunds itself.
 */
export const FAILURES_PAID_LATE: Readonly<Record<string, readonly string[]>> = {
  bitpay: ['invalid'],
  coinpayments: ['cancelled'],
}

/**
 * Up to `limit` payments of the environment through `gateway` that the provider may still
 * report on: a page open, a charge in flight, funds held, a refund pending; a start whose
 * answer was lost (`INITIATED`, its error `ANSWER_LOST`: what it opened may exist, which is
 * why such a payment cannot be cancelled); and a failure the provider may still turn into
 * money (`FAILURES_PAID_LATE`). Deleted payments count too: money reported for one shows it
 * again. No index covers (environment, gateway) for every payment (`payments_tracking_key`
 * holds only tracked ones), so this reads the environment's payments: fine for a rare
 * `DELETE` of a connection, not for a hot path.
 */
export async function paymentsAwaitingGateway(
  db: Db,
  environmentId: string,
  gateway: string,
  limit: number,
): Promise<Pick<Payment, 'id' | 'payment_status'>[]> {
  const paidLate = (Object.hasOwn(FAILURES_PAID_LATE, gateway) && FAILURES_PAID_LATE[gateway]) || []
  return db
    .selectFrom('payments')
    .select(['id', 'payment_status'])
    .where('environment_id', '=', environmentId)
    .where('payment_gateway', '=', gateway)
    .where((eb) =>
      eb.or([
        eb('payment_status', 'in', [
          'PENDING',
          'PROCESSING',
          'RESERVED',
          'CAPTURED',
          'PENDING_REFUND',
        ]),
        eb.and([
          eb('payment_status', '=', 'INITIATED'),
          eb('status_code', '~', ANSWER_LOST.source),
        ]),
        ...(paidLate.length > 0
          ? [eb.and([eb('payment_status', '=', 'FAILED'), eb('status_code', 'in', paidLate)])]
          : []),
      ]),
    )
    .orderBy('created_at')
    .limit(limit)
    .execute()
}

/**
 * The newest active payment of an invoice whose `metadata[flag]` is `'true'`: the
 * latest automatic charge, when `flag` is the automatic-charge flag.
 */
export async function newestFlaggedPayment(
  db: Db,
  environmentId: string,
  invoiceId: string,
  flag: string,
): Promise<Payment | undefined> {
  return activePaymentsOfInvoice(db, environmentId, invoiceId)
    .where(sql<string>`payments.metadata ->> ${flag}`, '=', 'true')
    .orderBy('payments.created_at', 'desc')
    .orderBy('payments.id', 'desc')
    .limit(1)
    .executeTakeFirst()
}

/**
 * Card charges still PROCESSING, untouched since `before`, across every environment,
 * oldest first after `after` (keyset): charges whose answer was lost. Read per
 * environment through the status index, so the scan stays on the few PROCESSING rows.
 */
export async function staleCardCharges(
  db: Db,
  before: Date,
  limit: number,
  after?: { updatedAt: Date; id: string },
): Promise<Payment[]> {
  return sweepPayments(
    db,
    'updated_at',
    (qb) =>
      qb
        .where('payments.active', '=', sql.lit(true))
        .where('payments.payment_status', '=', 'PROCESSING')
        .where('payments.payment_method_type', '=', 'CARD')
        .where('payments.updated_at', '<', before),
    limit,
    after && { at: after.updatedAt, id: after.id },
  )
}

type PaymentsOfEnvironment = SelectQueryBuilder<
  Database & { environments: Database['environments'] },
  'payments' | 'environments',
  Payment
>

/**
 * The payments of every environment that `where` selects, oldest `column` first, at most
 * `limit`, after `after` (keyset on the column and the id): one index range per environment
 * (a lateral join), for the jobs that sweep every tenant's payments.
 */
function sweepPayments(
  db: Db,
  column: 'created_at' | 'updated_at',
  where: (qb: PaymentsOfEnvironment) => PaymentsOfEnvironment,
  limit: number,
  after?: { at: Date; id: string },
): Promise<Payment[]> {
  return db
    .selectFrom('environments')
    .innerJoinLateral(
      (eb) =>
        where(
          eb
            .selectFrom('payments')
            .selectAll('payments')
            .whereRef('payments.environment_id', '=', 'environments.id'),
        )
          .$if(after !== undefined, (qb) =>
            qb.where(
              sql<boolean>`(${sql.ref(`payments.${column}`)}, payments.id) > (${after?.at}, ${after?.id})`,
            ),
          )
          .orderBy(sql.ref(`payments.${column}`))
          .orderBy('payments.id')
          .limit(limit)
          .as('p'),
      (join) => join.onTrue(),
    )
    .selectAll('p')
    .orderBy(sql.ref(`p.${column}`))
    .orderBy('p.id')
    .limit(limit)
    .execute() as Promise<Payment[]>
}

/**
 * Open pages (PENDING payments of `gateways`) that can no longer be paid without paying an
 * invoice twice: one of their invoices now owes less than the page's share of it (paid
 * meanwhile through another rail, in full or in part). Oldest first, at most `limit`, after
 * `after` (keyset), across environments.
 */
export async function pagesOverpayingTheirInvoices(
  db: Db,
  gateways: readonly string[],
  limit: number,
  after?: { createdAt: Date; id: string },
): Promise<Payment[]> {
  if (gateways.length === 0) return []
  return sweepPayments(
    db,
    'created_at',
    (qb) => overtakenPages(qb).where('payments.payment_gateway', 'in', gateways),
    limit,
    after && { at: after.createdAt, id: after.id },
  )
}

/** Whether the payment is still an open page one of whose invoices owes less than its share. */
export async function isOvertakenPage(db: Db, paymentId: string): Promise<boolean> {
  const row = await overtakenPages(db.selectFrom('payments').select('payments.id'))
    .where('payments.id', '=', paymentId)
    .executeTakeFirst()
  return row !== undefined
}

/**
 * Open pages (active, PENDING) one of whose invoices now owes less than the page's share of
 * it. The active filter is a literal, so a generic plan can use the partial indexes.
 */
function overtakenPages<Q extends SelectQueryBuilder<Database, 'payments', object>>(qb: Q): Q {
  return qb
    .where('payments.active', '=', sql.lit(true))
    .where('payments.payment_status', '=', 'PENDING')
    .where((w) =>
      w.exists(
        w
          .selectFrom('payment_allocations')
          .innerJoin('invoices', 'invoices.id', 'payment_allocations.invoice_id')
          .select(sql.lit(1).as('one'))
          .whereRef('payment_allocations.payment_id', '=', 'payments.id')
          .whereRef('invoices.amount_remaining', '<', 'payment_allocations.amount'),
      ),
    ) as Q
}

/**
 * How many gateway attempts of an invoice's payments flagged `metadata[flag] = 'true'`
 * failed: each decline, and each call that got no answer, is one, and so is a FAILED
 * payment with no failed attempt (its provider reported the failure later). A payment asked
 * again after an unknown outcome has several; a successful attempt is not counted.
 */
export async function countFailedFlaggedAttempts(
  db: Db,
  environmentId: string,
  invoiceId: string,
  flag: string,
): Promise<number> {
  const flagged = db
    .selectFrom('payments')
    .innerJoin('payment_allocations', 'payment_allocations.payment_id', 'payments.id')
    .where('payments.environment_id', '=', environmentId)
    .where('payment_allocations.invoice_id', '=', invoiceId)
    .where(sql<string>`payments.metadata ->> ${flag}`, '=', 'true')
  const attempts = await flagged
    .innerJoin('payment_attempts', 'payment_attempts.payment_id', 'payments.id')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('payment_attempts.status', '=', 'failed')
    .executeTakeFirst()
  // A charge its provider reported failed later (an authorization that expired) has no
  // failed attempt of its own: its FAILED payment is one.
  const late = await flagged
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('payments.payment_status', '=', 'FAILED')
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('payment_attempts')
            .select(sql.lit(1).as('one'))
            .whereRef('payment_attempts.payment_id', '=', 'payments.id')
            .where('payment_attempts.status', '=', 'failed'),
        ),
      ),
    )
    .executeTakeFirst()
  return Number(attempts?.n ?? 0) + Number(late?.n ?? 0)
}

export interface PaymentFilters {
  status?: PaymentStatus | undefined
  paymentMethodType?: PaymentMethodType | undefined
  gateway?: string | undefined
  destinationId?: string | undefined
  customerId?: string | undefined
  currency?: string | undefined
  includeInactive?: boolean | undefined
}

/** The payments of an environment that `filters` select, for a page or a total. */
function filteredPayments(db: Db, environmentId: string, filters: PaymentFilters) {
  let query = db.selectFrom('payments').where('environment_id', '=', environmentId)
  if (filters.status) query = query.where('payment_status', '=', filters.status)
  if (filters.paymentMethodType)
    query = query.where('payment_method_type', '=', filters.paymentMethodType)
  if (filters.gateway) query = query.where('payment_gateway', '=', filters.gateway)
  if (filters.destinationId) query = query.where('destination_id', '=', filters.destinationId)
  if (filters.customerId) query = query.where('customer_id', '=', filters.customerId)
  if (filters.currency) query = query.where('currency', '=', filters.currency)
  // A literal, not a parameter: a generic plan can then use the partial (WHERE active) indexes.
  if (!filters.includeInactive) query = query.where('active', '=', sql.lit(true))
  return query
}

/** Filters the daily counts can total (only status and the date range). */
function countable(filters: PaymentFilters): boolean {
  return (
    !filters.includeInactive &&
    !filters.paymentMethodType &&
    !filters.gateway &&
    !filters.destinationId &&
    !filters.customerId &&
    !filters.currency
  )
}

export async function listPayments(
  db: Db,
  environmentId: string,
  filters: PaymentFilters,
  request: ListRequest<PaymentSortField>,
): Promise<{ items: Payment[]; total: number }> {
  return fetchPage(filteredPayments(db, environmentId, filters).selectAll(), 'payments', request, {
    countTotal: countable(filters)
      ? (range) => countActivePayments(db, environmentId, filters.status, range)
      : undefined,
  })
}

/**
 * A page of payments as the API's JSON array (`paymentJson`, attempts included) and
 * the total, in one statement: the page is built by PostgreSQL and passed through.
 */
export async function listPaymentsJson(
  db: Db,
  environmentId: string,
  filters: PaymentFilters,
  request: ListRequest<PaymentSortField>,
  genericPlans: Db = db,
): Promise<{ items: string; total: number }> {
  const ranged = whereCreatedIn(
    filteredPayments(db, environmentId, filters),
    'payments.created_at',
    request.created,
  )
  const { field, direction } = request.sort
  const order = direction === 'asc' ? sql`asc` : sql`desc`
  const page = ranged
    .select([
      sql.ref(`payments.${field}`).as('sort_key'),
      'payments.id as sort_id',
      paymentsRowJson().as('j'),
    ])
    .orderBy(sql.ref(`payments.${field}`), direction)
    .orderBy('payments.id', direction)
    .limit(request.page.limit)
    .offset(request.page.offset)
  const total = countable(filters)
    ? activePaymentsTotal(environmentId, filters.status, request.created)
    : sql`(select count(*) from (${ranged.select(sql.lit(1).as('one'))}) counted)`
  // Newest first by date, filtered by status at most: every part of the statement walks an
  // index in its order over the range (the page, the corrections) or sums the per-day
  // counts, for any values. A generic plan is then as good as a custom one and saves
  // planning the large JSON expression on every call (about a third of the statement's
  // cost). Other filters (a customer's few payments, a gateway's) need the values to choose.
  const runner = countable(filters) && field === 'created_at' ? genericPlans : db
  const { rows } = await sql<{ total: string; items: string }>`select ${total} as total,
    (select coalesce('[' || string_agg(page.j, ',' order by page.sort_key ${order}, page.sort_id ${order}) || ']', '[]')
      from (${page}) page) as items`.execute(runner)
  const row = rows[0]
  return { items: row?.items ?? '[]', total: Number(row?.total ?? 0) }
}

/** `paymentJson` of the `payments` row, compiled once. */
const paymentsRowJson = compiledOnce(() => paymentJson('payments').json)

const DAY_MS = 86_400_000

/**
 * How many active payments (of `status`, if given) were created in `range`, exactly,
 * in one statement: the per-day counts of `payment_daily_counts` for the days the range
 * covers, corrected at each end by an index count of the smaller side of the partial
 * day: the rows of the day inside the range, or the day's count less the rows outside
 * it. Which side is smaller is judged by the time each spans, up to now at most (no
 * payment is created later): a range that ends now, at any hour, counts the rest of
 * today (nothing yet) instead of today's rows so far, the newest, which are not yet
 * all-visible and dearest to count. Either side gives the same, exact count.
 */
export async function countActivePayments(
  db: Db,
  environmentId: string,
  status: PaymentStatus | undefined,
  range: TimeRange,
): Promise<number> {
  const total = activePaymentsTotal(environmentId, status, range)
  const { rows } = await sql<{ total: string }>`select ${total} as total`.execute(db)
  return Number(rows[0]?.total ?? 0)
}

/** `countActivePayments` as an SQL expression, to count inside another statement. */
function activePaymentsTotal(
  environmentId: string,
  status: PaymentStatus | undefined,
  range: TimeRange,
): RawBuilder<unknown> {
  const { from, to } = range
  if (from && to && from.getTime() > to.getTime()) return sql`0`
  const byStatus = status ? sql`and payment_status = ${status}` : sql``
  const rowsIn = (bounds: RawBuilder<unknown>[]) => sql`(select count(*) from payments
      where environment_id = ${environmentId} ${byStatus} and active ${sql.join(bounds, sql` `)})`
  // Whole days [first, end) taken from the per-day counts, and the exact corrections.
  let first: Date | undefined
  let end: Date | undefined
  const plus: RawBuilder<unknown>[] = []
  const minus: RawBuilder<unknown>[] = []
  const fromDay = from && utcDay(from)
  const toDay = to && utcDay(to)
  // How long the rows from `at` to the day's end `next` have had to be created.
  const now = Date.now()
  const spanAfter = (at: Date, next: Date) =>
    Math.max(0, Math.min(next.getTime(), now) - at.getTime())
  if (from && to && fromDay && toDay && fromDay.getTime() === toDay.getTime()) {
    const dayEnd = new Date(fromDay.getTime() + DAY_MS)
    const outside = from.getTime() - fromDay.getTime() + spanAfter(to, dayEnd)
    if (to.getTime() - from.getTime() <= outside) {
      plus.push(rowsIn([sql`and created_at >= ${from}`, sql`and created_at <= ${to}`]))
    } else {
      first = fromDay
      end = dayEnd
      minus.push(rowsIn([sql`and created_at >= ${fromDay}`, sql`and created_at < ${from}`]))
      minus.push(rowsIn([sql`and created_at > ${to}`, sql`and created_at < ${dayEnd}`]))
    }
  } else {
    if (from && fromDay) {
      const next = new Date(fromDay.getTime() + DAY_MS)
      if (from.getTime() - fromDay.getTime() <= spanAfter(from, next)) {
        first = fromDay
        minus.push(rowsIn([sql`and created_at >= ${fromDay}`, sql`and created_at < ${from}`]))
      } else {
        first = next
        plus.push(rowsIn([sql`and created_at >= ${from}`, sql`and created_at < ${next}`]))
      }
    }
    if (to && toDay) {
      const next = new Date(toDay.getTime() + DAY_MS)
      if (spanAfter(to, next) <= to.getTime() - toDay.getTime()) {
        end = next
        minus.push(rowsIn([sql`and created_at > ${to}`, sql`and created_at < ${next}`]))
      } else {
        end = toDay
        plus.push(rowsIn([sql`and created_at >= ${toDay}`, sql`and created_at <= ${to}`]))
      }
    }
  }
  const days =
    first === undefined && end === undefined && from && to
      ? sql`0`
      : sql`(select coalesce(sum(n), 0) from payment_daily_counts
          where environment_id = ${environmentId} ${byStatus}
            and day >= ${first ? isoDay(first) : '-infinity'}::date
            and day < ${end ? isoDay(end) : 'infinity'}::date)`
  return sql`(${sql.join(
    [days, ...plus.map((term) => sql`+ ${term}`), ...minus.map((term) => sql`- ${term}`)],
    sql` `,
  )})`
}

function utcDay(at: Date): Date {
  return new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS)
}

/**
 * A UTC day as PostgreSQL's `date` reads it. Past year 9999 JavaScript writes six-digit
 * years (`+010000-01-01`), which PostgreSQL refuses: such a day, after every payment, is
 * `infinity`, and one before year 1, before every payment, `-infinity` (a `to_date` of
 * 9999-12-31, whose next day is in year 10000, was a 400).
 */
function isoDay(day: Date): string {
  const year = day.getUTCFullYear()
  if (year > 9999) return 'infinity'
  if (year < 1) return '-infinity'
  return day.toISOString().slice(0, 10)
}

export async function insertRefund(db: Db, row: Insertable<RefundTable>): Promise<Refund> {
  return db.insertInto('refunds').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function updateRefund(
  db: Db,
  id: string,
  changes: Updateable<RefundTable>,
): Promise<Refund> {
  return db
    .updateTable('refunds')
    .set(changes)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

export async function refundsOf(db: Db, paymentId: string): Promise<Refund[]> {
  return db
    .selectFrom('refunds')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
}

export async function findRefund(
  db: Db,
  environmentId: string,
  id: string,
  customerId: string | null = null,
): Promise<Refund | undefined> {
  let query = db
    .selectFrom('refunds')
    .innerJoin('payments', 'payments.id', 'refunds.payment_id')
    .selectAll('refunds')
    .where('refunds.environment_id', '=', environmentId)
    .where('refunds.id', '=', id)
  if (customerId !== null) query = query.where('payments.customer_id', '=', customerId)
  return query.executeTakeFirst()
}

export async function findRefundByGatewayId(
  db: Db,
  paymentId: string,
  gatewayRefundId: string,
): Promise<Refund | undefined> {
  return db
    .selectFrom('refunds')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .where('gateway_refund_id', '=', gatewayRefundId)
    .forUpdate()
    .executeTakeFirst()
}

export async function listRefunds(
  db: Db,
  environmentId: string,
  filters: { paymentId?: string | undefined; status?: Refund['status'] | undefined },
  request: ListRequest<'created_at' | 'amount'>,
): Promise<{ items: Refund[]; total: number }> {
  let query = db.selectFrom('refunds').selectAll().where('environment_id', '=', environmentId)
  if (filters.paymentId) query = query.where('payment_id', '=', filters.paymentId)
  if (filters.status) query = query.where('status', '=', filters.status)
  return fetchPage(query, 'refunds', request)
}

/**
 * Money other payments are taking from an invoice right now (card charges and
 * crypto payments in PROCESSING): counted before another charge starts, so two
 * charges at once cannot both take what is owed.
 */
export async function inFlightAmount(
  db: Db,
  invoiceId: string,
  exceptPaymentId: string,
): Promise<bigint> {
  const row = await inFlightTotals(db, [invoiceId])
    .where('payments.id', '<>', exceptPaymentId)
    .executeTakeFirst()
  return BigInt(row?.total ?? 0n)
}

/** The amounts of PROCESSING payments allocated to each of `invoiceIds` (none: no row). */
function inFlightTotals(db: Db, invoiceIds: string[]) {
  return db
    .selectFrom('payment_allocations')
    .innerJoin('payments', 'payments.id', 'payment_allocations.payment_id')
    .select((eb) => [
      'payment_allocations.invoice_id',
      eb.fn.sum<bigint>('payment_allocations.amount').as('total'),
    ])
    .where('payment_allocations.invoice_id', 'in', invoiceIds)
    .where('payments.payment_status', '=', 'PROCESSING')
    .groupBy('payment_allocations.invoice_id')
}

/** A payment by id in any environment: only for redirects that carry Payrail's payment id back from a hosted page. */
export async function findPaymentById(db: Db, id: string): Promise<Payment | undefined> {
  return db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
}
