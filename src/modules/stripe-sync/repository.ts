import { sql } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { Customer, Invoice } from '../../db/database.ts'

/**
 * Keeps Stripe's view of an object, unless the replica already holds a view from a later
 * event (`seenAt`): Stripe delivers events out of order. A view from the same second is
 * taken (events carry whole seconds). False when the replica was left as it was.
 */
export async function upsertReplica(
  db: Db,
  row: {
    environmentId: string
    objectType: string
    stripeId: string
    data: unknown
    stripeCreated: Date | null
    seenAt: Date
    at: Date
  },
): Promise<boolean> {
  const written = await db
    .insertInto('stripe_replicas')
    .values({
      environment_id: row.environmentId,
      object_type: row.objectType,
      stripe_id: row.stripeId,
      data: JSON.stringify(row.data),
      stripe_created: row.stripeCreated,
      synced_at: row.at,
      seen_at: row.seenAt,
    })
    .onConflict((oc) =>
      oc
        .columns(['environment_id', 'object_type', 'stripe_id'])
        .doUpdateSet({
          data: JSON.stringify(row.data),
          synced_at: row.at,
          seen_at: row.seenAt,
        })
        .where((w) =>
          w.or([
            w('stripe_replicas.seen_at', 'is', null),
            w('stripe_replicas.seen_at', '<=', row.seenAt),
          ]),
        ),
    )
    .returning('stripe_id')
    .executeTakeFirst()
  return written !== undefined
}

export async function countReplicas(
  db: Db,
  environmentId: string,
  objectType: string,
): Promise<number> {
  const row = await db
    .selectFrom('stripe_replicas')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('environment_id', '=', environmentId)
    .where('object_type', '=', objectType)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Whether another invoice of the environment than `except` has `number` (numbers are unique). */
export async function invoiceNumberTaken(
  db: Db,
  environmentId: string,
  number: string,
  except: string | undefined,
): Promise<boolean> {
  let query = db
    .selectFrom('invoices')
    .select('id')
    .where('environment_id', '=', environmentId)
    .where('number', '=', number)
  if (except !== undefined) query = query.where('id', '!=', except)
  return (await query.executeTakeFirst()) !== undefined
}

export async function lockInvoiceByStripeId(
  db: Db,
  environmentId: string,
  stripeInvoiceId: string,
): Promise<Invoice | undefined> {
  return db
    .selectFrom('invoices')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('stripe_invoice_id', '=', stripeInvoiceId)
    .forUpdate()
    .executeTakeFirst()
}

export async function findCustomerByStripeId(
  db: Db,
  environmentId: string,
  stripeCustomerId: string,
): Promise<Customer | undefined> {
  return db
    .selectFrom('customers')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where(sql`gateway_customer_ids ->> 'stripe'`, '=', stripeCustomerId)
    .executeTakeFirst()
}

/**
 * Serializes, until the transaction ends, the mirroring of one Stripe customer's objects:
 * the first to see a new customer makes its Payrail customer, the others then find it.
 */
export async function lockStripeCustomer(
  db: Db,
  environmentId: string,
  stripeCustomerId: string,
): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${`stripe-customer:${environmentId}:${stripeCustomerId}`}))`.execute(
    db,
  )
}

/** What Payrail's own payments put on the invoice and it still keeps (refunds taken off). */
export async function moneyAppliedBy(db: Db, invoiceId: string): Promise<bigint> {
  const row = await db
    .selectFrom('payment_allocations')
    .select((eb) => eb.fn.sum<string>('applied_amount').as('kept'))
    .where('invoice_id', '=', invoiceId)
    .executeTakeFirst()
  return BigInt(row?.kept ?? 0)
}
