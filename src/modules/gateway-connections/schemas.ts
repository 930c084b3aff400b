import { type Static, Type } from 'typebox'
import type { GatewayConnection } from '../../db/database.ts'
import { Timestamp } from '../../http/schema-types.ts'

const Settings = Type.Object(
  {
    base_url: Type.Optional(
      Type.String({
        format: 'uri',
        pattern: '^https?://',
        description: "Override the provider's API base (a local emulator)",
      }),
    ),
  },
  { additionalProperties: Type.String() },
)

export const CreateConnectionBody = Type.Object({
  gateway: Type.String({ minLength: 1, maxLength: 40 }),
  credentials: Type.Record(Type.String(), Type.String({ maxLength: 4000 }), {
    description: 'Write-only; encrypted at rest',
  }),
  settings: Type.Optional(Settings),
})
export type CreateConnectionBody = Static<typeof CreateConnectionBody>

export const UpdateConnectionBody = Type.Object({
  credentials: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 4000 }))),
  settings: Type.Optional(Settings),
  active: Type.Optional(Type.Boolean()),
})
export type UpdateConnectionBody = Static<typeof UpdateConnectionBody>

export const ConnectionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('gateway_connection'),
    gateway: Type.String(),
    settings: Type.Record(Type.String(), Type.String()),
    credential_keys: Type.Array(Type.String(), {
      description: 'Which credentials are set; their values are never returned',
    }),
    active: Type.Boolean(),
    webhook_url: Type.String({ description: 'Where this gateway must send its notifications' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'GatewayConnection' },
)

export function toConnectionResponse(
  connection: GatewayConnection,
  credentialKeys: string[],
  publicUrl: string,
) {
  return {
    id: connection.id,
    object: 'gateway_connection' as const,
    gateway: connection.gateway,
    settings: connection.settings,
    credential_keys: credentialKeys,
    active: connection.active,
    webhook_url: `${publicUrl}/v1/webhooks/${connection.gateway}/${connection.tenant_id}/${connection.environment_id}`,
    created_at: connection.created_at.toISOString(),
    updated_at: connection.updated_at.toISOString(),
  }
}
