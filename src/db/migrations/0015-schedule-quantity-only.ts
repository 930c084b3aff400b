import { type Kysely, sql } from 'kysely'

/**
 * A scheduled change of a subscription's quantity alone names no price (`price_id` null):
 * the renewal folds the changes due in order, each changing only what it names. Before, a
 * quantity-only change carried the price of its day, and the last change due won: a price
 * change scheduled before it was lost, and a quantity scheduled before a price change too.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Pending changes of the quantity made before: they carry the price of their day, the one
  // on the subscription's last invoice by then (a renewal changes the price it bills and
  // writes its invoice in one transaction). It compared with the price billed at the upgrade,
  // and a change made before a price change that had applied since kept its old price (its
  // renewal brought it back): databases that ran it so are corrected by 0020.
  await sql`
    alter table subscription_schedules alter column price_id drop not null;
    update subscription_schedules s set price_id = null
      where s.status = 'scheduled' and s.quantity is not null
        and s.price_id = (
          select l.price_id from invoices i join invoice_lines l on l.invoice_id = i.id
            where i.subscription_id = s.subscription_id and i.created_at <= s.created_at
              and l.price_id is not null
            order by i.created_at desc, i.id desc, l.position
            limit 1);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    update subscription_schedules s set price_id = sub.price_id
      from subscriptions sub where sub.id = s.subscription_id and s.price_id is null;
    alter table subscription_schedules alter column price_id set not null;
  `.execute(db)
}
