import { type Insertable, sql, type Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { Customer, CustomerTable } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import { StatementCache } from '../../db/statement-cache.ts'
import { readAhead, takeReadAhead } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'

export type CustomerSortField = 'created_at' | 'name' | 'email'

export interface CustomerFilters {
  email?: string | undefined
  externalId?: string | undefined
  name?: string | undefined
}

export async function insertCustomer(db: Db, row: Insertable<CustomerTable>): Promise<Customer> {
  return db.insertInto('customers').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findCustomer(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Customer | undefined> {
  const query = STATEMENTS.compile('find', [environmentId, id], ($) =>
    db
      .selectFrom('customers')
      .selectAll()
      .where('environment_id', '=', $(0))
      .where('id', '=', $(1)),
  )
  return (await db.executeQuery(query)).rows[0]
}

/** `findCustomer` (every payment link reads its customer), built once (`StatementCache`). */
const STATEMENTS = new StatementCache()

/**
 * Has the customer of invoice `invoiceId` read after the transaction's next statement,
 * in its round trip (`readAhead`), for `takeCustomerOfInvoice`: a payment the gateway is
 * then asked for (a link, a card charge) needs its customer, and the transaction that
 * writes the payment has the invoice's lock to carry the read. The invoice's customer
 * never changes; the row is as fresh as a read after the commit would be, give or take
 * the transaction.
 */
export function customerOfInvoiceAhead(db: Db, environmentId: string, invoiceId: string): void {
  const query = STATEMENTS.compile('of invoice', [environmentId, invoiceId], ($) =>
    db
      .selectFrom('customers')
      .selectAll()
      .where('environment_id', '=', $(0))
      .where('id', '=', (eb) =>
        eb.selectFrom('invoices').select('customer_id').where('id', '=', $(1)),
      ),
  )
  readAhead(db, customerOfInvoiceKey(invoiceId), query)
}

/** The customer `customerOfInvoiceAhead` read, or undefined if it never went. */
export async function takeCustomerOfInvoice(
  db: Db,
  invoiceId: string,
): Promise<Customer | undefined> {
  const rows = takeReadAhead<Customer>(db, customerOfInvoiceKey(invoiceId))
  return rows ? (await rows)[0] : undefined
}

const customerOfInvoiceKey = (invoiceId: string) => `customer of ${invoiceId}`

export async function lockCustomer(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Customer | undefined> {
  return db
    .selectFrom('customers')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .forNoKeyUpdate()
    .executeTakeFirst()
}

export async function updateCustomer(
  db: Db,
  environmentId: string,
  id: string,
  changes: Updateable<CustomerTable>,
): Promise<Customer | undefined> {
  return db
    .updateTable('customers')
    .set(changes)
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
}

export async function listCustomers(
  db: Db,
  environmentId: string,
  filters: CustomerFilters,
  request: ListRequest<CustomerSortField>,
): Promise<{ items: Customer[]; total: number }> {
  let query = db.selectFrom('customers').selectAll().where('environment_id', '=', environmentId)
  if (filters.email)
    query = query.where((eb) => eb(eb.fn('lower', ['email']), '=', filters.email?.toLowerCase()))
  if (filters.externalId) query = query.where('external_id', '=', filters.externalId)
  if (filters.name) query = query.where('name', 'ilike', `%${escapeLike(filters.name)}%`)
  return fetchPage(query, 'customers', request)
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`)
}

/** Makes `paymentMethodId` the customer's default; the customer as it is then, or undefined when it already was. */
export async function setDefaultPaymentMethodRow(
  db: Db,
  customerId: string,
  paymentMethodId: string,
  at: Date,
): Promise<Customer | undefined> {
  return db
    .updateTable('customers')
    .set({ default_payment_method_id: paymentMethodId, updated_at: at })
    .where('id', '=', customerId)
    .where(sql<boolean>`default_payment_method_id is distinct from ${paymentMethodId}`)
    .returningAll()
    .executeTakeFirst()
}

/** Remembers the customer's id at a gateway (`{"stripe":"cus_…"}`), created on first use. */
export async function setGatewayCustomerId(
  db: Db,
  customerId: string,
  gateway: string,
  id: string,
  at: Date,
): Promise<void> {
  await db
    .updateTable('customers')
    .set((eb) => ({
      gateway_customer_ids: sql`${eb.ref('gateway_customer_ids')} || jsonb_build_object(${gateway}::text, ${id}::text)`,
      updated_at: at,
    }))
    .where('id', '=', customerId)
    .execute()
}
