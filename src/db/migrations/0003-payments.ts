import { type Kysely, sql } from 'kysely'

/**
 * Payments with their allocations to invoices, gateway attempts and state history;
 * refunds; gateway connections; inbound webhook deduplication; the sandbox
 * gateway's own provider-side records.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table gateway_connections (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      gateway text not null,
      credentials text not null,
      settings jsonb not null default '{}',
      active boolean not null default true,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create unique index gateway_connections_active_key on gateway_connections (environment_id, gateway) where active;

    create table payments (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      human_id text not null,
      customer_id text not null references customers(id),
      destination_type text not null check (destination_type in ('INVOICE', 'ORDERS')),
      destination_id text not null,
      subject text,
      amount bigint not null check (amount > 0),
      amount_paid bigint not null default 0 check (amount_paid >= 0),
      amount_reserved bigint not null default 0 check (amount_reserved >= 0),
      amount_refunded bigint not null default 0 check (amount_refunded >= 0),
      currency text not null,
      payment_status text not null,
      payment_method_type text not null
        check (payment_method_type in ('PAYMENT_LINK', 'CARD', 'CRYPTO', 'CREDITS', 'OFFLINE', 'EXTERNAL')),
      payment_method_id text,
      payment_gateway text,
      gateway_payment_id text,
      gateway_tracking_id text,
      payment_url text,
      active boolean not null default true,
      payment_date timestamptz,
      billing_address jsonb,
      description text,
      metadata jsonb not null default '{}',
      gateway_metadata jsonb not null default '{}',
      status_code text,
      error_message text,
      success_url text,
      cancel_url text,
      save_card_and_make_default boolean not null default false,
      idempotency_key text,
      track_attempts boolean not null default true,
      invoice_number text,
      discount_code text,
      created_by text,
      updated_by text,
      succeeded_at timestamptz,
      failed_at timestamptz,
      refunded_at timestamptz,
      cancelled_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check (amount_refunded <= amount_paid)
    );
    create unique index payments_human_id_key on payments (environment_id, human_id);
    create unique index payments_idempotency_key on payments (environment_id, idempotency_key) where idempotency_key is not null;
    create unique index payments_tracking_key on payments (environment_id, payment_gateway, gateway_tracking_id)
      where gateway_tracking_id is not null;
    -- Lists show active payments: partial indexes let counts run as index-only scans.
    create index payments_environment_created_idx on payments (environment_id, created_at desc, id desc) where active;
    create index payments_status_created_idx on payments (environment_id, payment_status, created_at desc, id desc) where active;
    create index payments_destination_idx on payments (environment_id, destination_id);
    create index payments_customer_idx on payments (environment_id, customer_id, created_at desc);

    create table payment_allocations (
      payment_id text not null references payments(id),
      invoice_id text not null references invoices(id),
      position integer not null,
      amount bigint not null check (amount > 0),
      applied_amount bigint not null default 0,
      primary key (payment_id, invoice_id)
    );
    create index payment_allocations_invoice_idx on payment_allocations (invoice_id);

    create table payment_attempts (
      id text primary key,
      payment_id text not null references payments(id),
      gateway text not null,
      gateway_payment_id text,
      gateway_tracking_id text,
      status text not null,
      error_code text,
      error_message text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index payment_attempts_payment_idx on payment_attempts (payment_id, created_at);

    create table payment_transitions (
      id bigint generated always as identity primary key,
      payment_id text not null references payments(id),
      from_status text,
      to_status text not null,
      cause text not null check (cause in ('api', 'webhook', 'job', 'gateway')),
      cause_id text,
      note text,
      created_at timestamptz not null default now()
    );
    create index payment_transitions_payment_idx on payment_transitions (payment_id, id);

    create table refunds (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      payment_id text not null references payments(id),
      amount bigint not null check (amount > 0),
      currency text not null,
      status text not null check (status in ('pending', 'succeeded', 'failed', 'canceled')),
      reason text,
      metadata jsonb not null default '{}',
      gateway_refund_id text,
      failure_code text,
      failure_message text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index refunds_payment_idx on refunds (payment_id, created_at);
    create index refunds_environment_created_idx on refunds (environment_id, created_at desc, id desc);

    create table webhook_events (
      id bigint generated always as identity primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      gateway text not null,
      event_id text not null,
      event_type text not null,
      payload jsonb not null,
      received_at timestamptz not null default now(),
      handled_at timestamptz,
      outcome text,
      unique (environment_id, gateway, event_id)
    );

    create table sandbox_sessions (
      id text primary key,
      environment_id text not null references environments(id),
      payment_id text not null references payments(id),
      customer_id text not null,
      mode text not null check (mode in ('card', 'crypto')),
      status text not null check (status in ('open', 'requires_action', 'confirming', 'complete', 'expired')),
      amount bigint not null,
      currency text not null,
      save_card boolean not null default false,
      success_url text,
      cancel_url text,
      tenant_id text not null references tenants(id),
      pending_card_number text,
      amount_received bigint not null default 0,
      expires_at timestamptz not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create unique index sandbox_sessions_payment_key on sandbox_sessions (payment_id);

    create table sandbox_cards (
      id text primary key,
      environment_id text not null references environments(id),
      customer_id text not null,
      number text not null,
      brand text not null,
      last4 text not null,
      exp_month integer not null,
      exp_year integer not null,
      created_at timestamptz not null default now()
    );
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table sandbox_cards, sandbox_sessions, webhook_events, refunds, payment_transitions, payment_attempts,
      payment_allocations, payments, gateway_connections
  `.execute(db)
}
