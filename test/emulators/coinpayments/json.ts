/** A value that survives `JSON.stringify` / `JSON.parse` unchanged: the emulator's wire data. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject

export interface JsonObject {
  [key: string]: JsonValue
}
