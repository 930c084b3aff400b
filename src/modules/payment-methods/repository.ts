import type { Insertable } from 'kysely'
import type { Db } from '../../db/client.ts'
import type { PaymentMethod, PaymentMethodTable } from '../../db/database.ts'

export async function insertPaymentMethod(
  db: Db,
  row: Insertable<PaymentMethodTable>,
): Promise<PaymentMethod> {
  return db
    .insertInto('payment_methods')
    .values(row)
    .onConflict((oc) =>
      // The same gateway method saved twice (a retried webhook) is one method.
      oc
        .columns(['environment_id', 'gateway', 'gateway_payment_method_id'])
        .doUpdateSet({ detached_at: null }),
    )
    .returningAll()
    .executeTakeFirstOrThrow()
}

export async function findPaymentMethod(
  db: Db,
  environmentId: string,
  customerId: string,
  id: string,
): Promise<PaymentMethod | undefined> {
  return db
    .selectFrom('payment_methods')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('customer_id', '=', customerId)
    .where('id', '=', id)
    .where('detached_at', 'is', null)
    .executeTakeFirst()
}

export async function listPaymentMethods(
  db: Db,
  environmentId: string,
  customerId: string,
): Promise<PaymentMethod[]> {
  return db
    .selectFrom('payment_methods')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('customer_id', '=', customerId)
    .where('detached_at', 'is', null)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute()
}
