import type { ColumnType, Insertable, Selectable, Updateable } from 'kysely'

/** `timestamptz` columns: read as Date, written as Date or ISO string, defaulting in SQL. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, never>
export type Timestamp = ColumnType<Date, Date | string, Date | string>
export type NullableTimestamp = ColumnType<Date | null, Date | string | null, Date | string | null>

export const ENVIRONMENT_TYPES = ['test', 'live'] as const
export type EnvironmentType = (typeof ENVIRONMENT_TYPES)[number]

export const ROLES = ['admin', 'user'] as const
export type Role = (typeof ROLES)[number]

export interface TenantTable {
  id: string
  name: string
  created_at: CreatedAt
}

export interface EnvironmentTable {
  id: string
  tenant_id: string
  type: EnvironmentType
  name: string
  created_at: CreatedAt
}

export interface ApiKeyTable {
  id: string
  tenant_id: string
  environment_id: string
  role: Role
  /** SHA-256 of the whole secret, hex. The secret itself is never stored. */
  key_hash: string
  /** The first characters of the secret (`sk_test_4f2a`), enough to recognise it in a list. */
  key_prefix: string
  last4: string
  name: string | null
  /** Set for customer tokens (role `user`): the only customer the token may act for. */
  customer_id: string | null
  created_at: CreatedAt
  expires_at: NullableTimestamp
  revoked_at: NullableTimestamp
}

export const IDEMPOTENCY_STATES = ['in_flight', 'completed'] as const
export type IdempotencyState = (typeof IDEMPOTENCY_STATES)[number]

export interface IdempotencyKeyTable {
  environment_id: string
  key: string
  method: string
  path: string
  /** SHA-256 of method, path and canonical JSON body: a different request under the same key is refused. */
  request_hash: string
  state: IdempotencyState
  response_status: number | null
  /** The first response, sealed with the secret box (it may carry personal data or a one-time secret). */
  response_body: string | null
  response_content_type: string | null
  locked_at: Timestamp
  created_at: CreatedAt
  expires_at: Timestamp
}

export interface Database {
  tenants: TenantTable
  environments: EnvironmentTable
  api_keys: ApiKeyTable
  idempotency_keys: IdempotencyKeyTable
}

export type Tenant = Selectable<TenantTable>
export type Environment = Selectable<EnvironmentTable>
export type ApiKey = Selectable<ApiKeyTable>
export type NewApiKey = Insertable<ApiKeyTable>
export type ApiKeyUpdate = Updateable<ApiKeyTable>
export type IdempotencyRecord = Selectable<IdempotencyKeyTable>
