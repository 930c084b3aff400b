import { type Kysely, sql } from 'kysely'

/**
 * Merchant webhooks: the endpoints a merchant registers (`POST /v1/webhook_endpoints`) and
 * one delivery per (endpoint, event) it subscribes to, written with the event in the
 * transaction that records it (`src/modules/events/service.ts`). Inserting a delivery
 * queues the graphile-worker job that sends it (the trigger below), so a delivery exists,
 * and is sent, if and only if its event committed.
 *
 * Every change to an endpoint is announced on `payrail_webhook_endpoints` with its
 * environment, so each process drops the endpoints it keeps for that environment.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table webhook_endpoints (
      id text primary key,
      tenant_id text not null references tenants (id),
      environment_id text not null references environments (id),
      url text not null,
      description text,
      enabled_events text[] not null,
      status text not null default 'enabled' check (status in ('enabled', 'disabled')),
      secret text not null,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index webhook_endpoints_environment_idx
      on webhook_endpoints (environment_id, created_at desc, id desc);

    create table webhook_deliveries (
      id text primary key,
      tenant_id text not null,
      environment_id text not null,
      endpoint_id text not null references webhook_endpoints (id) on delete cascade,
      event_id text not null,
      event_type text not null,
      status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
      attempts integer not null default 0,
      response_status integer,
      response_body text,
      error_message text,
      last_attempt_at timestamptz,
      delivered_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      unique (endpoint_id, event_id)
    );
    create index webhook_deliveries_environment_idx
      on webhook_deliveries (environment_id, created_at desc, id desc);
    create index webhook_deliveries_event_idx on webhook_deliveries (event_id);

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
    create trigger webhook_deliveries_enqueue after insert on webhook_deliveries
      for each row execute function webhook_deliveries_enqueue();

    create function webhook_endpoints_notify() returns trigger language plpgsql as $$
    begin
      perform pg_notify('payrail_webhook_endpoints', coalesce(new.environment_id, old.environment_id));
      return null;
    end $$;
    create trigger webhook_endpoints_notify after insert or update or delete on webhook_endpoints
      for each row execute function webhook_endpoints_notify();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table webhook_deliveries;
    drop function webhook_deliveries_enqueue();
    drop table webhook_endpoints;
    drop function webhook_endpoints_notify();
  `.execute(db)
}
