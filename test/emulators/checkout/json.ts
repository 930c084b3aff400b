/** A value that survives `JSON.stringify` / `JSON.parse` unchanged: the emulator's wire data. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject

export interface JsonObject {
  [key: string]: JsonValue
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** `JSON.parse` of a request body: an object, or null when the text is not a JSON object. */
export function parseJsonObject(text: string): JsonObject | null {
  if (text.trim() === '') return {}
  try {
    const value: JsonValue = JSON.parse(text)
    return isJsonObject(value) ? value : null
  } catch {
    return null
  }
}

/** Omits `undefined` fields, so optional values are absent rather than `null`. */
export function compact(fields: Record<string, JsonValue | undefined>): JsonObject {
  const result: JsonObject = {}
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) result[key] = value
  }
  return result
}
