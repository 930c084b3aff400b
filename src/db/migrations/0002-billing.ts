import { type Kysely, sql } from 'kysely'

/**
 * Customers, payment methods, the balance ledger, products and prices, discounts,
 * invoices (with per-environment numbering), orders, subscriptions and their
 * schedules, and the event outbox.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table customers (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      name text not null,
      email text,
      external_id text,
      billing_address jsonb,
      metadata jsonb not null default '{}',
      auto_pay boolean not null default false,
      default_payment_method_id text,
      gateway_customer_ids jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create unique index customers_external_id_key on customers (environment_id, external_id) where external_id is not null;
    create index customers_environment_created_idx on customers (environment_id, created_at desc, id desc);
    create index customers_environment_email_idx on customers (environment_id, lower(email));

    create table payment_methods (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      customer_id text not null references customers(id),
      gateway text not null,
      gateway_payment_method_id text not null,
      type text not null default 'card',
      card_brand text,
      card_last4 text,
      card_exp_month integer,
      card_exp_year integer,
      created_at timestamptz not null default now(),
      detached_at timestamptz
    );
    create unique index payment_methods_gateway_key on payment_methods (environment_id, gateway, gateway_payment_method_id);
    create index payment_methods_customer_idx on payment_methods (customer_id, created_at desc);

    create table customer_balances (
      customer_id text not null references customers(id),
      currency text not null,
      environment_id text not null references environments(id),
      balance bigint not null check (balance >= 0),
      updated_at timestamptz not null default now(),
      primary key (customer_id, currency)
    );

    create table balance_transactions (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      customer_id text not null references customers(id),
      type text not null check (type in ('top_up', 'payment', 'refund', 'adjustment')),
      amount bigint not null check (amount <> 0),
      currency text not null,
      balance_after bigint not null check (balance_after >= 0),
      source_type text,
      source_id text,
      description text,
      created_at timestamptz not null default now()
    );
    create index balance_transactions_customer_idx on balance_transactions (customer_id, created_at desc, id desc);
    create unique index balance_transactions_source_key on balance_transactions (customer_id, type, source_type, source_id)
      where source_id is not null and type <> 'adjustment';

    create table products (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      name text not null,
      description text,
      type text not null check (type in ('one_time', 'recurring', 'credit_top_up')),
      active boolean not null default true,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index products_environment_created_idx on products (environment_id, created_at desc, id desc);

    create table prices (
      id text primary key,
      environment_id text not null references environments(id),
      product_id text not null references products(id),
      position integer not null,
      amount bigint not null check (amount >= 0),
      currency text not null,
      interval text check (interval in ('day', 'week', 'month', 'year')),
      interval_count integer not null default 1 check (interval_count between 1 and 365),
      active boolean not null default true,
      created_at timestamptz not null default now()
    );
    create unique index prices_product_position_key on prices (product_id, position);

    create table discounts (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      code text not null,
      percent_off numeric(5, 2) check (percent_off > 0 and percent_off <= 100),
      amount_off bigint check (amount_off > 0),
      currency text,
      max_redemptions integer check (max_redemptions > 0),
      times_redeemed integer not null default 0,
      expires_at timestamptz,
      active boolean not null default true,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check ((percent_off is null) <> (amount_off is null)),
      check ((amount_off is null) = (currency is null)),
      check (max_redemptions is null or times_redeemed <= max_redemptions)
    );
    create unique index discounts_code_key on discounts (environment_id, lower(code));
    create index discounts_environment_created_idx on discounts (environment_id, created_at desc, id desc);

    create table invoice_sequences (
      environment_id text primary key references environments(id),
      last_number bigint not null
    );

    create table invoices (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      customer_id text not null references customers(id),
      number text,
      currency text not null,
      invoice_status text not null check (invoice_status in ('DRAFT', 'FINALIZED', 'VOIDED', 'UNCOLLECTIBLE')),
      payment_status text not null
        check (payment_status in ('PENDING', 'PROCESSING', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'PARTIALLY_REFUNDED', 'REFUNDED')),
      collection_method text not null check (collection_method in ('charge_automatically', 'send_invoice')),
      billing_reason text not null,
      subtotal bigint not null,
      total_discount bigint not null default 0,
      total bigint not null,
      amount_due bigint not null,
      amount_paid bigint not null default 0,
      amount_refunded bigint not null default 0,
      amount_remaining bigint not null,
      due_date timestamptz,
      payment_window_days integer check (payment_window_days > 0),
      payment_window_ends_at timestamptz,
      discount_id text references discounts(id),
      discount_code text,
      order_id text,
      subscription_id text,
      period_start timestamptz,
      period_end timestamptz,
      source text not null default 'native' check (source in ('native', 'stripe')),
      stripe_invoice_id text,
      next_payment_attempt timestamptz,
      description text,
      metadata jsonb not null default '{}',
      finalized_at timestamptz,
      paid_at timestamptz,
      voided_at timestamptz,
      marked_uncollectible_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check (amount_paid >= 0 and amount_refunded >= 0 and amount_refunded <= amount_paid),
      check (total >= 0 and total_discount >= 0 and total_discount <= subtotal)
    );
    create unique index invoices_number_key on invoices (environment_id, number) where number is not null;
    create unique index invoices_stripe_key on invoices (environment_id, stripe_invoice_id) where stripe_invoice_id is not null;
    create index invoices_environment_created_idx on invoices (environment_id, created_at desc, id desc);
    create index invoices_customer_idx on invoices (environment_id, customer_id, created_at desc);
    create index invoices_subscription_idx on invoices (subscription_id, created_at desc) where subscription_id is not null;
    create index invoices_next_attempt_idx on invoices (next_payment_attempt) where next_payment_attempt is not null;

    create table invoice_lines (
      id text primary key,
      invoice_id text not null references invoices(id),
      position integer not null,
      description text not null,
      quantity integer not null check (quantity > 0),
      unit_amount bigint not null check (unit_amount >= 0),
      amount bigint not null,
      price_id text references prices(id),
      period_start timestamptz,
      period_end timestamptz,
      unique (invoice_id, position)
    );

    create table discount_redemptions (
      id text primary key,
      environment_id text not null references environments(id),
      discount_id text not null references discounts(id),
      invoice_id text not null references invoices(id),
      customer_id text not null references customers(id),
      amount bigint not null,
      created_at timestamptz not null default now(),
      unique (discount_id, invoice_id)
    );

    create table orders (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      customer_id text not null references customers(id),
      type text not null check (type in ('SUBSCRIPTION', 'CREDIT_TOP_UP', 'ONE_TIME_PRODUCT')),
      status text not null check (status in ('PENDING', 'FULFILLED', 'CANCELLED')),
      product_id text references products(id),
      price_id text references prices(id),
      quantity integer not null default 1 check (quantity > 0),
      amount bigint not null check (amount >= 0),
      currency text not null,
      invoice_id text not null references invoices(id),
      subscription_id text,
      metadata jsonb not null default '{}',
      fulfilled_at timestamptz,
      cancelled_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index orders_environment_created_idx on orders (environment_id, created_at desc, id desc);
    create index orders_customer_idx on orders (environment_id, customer_id, created_at desc);
    create unique index orders_invoice_key on orders (invoice_id);

    create table subscriptions (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      customer_id text not null references customers(id),
      product_id text not null references products(id),
      price_id text not null references prices(id),
      quantity integer not null default 1 check (quantity > 0),
      status text not null check (status in ('incomplete', 'active', 'past_due', 'canceled')),
      currency text not null,
      collection_method text not null check (collection_method in ('charge_automatically', 'send_invoice')),
      interval text not null check (interval in ('day', 'week', 'month', 'year')),
      interval_count integer not null default 1,
      amount bigint not null check (amount >= 0),
      billing_cycle_anchor timestamptz not null,
      current_period_start timestamptz not null,
      current_period_end timestamptz not null,
      cancel_at_period_end boolean not null default false,
      canceled_at timestamptz,
      ended_at timestamptz,
      started_at timestamptz,
      order_id text,
      latest_invoice_id text,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index subscriptions_environment_created_idx on subscriptions (environment_id, created_at desc, id desc);
    create index subscriptions_renewal_idx on subscriptions (current_period_end) where status in ('active', 'past_due');

    create table subscription_schedules (
      id text primary key,
      environment_id text not null references environments(id),
      subscription_id text not null references subscriptions(id),
      price_id text not null references prices(id),
      quantity integer check (quantity > 0),
      effective_at timestamptz not null,
      status text not null check (status in ('scheduled', 'applied', 'cancelled')),
      applied_at timestamptz,
      created_at timestamptz not null default now()
    );
    create index subscription_schedules_due_idx on subscription_schedules (subscription_id, effective_at) where status = 'scheduled';

    create table events (
      id text primary key,
      tenant_id text not null references tenants(id),
      environment_id text not null references environments(id),
      type text not null,
      object_type text not null,
      object_id text not null,
      data jsonb not null,
      created_at timestamptz not null default now()
    );
    create index events_environment_created_idx on events (environment_id, created_at desc, id desc);
    create index events_object_idx on events (object_id, created_at);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table events, subscription_schedules, subscriptions, orders, discount_redemptions, invoice_lines,
      invoices, invoice_sequences, discounts, prices, products, balance_transactions, customer_balances,
      payment_methods, customers
  `.execute(db)
}
