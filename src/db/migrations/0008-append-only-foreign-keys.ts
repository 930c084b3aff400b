import { type Kysely, sql } from 'kysely'

/**
 * Drops the foreign keys that checked nothing the writing code had not already
 * proven, on the rows every payment writes: each cost PostgreSQL a
 * `SELECT … FOR KEY SHARE` of the parent per inserted row, about a tenth of its CPU
 * per offline payment (`docs/performance.md`).
 *
 * - `tenant_id` and `environment_id` of `payments`, `events` and `webhook_events`:
 *   they come from the authenticated key's scope, and tenants and environments are
 *   never deleted.
 * - `payment_id` of `payment_transitions` and `payment_attempts`: written only by the
 *   transaction that holds the payment locked (or inserts it), and payments are never
 *   deleted (a deleted payment is `active = false`).
 *
 * The keys that tie money to what it pays stay: a payment's customer, and an
 * allocation's payment and invoice.
 */
const DROPPED = [
  ['payments', 'payments_tenant_id_fkey', 'tenant_id', 'tenants'],
  ['payments', 'payments_environment_id_fkey', 'environment_id', 'environments'],
  ['events', 'events_tenant_id_fkey', 'tenant_id', 'tenants'],
  ['events', 'events_environment_id_fkey', 'environment_id', 'environments'],
  ['webhook_events', 'webhook_events_tenant_id_fkey', 'tenant_id', 'tenants'],
  ['webhook_events', 'webhook_events_environment_id_fkey', 'environment_id', 'environments'],
  ['payment_transitions', 'payment_transitions_payment_id_fkey', 'payment_id', 'payments'],
  ['payment_attempts', 'payment_attempts_payment_id_fkey', 'payment_id', 'payments'],
] as const

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [table, constraint] of DROPPED) {
    await sql`alter table ${sql.table(table)} drop constraint ${sql.id(constraint)}`.execute(db)
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [table, constraint, column, parent] of DROPPED) {
    await sql`alter table ${sql.table(table)} add constraint ${sql.id(constraint)}
      foreign key (${sql.id(column)}) references ${sql.table(parent)} (id)`.execute(db)
  }
}
