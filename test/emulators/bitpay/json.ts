/** A value that survives `JSON.stringify` / `JSON.parse` unchanged: the emulator's wire data. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject

export interface JsonObject {
  [key: string]: JsonValue
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The body parsed as a JSON object; null when it is not one. */
export function parseJsonObject(text: string): JsonObject | null {
  try {
    const parsed: JsonValue = JSON.parse(text)
    return isJsonObject(parsed) ? parsed : null
  } catch {
    return null
  }
}
