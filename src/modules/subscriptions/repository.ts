import type { Insertable, Updateable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type {
  Subscription,
  SubscriptionSchedule,
  SubscriptionScheduleTable,
  SubscriptionStatus,
  SubscriptionTable,
} from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export async function insertSubscription(
  db: Db,
  row: Insertable<SubscriptionTable>,
): Promise<Subscription> {
  return db.insertInto('subscriptions').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findSubscription(
  db: Db,
  environmentId: string,
  id: string,
  customerId: string | null = null,
): Promise<Subscription | undefined> {
  let query = db
    .selectFrom('subscriptions')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
  if (customerId !== null) query = query.where('customer_id', '=', customerId)
  return query.executeTakeFirst()
}

export async function lockSubscription(
  db: Db,
  environmentId: string,
  id: string,
): Promise<Subscription | undefined> {
  return db
    .selectFrom('subscriptions')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

export async function updateSubscription(
  db: Db,
  id: string,
  changes: Updateable<SubscriptionTable>,
): Promise<Subscription> {
  return db
    .updateTable('subscriptions')
    .set(changes)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

/** Subscriptions whose period has ended by `at`, oldest first, across every tenant (the renewal job's work list). */
export async function findDueSubscriptions(
  db: Db,
  at: Date,
  limit: number,
  environmentId?: string,
  except: string[] = [],
): Promise<{ id: string; tenant_id: string; environment_id: string }[]> {
  let query = db
    .selectFrom('subscriptions')
    .select(['id', 'tenant_id', 'environment_id'])
    .where('status', 'in', ['active', 'past_due'])
    .where('current_period_end', '<=', at)
  if (environmentId) query = query.where('environment_id', '=', environmentId)
  if (except.length > 0) query = query.where('id', 'not in', except)
  return query.orderBy('current_period_end').limit(limit).execute()
}

/**
 * `incomplete` subscriptions (their first invoice never paid) cancelled at the end of a period
 * that has ended by `at`: the renewal job's other work list, ended as a cancel now would.
 */
export async function findDueIncompleteCancellations(
  db: Db,
  at: Date,
  limit: number,
  except: string[] = [],
): Promise<{ id: string; tenant_id: string; environment_id: string }[]> {
  let query = db
    .selectFrom('subscriptions')
    .select(['id', 'tenant_id', 'environment_id'])
    .where('status', '=', 'incomplete')
    .where('cancel_at_period_end', '=', true)
    .where('current_period_end', '<=', at)
  if (except.length > 0) query = query.where('id', 'not in', except)
  return query.orderBy('current_period_end').limit(limit).execute()
}

export interface SubscriptionFilters {
  status?: SubscriptionStatus | undefined
  customerId?: string | undefined
}

export async function listSubscriptions(
  db: Db,
  environmentId: string,
  filters: SubscriptionFilters,
  request: ListRequest<'created_at' | 'current_period_end'>,
): Promise<{ items: Subscription[]; total: number }> {
  let query = db.selectFrom('subscriptions').selectAll().where('environment_id', '=', environmentId)
  if (filters.status) query = query.where('status', '=', filters.status)
  if (filters.customerId) query = query.where('customer_id', '=', filters.customerId)
  return fetchPage(query, 'subscriptions', request)
}

export async function insertSchedule(
  db: Db,
  row: Insertable<SubscriptionScheduleTable>,
): Promise<SubscriptionSchedule> {
  return db
    .insertInto('subscription_schedules')
    .values(row)
    .returningAll()
    .executeTakeFirstOrThrow()
}

export async function schedulesOf(
  db: Db,
  subscriptionIds: string[],
): Promise<SubscriptionSchedule[]> {
  if (subscriptionIds.length === 0) return []
  return db
    .selectFrom('subscription_schedules')
    .selectAll()
    .where('subscription_id', 'in', subscriptionIds)
    .orderBy('effective_at')
    .orderBy('created_at')
    .execute()
}

/** Scheduled changes due by `at`, in the order they take effect. */
export async function dueSchedules(
  db: Db,
  subscriptionId: string,
  at: Date,
): Promise<SubscriptionSchedule[]> {
  return db
    .selectFrom('subscription_schedules')
    .selectAll()
    .where('subscription_id', '=', subscriptionId)
    .where('status', '=', 'scheduled')
    .where('effective_at', '<=', at)
    .orderBy('effective_at')
    .orderBy('created_at')
    .execute()
}

export async function markSchedules(
  db: Db,
  subscriptionId: string,
  ids: string[] | 'all-scheduled',
  status: 'applied' | 'cancelled',
  at: Date,
): Promise<void> {
  let query = db
    .updateTable('subscription_schedules')
    .set({ status, applied_at: status === 'applied' ? at : null })
    .where('subscription_id', '=', subscriptionId)
    .where('status', '=', 'scheduled')
  if (ids !== 'all-scheduled') {
    if (ids.length === 0) return
    query = query.where('id', 'in', ids)
  }
  await query.execute()
}

/** The subscription's invoices with an automatic charge queued (`next_payment_attempt` set). */
export async function invoicesWithQueuedCharge(
  db: Db,
  environmentId: string,
  subscriptionId: string,
): Promise<string[]> {
  const rows = await db
    .selectFrom('invoices')
    .select('id')
    .where('environment_id', '=', environmentId)
    .where('subscription_id', '=', subscriptionId)
    .where('next_payment_attempt', 'is not', null)
    .orderBy('id')
    .execute()
  return rows.map((row) => row.id)
}

export async function countUnpaidInvoices(
  db: Db,
  subscriptionId: string,
  exceptInvoiceId: string,
): Promise<number> {
  const row = await db
    .selectFrom('invoices')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('subscription_id', '=', subscriptionId)
    .where('id', '<>', exceptInvoiceId)
    .where('invoice_status', '=', 'FINALIZED')
    .where('payment_status', 'not in', ['SUCCEEDED', 'OVERPAID', 'PARTIALLY_REFUNDED', 'REFUNDED'])
    .executeTakeFirstOrThrow()
  return Number(row.n)
}
