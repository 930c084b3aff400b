/** A value that survives `JSON.stringify` / `JSON.parse` unchanged: the emulator's wire data. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject

export interface JsonObject {
  [key: string]: JsonValue
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A deep copy, so a stored object never shares structure with what a caller may mutate. */
export function copyJson<T extends JsonValue>(value: T): T {
  return structuredClone(value)
}

/**
 * A copy of `base` with each key of `overrides` replacing the whole value under that key.
 * Replacing (not deep-merging) is deliberate: a template's example `metadata` or `card` must
 * never leak into an object that sets its own.
 */
export function withFields(base: JsonObject, overrides: JsonObject): JsonObject {
  const result = copyJson(base)
  for (const [key, value] of Object.entries(overrides)) {
    result[key] = copyJson(value)
  }
  return result
}
