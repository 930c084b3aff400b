import { type Kysely, sql } from 'kysely'

/**
 * Every change to an API key (revocation, expiry, deletion) is announced on
 * `payrail_api_keys` with the key's hash, after its transaction commits, so each
 * process can drop its cached copy of the key (`src/modules/api-keys/cache.ts`).
 * A trigger, so changes made outside Payrail's code are announced too.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function api_keys_notify() returns trigger language plpgsql as $$
    begin
      perform pg_notify('payrail_api_keys', old.key_hash);
      return null;
    end $$;

    create trigger api_keys_notify after update or delete on api_keys
      for each row execute function api_keys_notify();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop trigger api_keys_notify on api_keys;
    drop function api_keys_notify();
  `.execute(db)
}
