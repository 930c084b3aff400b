import { createHash, randomBytes } from 'node:crypto'
import { type Clock, systemClock } from '../../core/clock.ts'
import { AppError, notFound } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import type { Principal, Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { ApiKey, EnvironmentType, Role } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import type { ApiKeyCache } from './cache.ts'
import {
  findApiKey,
  findApiKeyByHash,
  insertApiKey,
  listApiKeys,
  revokeApiKey,
  revokeCustomerTokenRows,
} from './repository.ts'

export interface CreatedApiKey {
  /** The secret, returned this once and never stored. */
  key: string
  record: ApiKey
}

export interface CreateApiKeyInput extends Scope {
  role: Role
  name?: string | null
  customerId?: string | null
  expiresAt?: Date | null
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/**
 * Creates an API key (`sk_test_…` / `sk_live_…`, role `admin`) or a customer token
 * (`ct_test_…`, role `user`). Only its SHA-256 is stored. Its `created_at` is the clock's
 * (milliseconds, as the API shows it), not the database's `now()` (microseconds), so that
 * `to_date=<created_at>` includes it as it does every other object.
 *
 * @example
 * const { key } = await createApiKey(db, { tenantId, environmentId, role: 'admin' }, clock)
 */
export async function createApiKey(
  db: Db,
  input: CreateApiKeyInput,
  clock: Clock = systemClock,
): Promise<CreatedApiKey> {
  const environment = await db
    .selectFrom('environments')
    .select('type')
    .where('id', '=', input.environmentId)
    .where('tenant_id', '=', input.tenantId)
    .executeTakeFirst()
  if (!environment) throw notFound('environment', input.environmentId)
  const key = generateSecret(input.role, environment.type)
  const record = await insertApiKey(db, {
    id: newId('apiKey'),
    tenant_id: input.tenantId,
    environment_id: input.environmentId,
    role: input.role,
    key_hash: hashSecret(key),
    key_prefix: key.slice(0, key.indexOf('_', 3) + 5),
    last4: key.slice(-4),
    name: input.name ?? null,
    customer_id: input.customerId ?? null,
    expires_at: input.expiresAt ?? null,
    created_at: clock.now(),
  })
  return { key, record }
}

/**
 * `createApiKey` in a transaction of its own (`inTransaction`), for a request that
 * issues a key: a keyed request's commit then marks its `Idempotency-Key` applied.
 * Inside a transaction already, call `createApiKey`.
 */
export function issueApiKey(
  db: Db,
  input: CreateApiKeyInput,
  clock: Clock,
): Promise<CreatedApiKey> {
  return inTransaction(db, (trx) => createApiKey(trx, input, clock))
}

export type AuthenticationFailure = 'unknown' | 'revoked' | 'expired'

/**
 * Resolves a presented secret to its principal, or says why it is refused.
 * Unknown, revoked and expired keys all end as 401; the reason is for the message.
 */
export async function authenticate(
  db: Db,
  secret: string,
  clock: Clock,
  cache?: ApiKeyCache,
): Promise<{ principal: Principal } | { failure: AuthenticationFailure }> {
  const keyHash = hashSecret(secret)
  const found = cache ? await cache.lookup(db, keyHash) : await findApiKeyByHash(db, keyHash)
  if (!found) return { failure: 'unknown' }
  if (found.revoked_at) return { failure: 'revoked' }
  if (found.expires_at && found.expires_at.getTime() <= clock.now().getTime())
    return { failure: 'expired' }
  return {
    principal: {
      tenantId: found.tenant_id,
      environmentId: found.environment_id,
      environmentType: found.environment_type,
      role: found.role,
      keyId: found.id,
      customerId: found.customer_id,
    },
  }
}

export async function listKeys(db: Db, scope: Scope, request: ListRequest<'created_at'>) {
  return listApiKeys(db, scope.environmentId, request)
}

export async function getKey(db: Db, scope: Scope, id: string): Promise<ApiKey> {
  const key = await findApiKey(db, scope.environmentId, id)
  if (key?.role !== 'admin') throw notFound('api_key', id)
  return key
}

/**
 * Revokes a key: at once in this process (`cache`), and in every other process as
 * soon as the change's notification reaches it, milliseconds after the commit
 * (see `ApiKeyCache`).
 */
export async function revokeKey(
  db: Db,
  scope: Scope,
  id: string,
  clock: Clock,
  caller?: Principal,
  cache?: ApiKeyCache,
): Promise<ApiKey> {
  if (caller?.keyId === id) {
    throw new AppError('conflict', 'An API key cannot revoke itself; use another admin key', { id })
  }
  const key = await revokeApiKey(db, scope.environmentId, id, 'admin', clock.now())
  if (!key) throw notFound('api_key', id)
  cache?.forget(key.key_hash)
  return key
}

/**
 * Revokes every token of a customer at once (`DELETE /v1/customers/:id/tokens`): a token
 * handed to a browser that leaked, or a customer who left, need not wait for its expiry (up
 * to 30 days). Dropped from this process's cache at once, from the others' on the change's
 * notification, as a revoked key is. Returns how many were revoked.
 */
export async function revokeCustomerTokens(
  db: Db,
  scope: Scope,
  customerId: string,
  clock: Clock,
  cache?: ApiKeyCache,
): Promise<number> {
  const revoked = await revokeCustomerTokenRows(db, scope.environmentId, customerId, clock.now())
  for (const key of revoked) cache?.forget(key.key_hash)
  return revoked.length
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

function generateSecret(role: Role, environment: EnvironmentType): string {
  const prefix = role === 'admin' ? 'sk' : 'ct'
  let body = ''
  while (body.length < 40) {
    for (const byte of randomBytes(48)) {
      // Rejection sampling: 248 = 4 × 62, so bytes below it map to base62 without bias.
      if (byte < 248 && body.length < 40) body += BASE62[byte % 62]
    }
  }
  return `${prefix}_${environment}_${body}`
}
