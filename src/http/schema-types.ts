import { type TSchema, Type } from 'typebox'

/** A key that is always present and `null` when empty (Flexprice's SDK rejects missing keys). */
export function Nullable<T extends TSchema>(schema: T) {
  return Type.Union([schema, Type.Null()])
}

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601' })
