import type { Insertable, Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { Order, OrderStatus, OrderTable, OrderType } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertOrder(db: Db, row: Insertable<OrderTable>): Promise<Order> {
  return db.insertInto('orders').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findOrder(
  db: Db,
  environmentId: string,
  id: string,
  customerId: string | null = null,
): Promise<Order | undefined> {
  let query = db
    .selectFrom('orders')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  if (customerId !== null) query = query.where('customer_id', '=', customerId)
  return query.executeTakeFirst()
}

export async function lockOrderByInvoice(
  db: Db,
  environmentId: string,
  invoiceId: string,
): Promise<Order | undefined> {
  return db
    .selectFrom('orders')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('invoice_id', '=', invoiceId)
    .forUpdate()
    .executeTakeFirst()
}

export async function updateOrder(
  db: Db,
  id: string,
  changes: Updateable<OrderTable>,
): Promise<Order> {
  return db
    .updateTable('orders')
    .set(changes)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

export interface OrderFilters {
  status?: OrderStatus | undefined
  type?: OrderType | undefined
  customerId?: string | undefined
}

export async function listOrders(
  db: Db,
  environmentId: string,
  filters: OrderFilters,
  request: ListRequest<'created_at' | 'amount'>,
): Promise<{ items: Order[]; total: number }> {
  let query = db.selectFrom('orders').selectAll().where('environment_id', '=', environmentId)
  if (filters.status) query = query.where('status', '=', filters.status)
  if (filters.type) query = query.where('type', '=', filters.type)
  if (filters.customerId) query = query.where('customer_id', '=', filters.customerId)
  return fetchPage(query, 'orders', request)
}
