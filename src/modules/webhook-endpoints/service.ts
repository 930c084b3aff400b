import { randomBytes } from 'node:crypto'
import type { Clock } from '../../core/clock.ts'
import { notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import type { Scope } from '../../core/principal.ts'
import type { SecretBox } from '../../core/secret-box.ts'
import { signWebhook, standardWebhookSignature } from '../../core/webhook-signature.ts'
import type { Db } from '../../db/client.ts'
import type { Event, WebhookDelivery, WebhookEndpoint } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import { createJobQueue } from '../../jobs/queue.ts'
import { findEvent } from '../events/repository.ts'
import { toEventResponse } from '../events/schemas.ts'
import { isKnownEventPattern } from '../events/types.ts'
import { webhookEndpoints } from './registry.ts'
import {
  type DeliveryFilters,
  deleteEndpoint,
  findDelivery,
  findEndpoint,
  insertEndpoint,
  listDeliveries as listDeliveryRows,
  listEndpoints as listEndpointRows,
  lockDelivery,
  updateDelivery,
  updateEndpoint as updateEndpointRow,
} from './repository.ts'
import type { CreateWebhookEndpointBody, UpdateWebhookEndpointBody } from './schemas.ts'
import { PrivateTargetError, postJson } from './sender.ts'

export interface WebhookDeps {
  db: Db
  clock: Clock
  secretBox: SecretBox
}

/** The job that sends one delivery (queued by migration 0013's trigger, and by `redeliver`). */
export const MERCHANT_WEBHOOK_TASK = 'deliver_merchant_webhook'
/** Tries of a delivery before it is `failed` (graphile-worker's backoff: about 16 hours in all). */
export const MERCHANT_WEBHOOK_ATTEMPTS = 12
/** The header that carries a delivery's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`. */
export const MERCHANT_SIGNATURE_HEADER = 'payrail-signature'
/** Standard Webhooks' headers (https://www.standardwebhooks.com), sent beside it. */
export const STANDARD_WEBHOOK_HEADERS = {
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature',
} as const
/** How long a rolled secret signs beside its successor when the caller does not say: 24 hours. */
export const DEFAULT_ROTATION_OVERLAP_S = 24 * 60 * 60
const DELIVERY_TIMEOUT_MS = 10_000
const RESPONSE_BODY_LIMIT = 1_000

/**
 * Registers an endpoint for the environment's events. The answer carries the signing
 * secret (`whsec_…`), once: it is sealed at rest and never shown again.
 */
export async function createEndpoint(
  deps: WebhookDeps,
  scope: Scope,
  body: CreateWebhookEndpointBody,
): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  assertUrl(body.url)
  assertEnabledEvents(body.enabled_events)
  const secret = newSecret()
  const now = deps.clock.now()
  // In a transaction (of `inTransaction`), so a keyed request's commit marks its key applied.
  const endpoint = await inTransaction(deps.db, (trx) =>
    insertEndpoint(trx, {
      id: newId('webhookEndpoint'),
      tenant_id: scope.tenantId,
      environment_id: scope.environmentId,
      url: body.url,
      description: body.description ?? null,
      enabled_events: body.enabled_events ?? ['*'],
      status: 'enabled',
      secret: deps.secretBox.seal(secret),
      metadata: newMetadata(body.metadata),
      created_at: now,
      updated_at: now,
    }),
  )
  webhookEndpoints.forget(scope.environmentId)
  return { endpoint, secret }
}

/**
 * Each entry names an event Payrail emits, a prefix of some (`payment.*`), or `*`: an
 * endpoint subscribed to a misspelt type would silently receive nothing.
 */
function assertEnabledEvents(patterns: readonly string[] | undefined): void {
  const unknown = patterns?.filter((pattern) => !isKnownEventPattern(pattern)) ?? []
  if (unknown.length > 0) {
    throw validationError(
      `enabled_events names no event Payrail sends: ${unknown.join(', ')} (see GET /v1/events for the types)`,
      { field: 'enabled_events', unknown },
    )
  }
}

/** A URL every try could connect to: parsed, with a host (`http://[::1` is not one). */
function assertUrl(url: string): void {
  let host = ''
  try {
    host = new URL(url).hostname
  } catch {
    // Left empty: refused below.
  }
  if (!host) throw validationError(`url is not a valid URL: ${url}`, { field: 'url' })
}

/**
 * A signing secret as Standard Webhooks has it: `whsec_` and the base64 of 24 random bytes,
 * which are the HMAC key. (Endpoints made before this version have base64url secrets: Payrail
 * still signs with them, and a strict base64 decoder may refuse them; a rotation replaces them.)
 */
function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`
}

/**
 * Rolls an endpoint's secret: a new one, shown in this answer only, signs every delivery from
 * now on; the one it replaces signs them too for `expiresIn` seconds (default 24 hours, 0 to
 * drop it at once), so the merchant can deploy the new one without refusing a delivery meanwhile.
 */
export async function rotateSecret(
  deps: WebhookDeps,
  scope: Scope,
  id: string,
  expiresIn: number = DEFAULT_ROTATION_OVERLAP_S,
): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  const secret = newSecret()
  const now = deps.clock.now()
  const endpoint = await inTransaction(deps.db, async (trx) => {
    const current = await findEndpoint(trx, scope.environmentId, id, { lock: true })
    if (!current) throw notFound('webhook_endpoint', id)
    return updateEndpointRow(trx, scope.environmentId, id, {
      secret: deps.secretBox.seal(secret),
      previous_secret: expiresIn > 0 ? current.secret : null,
      previous_secret_expires_at: expiresIn > 0 ? new Date(now.getTime() + expiresIn * 1000) : null,
      updated_at: now,
    })
  })
  if (!endpoint) throw notFound('webhook_endpoint', id)
  return { endpoint, secret }
}

/** The secrets a delivery is signed with now: the endpoint's, and the one it rolled while it lasts. */
function signingSecrets(deps: WebhookDeps, endpoint: WebhookEndpoint, now: Date): string[] {
  const secrets = [deps.secretBox.open(endpoint.secret)]
  if (
    endpoint.previous_secret &&
    endpoint.previous_secret_expires_at &&
    endpoint.previous_secret_expires_at.getTime() > now.getTime()
  ) {
    secrets.push(deps.secretBox.open(endpoint.previous_secret))
  }
  return secrets
}

export async function getEndpoint(db: Db, scope: Scope, id: string): Promise<WebhookEndpoint> {
  const endpoint = await findEndpoint(db, scope.environmentId, id)
  if (!endpoint) throw notFound('webhook_endpoint', id)
  return endpoint
}

export async function updateEndpoint(
  deps: WebhookDeps,
  scope: Scope,
  id: string,
  body: UpdateWebhookEndpointBody,
): Promise<WebhookEndpoint> {
  if (body.url !== undefined) assertUrl(body.url)
  assertEnabledEvents(body.enabled_events)
  // Read under the row's lock: two PATCHes of `metadata` merge one after the other.
  const updated = await inTransaction(deps.db, async (trx) => {
    const current = await findEndpoint(trx, scope.environmentId, id, { lock: true })
    if (!current) throw notFound('webhook_endpoint', id)
    return updateEndpointRow(trx, scope.environmentId, id, {
      ...(body.url !== undefined && { url: body.url }),
      ...(body.enabled_events !== undefined && { enabled_events: body.enabled_events }),
      ...(body.description !== undefined && { description: body.description }),
      ...(body.status !== undefined && { status: body.status }),
      ...(body.metadata !== undefined && {
        metadata: JSON.stringify(mergeMetadata(current.metadata, body.metadata)),
      }),
      updated_at: deps.clock.now(),
    })
  })
  webhookEndpoints.forget(scope.environmentId)
  if (!updated) throw notFound('webhook_endpoint', id)
  return updated
}

/** Deletes an endpoint and its deliveries: nothing more is sent to it. */
export async function removeEndpoint(db: Db, scope: Scope, id: string): Promise<WebhookEndpoint> {
  const deleted = await inTransaction(db, (trx) => deleteEndpoint(trx, scope.environmentId, id))
  webhookEndpoints.forget(scope.environmentId)
  if (!deleted) throw notFound('webhook_endpoint', id)
  return deleted
}

export async function listEndpoints(
  db: Db,
  scope: Scope,
  filters: { status?: WebhookEndpoint['status'] | undefined },
  request: ListRequest<'created_at'>,
) {
  return listEndpointRows(db, scope.environmentId, filters, request)
}

export async function listDeliveries(
  db: Db,
  scope: Scope,
  filters: DeliveryFilters,
  request: ListRequest<'created_at'>,
) {
  return listDeliveryRows(db, scope.environmentId, filters, request)
}

/**
 * Sends a delivery again, whatever became of it (a merchant who fixed their endpoint):
 * it is `pending` again and a new job sends it, with its own tries.
 */
export async function redeliver(
  deps: Pick<WebhookDeps, 'db' | 'clock'>,
  scope: Scope,
  id: string,
): Promise<WebhookDelivery> {
  return inTransaction(deps.db, async (trx) => {
    const delivery = await lockDelivery(trx, scope.environmentId, id)
    if (!delivery) throw notFound('webhook_delivery', id)
    // A later `updated_at` than any try read, so that a try still running writes nothing.
    const pending = await updateDelivery(trx, id, {
      status: 'pending',
      updated_at: new Date(Math.max(deps.clock.now().getTime(), delivery.updated_at.getTime() + 1)),
    })
    if (!pending) throw notFound('webhook_delivery', id)
    await createJobQueue(trx).add(
      MERCHANT_WEBHOOK_TASK,
      { deliveryId: id },
      { jobKey: `merchant-webhook-${id}`, maxAttempts: MERCHANT_WEBHOOK_ATTEMPTS },
    )
    return pending
  })
}

/** What one try of a delivery came to. */
export type DeliveryOutcome = 'succeeded' | 'retry' | 'failed' | 'skipped'

/**
 * One try of `MERCHANT_WEBHOOK_TASK`: POSTs the event, as `GET /v1/events/:id` shows it,
 * to the endpoint, signed with its secret, and records the answer on the delivery. A 2xx
 * answer delivers it; anything else (another status, a timeout, a refused connection) is
 * `retry` until the last try (`lastTry`), then `failed`. The caller throws on `retry`, so
 * graphile-worker tries again with its backoff. A delivery already delivered, or whose
 * endpoint is gone, is `skipped`.
 */
export async function attemptDelivery(
  deps: WebhookDeps,
  deliveryId: string,
  lastTry: boolean,
): Promise<DeliveryOutcome> {
  const delivery = await findDelivery(deps.db, undefined, deliveryId)
  if (!delivery || delivery.status === 'succeeded') return 'skipped'
  const endpoint = await findEndpoint(deps.db, delivery.environment_id, delivery.endpoint_id)
  if (!endpoint) {
    // Written by a transaction that had not yet seen the endpoint's deletion.
    await updateDelivery(deps.db, deliveryId, {
      status: 'failed',
      error_message: 'The endpoint was deleted',
      updated_at: deps.clock.now(),
    })
    return 'failed'
  }
  const event = await findEvent(deps.db, delivery.environment_id, delivery.event_id)
  const now = deps.clock.now()
  if (!event || endpoint.status === 'disabled') {
    await updateDelivery(deps.db, deliveryId, {
      status: 'failed',
      error_message: event ? 'The endpoint is disabled' : 'The event no longer exists',
      updated_at: now,
    })
    return 'failed'
  }
  const answer = await post(endpoint, event, signingSecrets(deps, endpoint, now), now)
  const delivered = answer.status !== null && answer.status >= 200 && answer.status < 300
  const outcome: DeliveryOutcome = delivered ? 'succeeded' : lastTry ? 'failed' : 'retry'
  // Only over the row this try read: a redelivery started meanwhile (it moves `updated_at`)
  // owns the delivery from then on, and this try's answer is not written over its own.
  const recorded = await updateDelivery(
    deps.db,
    deliveryId,
    {
      status: outcome === 'retry' ? 'pending' : outcome,
      attempts: delivery.attempts + 1,
      response_status: answer.status,
      response_body: answer.body,
      error_message: delivered ? null : (answer.error ?? `The endpoint answered ${answer.status}`),
      last_attempt_at: now,
      delivered_at: delivered ? now : null,
      updated_at: now,
    },
    delivery.updated_at,
  )
  return recorded ? outcome : 'skipped'
}

/** Text PostgreSQL can store: no NUL characters (an endpoint may answer anything). */
function storable(text: string): string {
  return text.replaceAll('\u0000', '')
}

/** Whether deliveries may go to private, loopback and link-local addresses (not in production). */
function privateTargetsAllowed(): boolean {
  return (
    process.env.NODE_ENV !== 'production' || process.env.PAYRAIL_WEBHOOK_PRIVATE_TARGETS === 'allow'
  )
}

async function post(
  endpoint: WebhookEndpoint,
  event: Event,
  secrets: readonly string[],
  now: Date,
): Promise<{ status: number | null; body: string | null; error?: string }> {
  const body = JSON.stringify(toEventResponse(event))
  const timestamp = Math.floor(now.getTime() / 1000)
  try {
    const answer = await postJson(
      endpoint.url,
      {
        'content-type': 'application/json',
        'user-agent': 'Payrail-Webhooks/1',
        // The event's id: the same for every try of it, so a receiver can drop a repeat.
        [STANDARD_WEBHOOK_HEADERS.id]: event.id,
        [STANDARD_WEBHOOK_HEADERS.timestamp]: String(timestamp),
        [STANDARD_WEBHOOK_HEADERS.signature]: standardWebhookSignature(
          secrets,
          event.id,
          timestamp,
          body,
        ),
        [MERCHANT_SIGNATURE_HEADER]: signWebhook(secrets, body, timestamp),
      },
      body,
      {
        publicOnly: !privateTargetsAllowed(),
        timeoutMs: DELIVERY_TIMEOUT_MS,
        bodyLimit: RESPONSE_BODY_LIMIT,
      },
    )
    return { status: answer.status, body: storable(answer.body) }
  } catch (error) {
    if (error instanceof PrivateTargetError)
      return { status: null, body: null, error: error.message }
    const cause = error instanceof Error ? (error.cause ?? error) : error
    return {
      status: null,
      body: null,
      error: storable(
        `No answer: ${cause instanceof Error ? cause.message : String(cause)}`.slice(0, 500),
      ),
    }
  }
}
