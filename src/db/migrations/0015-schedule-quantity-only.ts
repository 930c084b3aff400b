import { type Kysely, sql } from 'kysely'

/**
 * A scheduled change of a subscription's quantity alone names no price (`price_id` null):
 * the renewal folds the changes due in order, each changing only what it names. Before, a
 * quantity-only change carried the price of its day, and the last change due won: a price
 * change scheduled before it was lost, and a quantity scheduled before a price change too.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Pending changes of the quantity made before: they carry the price of their day.
  await sql`
    alter table subscription_schedules alter column price_id drop not null;
    update subscription_schedules s set price_id = null
      from subscriptions sub
      where sub.id = s.subscription_id and s.status = 'scheduled'
        and s.quantity is not null and s.price_id = sub.price_id;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    update subscription_schedules s set price_id = sub.price_id
      from subscriptions sub where sub.id = s.subscription_id and s.price_id is null;
    alter table subscription_schedules alter column price_id set not null;
  `.execute(db)
}
