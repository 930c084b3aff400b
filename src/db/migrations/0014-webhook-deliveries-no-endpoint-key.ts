import { type Kysely, sql } from 'kysely'

/**
 * A delivery no longer references its endpoint by foreign key. Deliveries are written
 * with the events of a transaction from the endpoints that process knew of; an endpoint
 * deleted meanwhile (in another process, or between the read and the commit) made the
 * key fail the whole transaction: the payment or refund that recorded the events was
 * lost. Deleting an endpoint deletes its deliveries itself, and a delivery whose
 * endpoint is gone is skipped (`attemptDelivery`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhook_deliveries drop constraint webhook_deliveries_endpoint_id_fkey;
    create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index webhook_deliveries_endpoint_idx;
    delete from webhook_deliveries d
      where not exists (select 1 from webhook_endpoints e where e.id = d.endpoint_id);
    alter table webhook_deliveries add constraint webhook_deliveries_endpoint_id_fkey
      foreign key (endpoint_id) references webhook_endpoints (id) on delete cascade;
  `.execute(db)
}
