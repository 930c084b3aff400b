import { idempotencyEndpointMismatch, idempotencyMismatch } from './errors.ts'
import type { FormValue } from './form.ts'
import type { JsonObject } from './json.ts'

/** A response as first sent, kept to be replayed for the same key. */
export interface StoredResponse {
  status: number
  body: JsonObject
  requestId: string
}

interface Entry {
  endpoint: string
  fingerprint: string
  response: StoredResponse
}

export type IdempotencyLookup = { kind: 'new' } | { kind: 'replay'; response: StoredResponse }

/**
 * Stripe's `Idempotency-Key`: the same key with the same parameters replays the first
 * response (status and body); with other parameters or another endpoint it is a 400
 * `idempotency_error`. Only requests that reached the endpoint are saved, so a
 * validation error or an injected 5xx can be retried with the same key.
 */
export class IdempotencyStore {
  private readonly entries = new Map<string, Entry>()

  lookup(key: string, endpoint: string, params: FormValue): IdempotencyLookup {
    const entry = this.entries.get(key)
    if (entry === undefined) return { kind: 'new' }
    if (entry.endpoint !== endpoint) {
      throw idempotencyEndpointMismatch(key, entry.endpoint, endpoint)
    }
    if (entry.fingerprint !== fingerprint(params)) throw idempotencyMismatch(key)
    return { kind: 'replay', response: entry.response }
  }

  save(key: string, endpoint: string, params: FormValue, response: StoredResponse): void {
    this.entries.set(key, { endpoint, fingerprint: fingerprint(params), response })
  }

  clear(): void {
    this.entries.clear()
  }
}

/** The parameters in a canonical form: the same values in another key order match. */
function fingerprint(value: FormValue): string {
  return JSON.stringify(canonical(value))
}

function canonical(value: FormValue): FormValue {
  if (typeof value === 'string') return value
  if (Array.isArray(value)) return value.map(canonical)
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, canonical(value[key] ?? '')] as const),
  )
}
