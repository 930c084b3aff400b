import { type Static, Type } from 'typebox'
import type { WebhookDelivery, WebhookEndpoint } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import { Metadata, Nullable, Timestamp } from '../../http/schema-types.ts'

const EventPattern = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^(\\*|[a-z_]+(\\.[a-z_]+)*(\\.\\*)?)$',
  description: 'An event type (`payment.succeeded`), a prefix (`payment.*`), or `*` for all',
})

export const WebhookUrl = Type.String({
  minLength: 1,
  maxLength: 2048,
  pattern: '^https?://[^\\s]+$',
  description: 'Where the events are POSTed: http or https',
})

export const CreateWebhookEndpointBody = Type.Object({
  url: WebhookUrl,
  enabled_events: Type.Optional(Type.Array(EventPattern, { minItems: 1, maxItems: 100 })),
  description: Type.Optional(Type.String({ maxLength: 500 })),
  metadata: Type.Optional(Metadata),
})
export type CreateWebhookEndpointBody = Static<typeof CreateWebhookEndpointBody>

const EndpointStatus = Type.Union([Type.Literal('enabled'), Type.Literal('disabled')])

export const UpdateWebhookEndpointBody = Type.Object({
  url: Type.Optional(WebhookUrl),
  enabled_events: Type.Optional(Type.Array(EventPattern, { minItems: 1, maxItems: 100 })),
  description: Type.Optional(Nullable(Type.String({ maxLength: 500 }))),
  status: Type.Optional(EndpointStatus),
  metadata: Type.Optional(Metadata),
})
export type UpdateWebhookEndpointBody = Static<typeof UpdateWebhookEndpointBody>

export const RotateSecretBody = Type.Object({
  expires_in: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 7 * 24 * 60 * 60,
      description:
        'Seconds the replaced secret keeps signing deliveries beside the new one (default 86400; 0 drops it at once)',
    }),
  ),
})
export type RotateSecretBody = Static<typeof RotateSecretBody>

export const WebhookEndpointListQuery = ListQuery({ status: Type.Optional(EndpointStatus) })

export const WebhookEndpointSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('webhook_endpoint'),
    url: Type.String(),
    description: Nullable(Type.String()),
    enabled_events: Type.Array(Type.String()),
    status: Type.String(),
    secret: Nullable(
      Type.String({
        description:
          'The signing secret: only in the answer that creates the endpoint or rotates its secret (null elsewhere)',
      }),
    ),
    previous_secret_expires_at: Nullable(
      Type.String({
        format: 'date-time',
        description:
          'Until when the secret a rotation replaced still signs deliveries beside the new one',
      }),
    ),
    metadata: Type.Record(Type.String(), Type.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'WebhookEndpoint' },
)

export function toWebhookEndpointResponse(endpoint: WebhookEndpoint, secret?: string) {
  return {
    id: endpoint.id,
    object: 'webhook_endpoint' as const,
    url: endpoint.url,
    description: endpoint.description,
    enabled_events: endpoint.enabled_events,
    status: endpoint.status,
    secret: secret ?? null,
    previous_secret_expires_at: endpoint.previous_secret_expires_at?.toISOString() ?? null,
    metadata: endpoint.metadata,
    created_at: endpoint.created_at.toISOString(),
    updated_at: endpoint.updated_at.toISOString(),
  }
}

export const WebhookDeliveryListQuery = ListQuery({
  endpoint_id: Type.Optional(Type.String({ maxLength: 100 })),
  event_id: Type.Optional(Type.String({ maxLength: 100 })),
  status: Type.Optional(
    Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
  ),
})

export const WebhookDeliverySchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('webhook_delivery'),
    endpoint_id: Type.String(),
    event_id: Type.String(),
    event_type: Type.String(),
    status: Type.String(),
    attempts: Type.Integer(),
    response_status: Nullable(Type.Integer()),
    response_body: Nullable(Type.String()),
    error_message: Nullable(Type.String()),
    last_attempt_at: Nullable(Timestamp),
    delivered_at: Nullable(Timestamp),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'WebhookDelivery' },
)

export function toWebhookDeliveryResponse(delivery: WebhookDelivery) {
  return {
    id: delivery.id,
    object: 'webhook_delivery' as const,
    endpoint_id: delivery.endpoint_id,
    event_id: delivery.event_id,
    event_type: delivery.event_type,
    status: delivery.status,
    attempts: delivery.attempts,
    response_status: delivery.response_status,
    response_body: delivery.response_body,
    error_message: delivery.error_message,
    last_attempt_at: delivery.last_attempt_at?.toISOString() ?? null,
    delivered_at: delivery.delivered_at?.toISOString() ?? null,
    created_at: delivery.created_at.toISOString(),
    updated_at: delivery.updated_at.toISOString(),
  }
}
