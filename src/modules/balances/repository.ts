import { sql } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { BalanceTransaction, BalanceTransactionType } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

/** Adds a credit to the running balance, creating it at zero first; returns the new balance. */
export async function creditBalance(
  db: Db,
  row: { customerId: string; currency: string; environmentId: string; amount: bigint; at: Date },
): Promise<bigint> {
  const result = await db
    .insertInto('customer_balances')
    .values({
      customer_id: row.customerId,
      currency: row.currency,
      environment_id: row.environmentId,
      balance: row.amount,
      updated_at: row.at,
    })
    .onConflict((oc) =>
      oc.columns(['customer_id', 'currency']).doUpdateSet({
        balance: sql<bigint>`customer_balances.balance + excluded.balance`,
        updated_at: row.at,
      }),
    )
    .returning('balance')
    .executeTakeFirstOrThrow()
  return result.balance
}

/**
 * Takes `amount` off the balance only if that leaves it at zero or more, in one
 * statement: concurrent debits queue on the row lock and the last one short fails.
 * Returns the new balance, or `undefined` when the balance does not cover it.
 */
export async function debitBalance(
  db: Db,
  row: { customerId: string; currency: string; amount: bigint; at: Date },
): Promise<bigint | undefined> {
  const result = await db
    .updateTable('customer_balances')
    .set({ balance: sql<bigint>`balance - ${row.amount}`, updated_at: row.at })
    .where('customer_id', '=', row.customerId)
    .where('currency', '=', row.currency)
    .where('balance', '>=', row.amount)
    .returning('balance')
    .executeTakeFirst()
  return result?.balance
}

export async function insertBalanceTransaction(
  db: Db,
  row: {
    id: string
    tenant_id: string
    environment_id: string
    customer_id: string
    type: BalanceTransactionType
    amount: bigint
    currency: string
    balance_after: bigint
    source_type: string | null
    source_id: string | null
    description: string | null
    created_at: Date
  },
): Promise<BalanceTransaction> {
  return db.insertInto('balance_transactions').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findBalances(
  db: Db,
  customerIds: string[],
): Promise<{ customer_id: string; currency: string; balance: bigint }[]> {
  if (customerIds.length === 0) return []
  return db
    .selectFrom('customer_balances')
    .select(['customer_id', 'currency', 'balance'])
    .where('customer_id', 'in', customerIds)
    .orderBy('currency')
    .execute()
}

export async function findBalance(
  db: Db,
  customerId: string,
  currency: string,
  options: { lock?: boolean } = {},
): Promise<bigint> {
  const query = db
    .selectFrom('customer_balances')
    .select('balance')
    .where('customer_id', '=', customerId)
    .where('currency', '=', currency)
  const row = await (options.lock ? query.forUpdate() : query).executeTakeFirst()
  return row?.balance ?? 0n
}

/**
 * How much credit the ledger holds taken back for refunds of `invoiceId`: what refunds took
 * (`invoice_refund`) less what payments of it gave back since (`invoice_payment`), both with
 * `source_id` `<invoice>:…`.
 */
export async function takenBackFor(db: Db, customerId: string, invoiceId: string): Promise<bigint> {
  const row = await db
    .selectFrom('balance_transactions')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<bigint>('amount'), eb.val(0n)).as('total'))
    .where('customer_id', '=', customerId)
    .where('source_type', 'in', ['invoice_refund', 'invoice_payment'])
    .where('source_id', 'like', `${invoiceId.replace(/[\\%_]/g, '\\$&')}:%`)
    .executeTakeFirstOrThrow()
  return -BigInt(row.total)
}

export interface BalanceTransactionFilters {
  type?: BalanceTransactionType | undefined
  currency?: string | undefined
}

export async function listBalanceTransactions(
  db: Db,
  environmentId: string,
  customerId: string,
  filters: BalanceTransactionFilters,
  request: ListRequest<'created_at' | 'amount'>,
): Promise<{ items: BalanceTransaction[]; total: number }> {
  let query = db
    .selectFrom('balance_transactions')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('customer_id', '=', customerId)
  if (filters.type) query = query.where('type', '=', filters.type)
  if (filters.currency) query = query.where('currency', '=', filters.currency)
  return fetchPage(query, 'balance_transactions', request)
}

export async function findBalanceTransaction(
  db: Db,
  environmentId: string,
  id: string,
): Promise<BalanceTransaction | undefined> {
  return db
    .selectFrom('balance_transactions')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}
