import { type Insertable, sql, type Updateable } from 'kysely'
import { BoundedCache } from '../../core/bounded-cache.ts'
import type { Db } from '../../db/client.ts'
import type {
  Invoice,
  InvoiceLine,
  InvoiceLineTable,
  InvoicePaymentStatus,
  InvoiceStatus,
  InvoiceTable,
  PaymentAllocation,
} from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import { StatementCache } from '../../db/statement-cache.ts'
import {
  MemoKey,
  type RowOf,
  readAhead,
  recall,
  remember,
  takeReadAhead,
  updateHeldRow,
} from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'

export type InvoiceSortField = 'created_at' | 'due_date' | 'total' | 'number' | 'amount_remaining'

export async function insertInvoice(db: Db, row: Insertable<InvoiceTable>): Promise<Invoice> {
  return db.insertInto('invoices').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function insertInvoiceLines(
  db: Db,
  rows: Insertable<InvoiceLineTable>[],
): Promise<InvoiceLine[]> {
  if (rows.length === 0) return []
  return db.insertInto('invoice_lines').values(rows).returningAll().execute()
}

export async function findInvoice(
  db: Db,
  environmentId: string,
  id: string,
  customerId: string | null = null,
): Promise<Invoice | undefined> {
  let query = db
    .selectFrom('invoices')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  if (customerId !== null) query = query.where('customer_id', '=', customerId)
  return query.executeTakeFirst()
}

/** The environment's invoices of `ids` that exist, in one statement, in no particular order. */
export async function findInvoices(
  db: Db,
  environmentId: string,
  ids: readonly string[],
): Promise<Invoice[]> {
  if (ids.length === 0) return []
  return db
    .selectFrom('invoices')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', 'in', ids)
    .execute()
}

/**
 * Invoices the current transaction holds locked (by `SELECT … FOR UPDATE` or an
 * UPDATE), as it last wrote or read them: no other transaction can change them
 * until it ends, so locking one again needs no query.
 */
const LOCKED_INVOICES = new MemoKey<Invoice>('locked_invoices')

/** The invoice row under `SELECT … FOR UPDATE`: every change to an invoice goes through this. */
export async function lockInvoice(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Invoice | undefined> {
  const held = recall(db, LOCKED_INVOICES, id)
  if (held?.environment_id === environmentId) return { ...held }
  const invoice = LINES.get(id)
    ? (
        await db.executeQuery(
          STATEMENTS.compile('lock', [environmentId, id], ($) =>
            db
              .selectFrom('invoices')
              .selectAll()
              .where('environment_id', '=', $(0))
              .where('id', '=', $(1))
              .forUpdate(),
          ),
        )
      ).rows[0]
    : await lockWithLines(db, environmentId, id)
  if (invoice) remember(db, LOCKED_INVOICES, id, invoice)
  return invoice ? { ...invoice } : undefined
}

/** An invoice row with its lines joined (`line_*` columns, null for none), one row per line. */
const LINE_COLUMNS = [
  'l.id as line_id',
  'l.position as line_position',
  'l.description as line_description',
  'l.quantity as line_quantity',
  'l.unit_amount as line_unit_amount',
  'l.amount as line_amount',
  'l.price_id as line_price_id',
  'l.period_start as line_period_start',
  'l.period_end as line_period_end',
] as const

type LineColumns = {
  line_id: string | null
  line_position: number | null
  line_description: string | null
  line_quantity: number | null
  line_unit_amount: bigint | null
  line_amount: bigint | null
  line_price_id: string | null
  line_period_start: Date | null
  line_period_end: Date | null
}

/**
 * `lockInvoice` for an invoice whose lines this process has not read: they come in the
 * same statement (one row per line) and are kept for `linesOf`. Lines never change, and
 * the payment that settles the invoice needs them for `invoice.paid`: a round trip less.
 */
async function lockWithLines(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Invoice | undefined> {
  const { rows } = await db.executeQuery(
    STATEMENTS.compile('lock with lines', [environmentId, id], ($) =>
      db
        .selectFrom('invoices')
        .leftJoin('invoice_lines as l', 'l.invoice_id', 'invoices.id')
        .selectAll('invoices')
        .select(LINE_COLUMNS)
        .where('invoices.environment_id', '=', $(0))
        .where('invoices.id', '=', $(1))
        .orderBy('l.position')
        .forUpdate('invoices'),
    ),
  )
  return keepLines(rows)[0]
}

/**
 * The invoices of rows that join each invoice to its lines (ordered by invoice, then
 * line), without the line columns; each invoice's lines kept for `linesOf`.
 */
function keepLines<R extends Invoice & LineColumns>(rows: R[]): Invoice[] {
  const invoices: Invoice[] = []
  let lines: InvoiceLine[] = []
  rows.forEach((row, index) => {
    if (row.line_id !== null) {
      lines.push({
        id: row.line_id,
        invoice_id: row.id,
        position: row.line_position as number,
        description: row.line_description as string,
        quantity: row.line_quantity as number,
        unit_amount: row.line_unit_amount as bigint,
        amount: row.line_amount as bigint,
        price_id: row.line_price_id,
        period_start: row.line_period_start,
        period_end: row.line_period_end,
      })
    }
    if (rows[index + 1]?.id === row.id) return
    // None is as true as some: an invoice is written with its lines in the transaction that
    // creates it, with nothing locking it in between, and they never change after.
    LINES.set(row.id, lines)
    lines = []
    const {
      line_id: _id,
      line_position: _position,
      line_description: _description,
      line_quantity: _quantity,
      line_unit_amount: _unitAmount,
      line_amount: _amount,
      line_price_id: _priceId,
      line_period_start: _periodStart,
      line_period_end: _periodEnd,
      ...invoice
    } = row
    invoices.push(invoice)
  })
  return invoices
}

/**
 * A payment's allocations, in order, with each allocated invoice locked
 * (`SELECT … FOR UPDATE`, in the order of their ids, as every path locks them) and its lines, in one statement: what
 * settling or checking a payment reads first. Only for a payment the caller holds
 * locked: its allocations change only under that lock, and this statement's snapshot
 * is taken after the caller got it, so they are current. The invoices are remembered
 * as this transaction's (`lockInvoice` then costs no query).
 *
 * An allocation whose invoice is not in `environmentId` is left out: the caller
 * compares the result with the payment's `invoice_ids`.
 */
export async function lockInvoicesOfPayment(
  db: Db,
  environmentId: string,
  paymentId: string,
): Promise<PaymentAllocation[]> {
  const query = lockOfPayment(db, environmentId, paymentId)
  const ahead = takeReadAhead<RowOf<typeof query>>(db, invoicesOfKey(environmentId, paymentId))
  const rows = ahead ? await ahead : (await db.executeQuery(query)).rows

  const allocations: PaymentAllocation[] = []
  const invoiceRows = rows.map((row) => {
    const { allocation_position, allocation_amount, allocation_applied_amount, ...invoice } = row
    if (allocations.at(-1)?.invoice_id !== row.id) {
      allocations.push({
        payment_id: paymentId,
        invoice_id: row.id,
        position: allocation_position,
        amount: allocation_amount,
        applied_amount: allocation_applied_amount,
      })
    }
    return invoice
  })
  // An invoice this transaction already holds is kept as it holds it: its changes may be
  // held until the commit (or this read may have gone ahead of them), and the row read here
  // would undo them (an invoice's move out of PROCESSING, undone by the money that followed).
  for (const invoice of keepLines(invoiceRows))
    if (!recall(db, LOCKED_INVOICES, invoice.id)) remember(db, LOCKED_INVOICES, invoice.id, invoice)
  return allocations.sort((a, b) => a.position - b.position)
}

/**
 * Has `lockInvoicesOfPayment(db, environmentId, paymentId)`'s statement go after the
 * transaction's next statement, in its round trip (`readAhead`). Only once the payment
 * is locked, or with the statement that locks it: its allocations change only under
 * that lock, and the invoices are locked after the payment, as always.
 */
export function lockInvoicesOfPaymentAhead(db: Db, environmentId: string, paymentId: string): void {
  readAhead(
    db,
    invoicesOfKey(environmentId, paymentId),
    lockOfPayment(db, environmentId, paymentId),
  )
}

/** The read-ahead key of a payment's invoices' lock. */
const invoicesOfKey = (environmentId: string, paymentId: string) =>
  `invoices of ${environmentId} ${paymentId}`

function lockOfPayment(db: Db, environmentId: string, paymentId: string) {
  return STATEMENTS.compile('lock of payment', [environmentId, paymentId], ($) =>
    db
      .selectFrom('payment_allocations as a')
      .innerJoin('invoices', 'invoices.id', 'a.invoice_id')
      .leftJoin('invoice_lines as l', 'l.invoice_id', 'invoices.id')
      .selectAll('invoices')
      .select(LINE_COLUMNS)
      .select([
        'a.position as allocation_position',
        'a.amount as allocation_amount',
        'a.applied_amount as allocation_applied_amount',
      ])
      .where('a.payment_id', '=', $(1))
      .where('invoices.environment_id', '=', $(0))
      // Locked in the order of their ids, as a new payment locks them (`createPaymentRecord`).
      .orderBy('invoices.id')
      .orderBy('l.position')
      .forUpdate('invoices'),
  )
}

/**
 * Updates an invoice. One this transaction holds locked is updated in memory and
 * written with the transaction's next statement on invoices or its commit.
 */
export async function updateInvoice(
  db: Db,
  id: string,
  changes: Updateable<InvoiceTable>,
): Promise<Invoice> {
  return updateHeldRow(db, 'invoices', LOCKED_INVOICES, id, changes, () =>
    db
      .updateTable('invoices')
      .set(changes)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow(),
  )
}

/** The invoice locks, built once (`StatementCache`). */
const STATEMENTS = new StatementCache()

/** Lines are written with their invoice and never changed, so a read one stays true. */
const LINES = new BoundedCache<string, InvoiceLine[]>(10_000)

/** Drops the lines this process keeps: it then reads them as a process that never saw them. */
export function forgetInvoiceLines(): void {
  LINES.clear()
}

export async function linesOf(db: Db, invoiceIds: string[]): Promise<InvoiceLine[]> {
  if (invoiceIds.length === 0) return []
  const [only] = invoiceIds
  const known = invoiceIds.length === 1 && only ? LINES.get(only) : undefined
  if (known) return known.map((line) => ({ ...line }))
  const lines = await db
    .selectFrom('invoice_lines')
    .selectAll()
    .where('invoice_id', 'in', invoiceIds)
    .orderBy('invoice_id')
    .orderBy('position')
    .execute()
  // Not before the lines exist: an invoice is created with its lines, in one transaction.
  if (only && invoiceIds.length === 1 && lines.length > 0) LINES.set(only, lines)
  return lines
}

/** The next human-readable number of the environment; the counter row stays locked until commit, so numbers never repeat or skip. */
export async function nextInvoiceNumber(db: Db, environmentId: string): Promise<bigint> {
  // A number another invoice of the environment holds (a Stripe invoice mirrored with its own
  // number, `INV-000002` from an account whose prefix is `INV`) is passed over: given again,
  // it would fail every finalization on the unique number, the counter rolled back with it.
  // Whether it is taken comes back with it, in the same statement.
  for (;;) {
    const row = await db
      .insertInto('invoice_sequences')
      .values({ environment_id: environmentId, last_number: 1n })
      .onConflict((oc) =>
        oc
          .column('environment_id')
          .doUpdateSet({ last_number: sql<bigint>`invoice_sequences.last_number + 1` }),
      )
      .returning([
        'last_number',
        sql<boolean>`exists (select 1 from invoices where invoices.environment_id = ${environmentId}
          and invoices.number = 'INV-' || lpad(invoice_sequences.last_number::text, greatest(6, length(invoice_sequences.last_number::text)), '0'))`.as(
          'taken',
        ),
      ])
      .executeTakeFirstOrThrow()
    if (!row.taken) return row.last_number
  }
}

export interface InvoiceFilters {
  customerId?: string | undefined
  subscriptionId?: string | undefined
  invoiceStatus?: InvoiceStatus | undefined
  paymentStatus?: InvoicePaymentStatus | undefined
  currency?: string | undefined
  source?: 'native' | 'stripe' | undefined
}

export async function listInvoices(
  db: Db,
  environmentId: string,
  filters: InvoiceFilters,
  request: ListRequest<InvoiceSortField>,
): Promise<{ items: Invoice[]; total: number }> {
  let query = db.selectFrom('invoices').selectAll().where('environment_id', '=', environmentId)
  if (filters.customerId) query = query.where('customer_id', '=', filters.customerId)
  if (filters.subscriptionId) query = query.where('subscription_id', '=', filters.subscriptionId)
  if (filters.invoiceStatus) query = query.where('invoice_status', '=', filters.invoiceStatus)
  if (filters.paymentStatus) query = query.where('payment_status', '=', filters.paymentStatus)
  if (filters.currency) query = query.where('currency', '=', filters.currency)
  if (filters.source) query = query.where('source', '=', filters.source)
  return fetchPage(query, 'invoices', request, { sortKeys: { number: NUMBER_ORDER } })
}

/**
 * Invoice numbers in numeric order: `INV-` and at least six digits, so from INV-1000000 on a
 * number is longer, and as text it would sort before INV-999999. The shorter first, then as
 * text, is numeric order for numbers of one prefix (a Stripe replica's keeps Stripe's
 * number). Drafts, without a number, come last ascending, as before. No index serves this
 * sort, nor did one serve the text order: the environment's invoices are read and sorted.
 */
const NUMBER_ORDER = [sql`length(invoices.number)`, sql.ref('invoices.number')]

/**
 * Takes the invoices whose automatic charge is due, moving their attempt time to
 * `holdUntil` in the same statement: two workers never charge one invoice at once, and
 * an invoice whose worker dies mid-charge comes due again then instead of being forgotten.
 * The worker sets the real next attempt (or none) when the charge has an answer.
 */
export async function claimDueAutomaticCharges(
  db: Db,
  at: Date,
  limit: number,
  holdUntil: Date,
): Promise<{ id: string; tenant_id: string; environment_id: string; customer_id: string }[]> {
  const result = await sql<{
    id: string
    tenant_id: string
    environment_id: string
    customer_id: string
  }>`
    update invoices set next_payment_attempt = ${holdUntil}
    where id in (
      select id from invoices
      where next_payment_attempt <= ${at} and invoice_status = 'FINALIZED'
        and payment_status not in ('SUCCEEDED', 'OVERPAID', 'PARTIALLY_REFUNDED', 'REFUNDED')
        -- A cancelled subscription's invoices are no longer charged (a retry queued by a
        -- charge that was running as it was cancelled, or one ended at its period's end).
        and not exists (
          select 1 from subscriptions s
          where s.id = invoices.subscription_id and s.status = 'canceled'
        )
        -- Nor those of a customer who has turned automatic payment off since.
        and exists (
          select 1 from customers c where c.id = invoices.customer_id and c.auto_pay
        )
      order by next_payment_attempt
      limit ${limit}
      for update skip locked
    )
    returning id, tenant_id, environment_id, customer_id
  `.execute(db)
  return result.rows
}

/**
 * Ends the automatic charges of an invoice the job charged, unless something queued its next
 * attempt since the claim (`holdUntil`): a provider's late report that the charge failed.
 */
export async function releaseAutomaticCharge(
  db: Db,
  invoiceId: string,
  holdUntil: Date,
): Promise<void> {
  await db
    .updateTable('invoices')
    .set({ next_payment_attempt: null })
    .where('id', '=', invoiceId)
    .where('next_payment_attempt', '=', holdUntil)
    .execute()
}
