import { type Kysely, sql } from 'kysely'

/**
 * An endpoint's secret can be rolled (`POST /v1/webhook_endpoints/:id/rotate_secret`): the
 * secret it replaced keeps signing deliveries beside the new one until `previous_secret_expires_at`,
 * so the merchant can deploy the new secret without refusing a delivery meanwhile.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhook_endpoints
      add column previous_secret text,
      add column previous_secret_expires_at timestamptz,
      add constraint webhook_endpoints_previous_secret_check
        check ((previous_secret is null) = (previous_secret_expires_at is null));
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhook_endpoints
      drop constraint webhook_endpoints_previous_secret_check,
      drop column previous_secret_expires_at,
      drop column previous_secret;
  `.execute(db)
}
