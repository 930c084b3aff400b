import { type Kysely, sql } from 'kysely'

/**
 * A statement's deliveries queue their jobs in one call (`graphile_worker.add_jobs`), not one
 * `add_job` per row: a payment of many orders in an environment of many endpoints writes
 * thousands of deliveries in its commit, and each `add_job` is a function call of its own
 * (about 3 ms a delivery, measured on ten orders and 300 endpoints). The jobs are the same:
 * the task, the delivery's id as payload, twelve attempts and the delivery's job key.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function webhook_deliveries_enqueue_statement() returns trigger language plpgsql as $$
    begin
      perform graphile_worker.add_jobs(array(
        select row(
          'deliver_merchant_webhook', json_build_object('deliveryId', d.id), null, null,
          12, 'merchant-webhook-' || d.id, null, null
        )::graphile_worker.job_spec
        from new_rows d
      ));
      return null;
    end $$;
    drop trigger webhook_deliveries_enqueue on webhook_deliveries;
    create trigger webhook_deliveries_enqueue after insert on webhook_deliveries
      referencing new table as new_rows
      for each statement execute function webhook_deliveries_enqueue_statement();
    drop function webhook_deliveries_enqueue();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function webhook_deliveries_enqueue() returns trigger language plpgsql as $$
    begin
      perform graphile_worker.add_job(
        'deliver_merchant_webhook',
        json_build_object('deliveryId', new.id),
        max_attempts => 12,
        job_key => 'merchant-webhook-' || new.id
      );
      return null;
    end $$;
    drop trigger webhook_deliveries_enqueue on webhook_deliveries;
    create trigger webhook_deliveries_enqueue after insert on webhook_deliveries
      for each row execute function webhook_deliveries_enqueue();
    drop function webhook_deliveries_enqueue_statement();
  `.execute(db)
}
