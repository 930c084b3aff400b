import { type Static, Type } from 'typebox'
import type { ApiKey } from '../../db/database.ts'
import { Nullable, Timestamp } from '../../http/schema-types.ts'

export const ApiKeySchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('api_key'),
    name: Nullable(Type.String()),
    role: Type.Literal('admin'),
    environment_id: Type.String(),
    key_prefix: Type.String({ description: 'First characters of the secret, to recognise it' }),
    last4: Type.String(),
    created_at: Timestamp,
    expires_at: Nullable(Timestamp),
    revoked_at: Nullable(Timestamp),
  },
  { $id: 'ApiKey' },
)
export type ApiKeyResponse = Static<typeof ApiKeySchema>

export const CreatedApiKeySchema = Type.Object(
  {
    ...ApiKeySchema.properties,
    key: Type.String({ description: 'The secret; shown only in this response' }),
  },
  { $id: 'CreatedApiKey' },
)

export const CreateApiKeyBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  expires_at: Type.Optional(Type.String({ format: 'date-time' })),
})
export type CreateApiKeyBody = Static<typeof CreateApiKeyBody>

export const ApiKeyParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) })

export function toApiKeyResponse(key: ApiKey): ApiKeyResponse {
  return {
    id: key.id,
    object: 'api_key',
    name: key.name,
    role: 'admin',
    environment_id: key.environment_id,
    key_prefix: key.key_prefix,
    last4: key.last4,
    created_at: key.created_at.toISOString(),
    expires_at: key.expires_at?.toISOString() ?? null,
    revoked_at: key.revoked_at?.toISOString() ?? null,
  }
}
