import { type Kysely, sql } from 'kysely'

/**
 * Local replicas of a Stripe account's billing objects (subscriptions, schedules,
 * products, prices, balance transactions, invoices as Stripe shows them), for
 * merchants whose system of record is Stripe. Stripe invoices are also mirrored
 * into `invoices` (source `stripe`) so other rails can pay them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table stripe_replicas (
      environment_id text not null references environments(id),
      object_type text not null,
      stripe_id text not null,
      data jsonb not null,
      stripe_created timestamptz,
      synced_at timestamptz not null default now(),
      primary key (environment_id, object_type, stripe_id)
    );
    create index stripe_replicas_type_created_idx on stripe_replicas (environment_id, object_type, stripe_created desc);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table stripe_replicas`.execute(db)
}
