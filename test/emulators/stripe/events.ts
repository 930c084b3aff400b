import { template } from './fixtures.ts'
import { newId } from './ids.ts'
import { copyJson, type JsonObject, withFields } from './json.ts'

/** The request that caused an event (`event.request`); both null for automatic events. */
export interface EventOrigin {
  requestId: string | null
  idempotencyKey: string | null
}

export const AUTOMATIC: EventOrigin = { requestId: null, idempotencyKey: null }

export interface EventRecord {
  id: string
  created: number
  seq: number
  type: string
  /** The object as it was when the event happened (a snapshot, not a live reference). */
  object: JsonObject
  previousAttributes: JsonObject | null
  origin: EventOrigin
  /** How many webhook endpoints still had to receive it when it was created. */
  pendingWebhooks: number
  apiVersion: string
}

/** How the outbox should deliver one event; `sendEvent` sets these, API events use none. */
export interface DeliveryOptions {
  /** Extra copies to deliver (each signed afresh), as Stripe sometimes does. */
  duplicate?: number
  /** Wait this long before the first attempt: a late delivery. */
  delayMs?: number
  /** Shift the signature's `t=` by this many seconds (negative: an old, replayed event). */
  timestampOffsetSeconds?: number
}

type EventListener = (event: EventRecord, delivery: DeliveryOptions) => void

/** Every event the account produced (`GET /v1/events`), in order, with a hook for the outbox. */
export class EventLog {
  readonly records = new Map<string, EventRecord>()
  private readonly listeners: EventListener[] = []

  constructor(
    private readonly clock: { nowSeconds(): number; nextSeq(): number },
    private readonly apiVersion: string,
  ) {}

  /** Called synchronously for every new event, after it is stored (the outbox enqueues here). */
  onEvent(listener: EventListener): void {
    this.listeners.push(listener)
  }

  emit(
    type: string,
    object: JsonObject,
    origin: EventOrigin,
    previousAttributes: JsonObject | null = null,
    delivery: DeliveryOptions = {},
  ): EventRecord {
    const record: EventRecord = {
      id: newId('event'),
      created: this.clock.nowSeconds(),
      seq: this.clock.nextSeq(),
      type,
      object: copyJson(object),
      previousAttributes: previousAttributes === null ? null : copyJson(previousAttributes),
      origin,
      pendingWebhooks: 0,
      apiVersion: this.apiVersion,
    }
    this.records.set(record.id, record)
    for (const listener of this.listeners) listener(record, delivery)
    return record
  }

  clear(): void {
    this.records.clear()
  }
}

export function renderEvent(record: EventRecord): JsonObject {
  const data: JsonObject = { object: record.object }
  if (record.previousAttributes !== null) data.previous_attributes = record.previousAttributes
  return withFields(template('event'), {
    id: record.id,
    object: 'event',
    api_version: record.apiVersion,
    created: record.created,
    data,
    livemode: false,
    pending_webhooks: record.pendingWebhooks,
    request: { id: record.origin.requestId, idempotency_key: record.origin.idempotencyKey },
    type: record.type,
  })
}

/**
 * `data.previous_attributes` of an `*.updated` event: the old value of every top-level key
 * that changed between `before` and `after`. Null when nothing changed.
 */
export function previousAttributes(before: JsonObject, after: JsonObject): JsonObject | null {
  const changed: JsonObject = {}
  for (const [key, value] of Object.entries(before)) {
    if (JSON.stringify(value) !== JSON.stringify(after[key])) changed[key] = value
  }
  return Object.keys(changed).length === 0 ? null : changed
}
