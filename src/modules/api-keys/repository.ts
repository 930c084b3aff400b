import type { Db } from '../../db/client.ts'
import type { ApiKey, EnvironmentType, NewApiKey, Role } from '../../db/database.ts'
import { fetchPage } from '../../db/list.ts'
import type { ListRequest } from '../../http/list-query.ts'

export interface ApiKeyWithEnvironment extends ApiKey {
  environment_type: EnvironmentType
}

export async function insertApiKey(db: Db, row: NewApiKey): Promise<ApiKey> {
  return db.insertInto('api_keys').values(row).returningAll().executeTakeFirstOrThrow()
}

export async function findApiKeyByHash(
  db: Db,
  keyHash: string,
): Promise<ApiKeyWithEnvironment | undefined> {
  return db
    .selectFrom('api_keys')
    .innerJoin('environments', 'environments.id', 'api_keys.environment_id')
    .selectAll('api_keys')
    .select('environments.type as environment_type')
    .where('api_keys.key_hash', '=', keyHash)
    .executeTakeFirst()
}

export async function findApiKey(
  db: Db,
  environmentId: string,
  id: string,
): Promise<ApiKey | undefined> {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .executeTakeFirst()
}

export async function listApiKeys(
  db: Db,
  environmentId: string,
  request: ListRequest<'created_at'>,
): Promise<{ items: ApiKey[]; total: number }> {
  return fetchPage(
    db
      .selectFrom('api_keys')
      .selectAll()
      .where('environment_id', '=', environmentId)
      .where('role', '=', 'admin'),
    'api_keys',
    request,
  )
}

export async function revokeApiKey(
  db: Db,
  environmentId: string,
  id: string,
  role: Role,
  at: Date,
): Promise<ApiKey | undefined> {
  return db
    .updateTable('api_keys')
    .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(at)) }))
    .where('environment_id', '=', environmentId)
    .where('id', '=', id)
    .where('role', '=', role)
    .returningAll()
    .executeTakeFirst()
}

/** Revokes every live token of a customer (role `user`); returns what was revoked. */
export async function revokeCustomerTokenRows(
  db: Db,
  environmentId: string,
  customerId: string,
  at: Date,
): Promise<Pick<ApiKey, 'id' | 'key_hash'>[]> {
  return (
    db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('environment_id', '=', environmentId)
      .where('customer_id', '=', customerId)
      .where('role', '=', 'user')
      .where('revoked_at', 'is', null)
      // Live ones: an expired token is refused already, and not counted.
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
      .returning(['id', 'key_hash'])
      .execute()
  )
}
