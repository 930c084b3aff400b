import { type Static, type TSchema, type TUnsafe, Type } from 'typebox'
import { validationError } from '../core/errors.ts'

/**
 * A key that is always present and `null` when empty (Flexprice's SDK rejects missing keys).
 * `null` comes first: with type coercion on, ajv would otherwise turn a `null` into `""`.
 */
export function Nullable<T extends TSchema>(schema: T): TUnsafe<Static<T> | null> {
  // A type list (`["null","string"]`) rather than `anyOf`: fast-json-stringify writes it
  // directly, where `anyOf` makes it validate every value against each branch first.
  const type: unknown = Reflect.get(schema, 'type')
  if (typeof type === 'string')
    return Type.Unsafe<Static<T> | null>({ ...schema, type: ['null', type] })
  return Type.Unsafe<Static<T> | null>(Type.Union([Type.Null(), schema]))
}

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601' })

/** The most keys an object's metadata holds, as Stripe allows. */
export const METADATA_MAX_KEYS = 50

/** Metadata: a string-to-string map, at most 50 keys, as Stripe and Flexprice take it. */
export const Metadata = Type.Record(
  Type.String({ maxLength: 40 }),
  Type.String({ maxLength: 500 }),
  {
    maxProperties: METADATA_MAX_KEYS,
    // A record's key schema becomes `patternProperties`, which checks no length: the keys'.
    propertyNames: { minLength: 1, maxLength: 40 },
    description: 'String-to-string map (at most 50 keys of 1 to 40 characters)',
  },
)

/** A decimal amount at the API edge: "12.50" (numbers are accepted too, as Flexprice clients send them). */
export const DecimalAmount = Type.Union([Type.String({ maxLength: 40 }), Type.Number()], {
  description: 'Decimal amount in the currency, e.g. "12.50"',
})

export const CurrencyCode = Type.String({
  minLength: 3,
  maxLength: 3,
  description: 'ISO 4217, e.g. usd',
})

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) })

/**
 * A new object's metadata as stored (JSON text): as Stripe does, a key sent as "" is not set,
 * just as it would be removed from an object that had it.
 */
export function newMetadata(metadata: Record<string, string> | undefined): string {
  return JSON.stringify(mergeMetadata({}, metadata ?? {}))
}

/**
 * Merges Stripe-style: keys set to "" are removed. The result holds at most 50 keys, as
 * each request's metadata does (400 `validation_error` on `metadata`): checked per request
 * only, repeated updates grew an object's metadata without end.
 */
export function mergeMetadata(
  current: Record<string, string>,
  changes: Record<string, string>,
): Record<string, string> {
  const merged = { ...current }
  for (const [key, value] of Object.entries(changes)) {
    if (value === '') delete merged[key]
    else merged[key] = value
  }
  const keys = Object.keys(merged).length
  if (keys > METADATA_MAX_KEYS && keys > Object.keys(current).length) {
    throw validationError(
      `metadata would hold ${keys} keys; at most ${METADATA_MAX_KEYS} (set a key to "" to remove it)`,
      { field: 'metadata', keys },
    )
  }
  return merged
}

/**
 * The body of an action that takes no fields (`POST /payments/:id/cancel`,
 * `DELETE /api_keys/:id`): none, or `{}`. Closed like every body (src/http/validation.ts): a
 * field sent to it is 400 `validation_error` naming it, as Stripe refuses an unknown
 * parameter, not ignored while the action is carried out without it.
 */
export const EmptyBody = Type.Object({}, { description: 'Takes no fields: send no body, or `{}`' })
