import { type Kysely, sql } from 'kysely'

/**
 * The invoices a payment pays, in allocation order, kept on the payment row: they
 * never change after creation, and every payment response and event shows them,
 * so reading a payment no longer needs its allocations.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table payments add column invoice_ids text[] not null default '{}';
    update payments p set invoice_ids = a.ids
      from (select payment_id, array_agg(invoice_id order by position) as ids
            from payment_allocations group by payment_id) a
      where a.payment_id = p.id;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table payments drop column invoice_ids`.execute(db)
}
