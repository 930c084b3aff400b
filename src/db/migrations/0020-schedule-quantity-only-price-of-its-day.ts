import { type Kysely, sql } from 'kysely'

/**
 * Migration 0015 read a pending change that names a quantity as a change of the quantity alone
 * when its price was the one the subscription billed at the upgrade; it meant the one billed
 * when the change was made (the old code gave a quantity change the price of its day). A
 * quantity change made before a price change that has applied since kept its old price, and
 * brought it back at its renewal. Those still pending, made before 0015 ran (Kysely records
 * when: a change made since that names a price is the merchant's choice of it), whose price
 * is the one the subscription billed when it was made, now name no price. What it billed
 * then is the price on its last invoice by that time: a renewal changes the price it bills
 * and writes its invoice in one transaction.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    update subscription_schedules s set price_id = null
      where s.status = 'scheduled' and s.quantity is not null
        and s.created_at < (
          select m."timestamp"::timestamptz from kysely_migration m
            where m.name = '0015-schedule-quantity-only')
        and s.price_id = (
          select l.price_id from invoices i join invoice_lines l on l.invoice_id = i.id
            where i.subscription_id = s.subscription_id and i.created_at <= s.created_at
              and l.price_id is not null
            order by i.created_at desc, i.id desc, l.position
            limit 1);
  `.execute(db)
}

/**
 * Nothing to undo: the changes it cleared change the quantity alone, as 0015 has them name
 * it; their old price would bring the bug back. 0015's own `down` gives every change naming
 * no price one again.
 */
export async function down(_db: Kysely<unknown>): Promise<void> {}
