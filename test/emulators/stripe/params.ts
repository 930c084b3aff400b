import { invalidRequest, parameterMissing, parameterUnknown } from './errors.ts'
import type { FormObject, FormValue } from './form.ts'

export type Metadata = Record<string, string>

/**
 * Typed reads over one level of parsed form parameters. Every failure is the 400 Stripe
 * would give, naming the parameter with its full bracket path (`payment_intent_data[metadata]`).
 */
export class Params {
  constructor(
    private readonly values: FormObject,
    private readonly prefix = '',
  ) {}

  /** `name` as Stripe spells it in errors: `line_items[0][price_data][currency]`. */
  path(name: string): string {
    return this.prefix === '' ? name : `${this.prefix}[${name}]`
  }

  has(name: string): boolean {
    return Object.hasOwn(this.values, name)
  }

  /** True when `name` was sent as a hash (`created[gte]=…`) rather than a plain value. */
  isObject(name: string): boolean {
    const value = this.raw(name)
    return value !== undefined && typeof value !== 'string' && !Array.isArray(value)
  }

  keys(): string[] {
    return Object.keys(this.values)
  }

  /** Throws `parameter_unknown` for the first top-level key not in `allowed` (`expand` always is). */
  rejectUnknown(allowed: readonly string[]): void {
    for (const key of this.keys()) {
      if (key !== 'expand' && !allowed.includes(key)) throw parameterUnknown(this.path(key))
    }
  }

  string(name: string): string | undefined {
    const value = this.raw(name)
    if (value === undefined) return undefined
    if (typeof value !== 'string') {
      throw invalidRequest(`Invalid string: ${describe(value)}`, this.path(name))
    }
    return value
  }

  requiredString(name: string): string {
    const value = this.string(name)
    if (value === undefined || value === '') throw parameterMissing(this.path(name))
    return value
  }

  /** A string where an empty value means "unset" (Stripe's `Emptyable<string>`). */
  nullableString(name: string): string | null | undefined {
    const value = this.string(name)
    return value === '' ? null : value
  }

  integer(name: string): number | undefined {
    const value = this.string(name)
    if (value === undefined) return undefined
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
      throw invalidRequest(
        `Invalid integer: ${value}`,
        this.path(name),
        'parameter_invalid_integer',
      )
    }
    return Number(value)
  }

  requiredInteger(name: string): number {
    const value = this.integer(name)
    if (value === undefined) throw parameterMissing(this.path(name))
    return value
  }

  boolean(name: string): boolean | undefined {
    const value = this.string(name)
    if (value === undefined) return undefined
    if (value === 'true') return true
    if (value === 'false') return false
    throw invalidRequest(`Invalid boolean: ${value}`, this.path(name))
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const value = this.string(name)
    if (value === undefined) return undefined
    const match = allowed.find((candidate) => candidate === value)
    if (match === undefined) {
      throw invalidRequest(
        `Invalid ${name}: must be one of ${allowed.join(', ')}`,
        this.path(name),
        'parameter_invalid_string',
      )
    }
    return match
  }

  /** A lowercase ISO 4217 code. */
  currency(name = 'currency'): string | undefined {
    const value = this.string(name)
    if (value === undefined) return undefined
    if (!/^[a-zA-Z]{3}$/.test(value)) {
      throw invalidRequest(`Invalid currency: ${value.toLowerCase()}.`, this.path(name))
    }
    return value.toLowerCase()
  }

  requiredCurrency(name = 'currency'): string {
    const value = this.currency(name)
    if (value === undefined) throw parameterMissing(this.path(name))
    return value
  }

  /** A nested hash, read with the same rules. */
  object(name: string): Params | undefined {
    const value = this.raw(name)
    if (value === undefined || value === '') return undefined
    if (typeof value === 'string' || Array.isArray(value)) {
      throw invalidRequest(`Invalid hash`, this.path(name), 'parameter_invalid_empty')
    }
    return new Params(value, this.path(name))
  }

  /** An array of hashes (`line_items[0][…]`). */
  objects(name: string): Params[] {
    const value = this.raw(name)
    if (value === undefined || value === '') return []
    if (!Array.isArray(value)) throw invalidRequest('Invalid array', this.path(name))
    return value.map((item, index) => {
      const itemPath = `${this.path(name)}[${index}]`
      if (typeof item === 'string' || Array.isArray(item)) {
        throw invalidRequest('Invalid hash', itemPath)
      }
      return new Params(item, itemPath)
    })
  }

  /** An array of strings; a single string counts as one element (`expand=x`). */
  strings(name: string): string[] {
    const value = this.raw(name)
    if (value === undefined || value === '') return []
    if (typeof value === 'string') return [value]
    if (!Array.isArray(value)) throw invalidRequest('Invalid array', this.path(name))
    return value.map((item, index) => {
      if (typeof item !== 'string') {
        throw invalidRequest(`Invalid string: ${describe(item)}`, `${this.path(name)}[${index}]`)
      }
      return item
    })
  }

  /**
   * `metadata` applied to `current` with Stripe's rules: `metadata=` clears every key,
   * `metadata[k]=` removes `k`, any other value sets it. Absent → `current` unchanged.
   */
  metadata(current: Metadata = {}, name = 'metadata'): Metadata {
    const value = this.raw(name)
    if (value === undefined) return { ...current }
    if (value === '') return {}
    if (typeof value === 'string' || Array.isArray(value)) {
      throw invalidRequest('Invalid hash', this.path(name))
    }
    const result: Metadata = { ...current }
    for (const [key, entry] of Object.entries(value)) {
      if (typeof entry !== 'string') {
        throw invalidRequest(`Invalid string: ${describe(entry)}`, `${this.path(name)}[${key}]`)
      }
      if (key.length > 40) {
        throw invalidRequest(
          `Metadata keys must be at most 40 characters (got '${key}').`,
          this.path(name),
        )
      }
      if (entry.length > 500) {
        throw invalidRequest(
          `Metadata values must be at most 500 characters (key '${key}').`,
          this.path(name),
        )
      }
      if (entry === '') delete result[key]
      else result[key] = entry
    }
    if (Object.keys(result).length > 50) {
      throw invalidRequest('Metadata can have at most 50 keys.', this.path(name))
    }
    return result
  }

  private raw(name: string): FormValue | undefined {
    return Object.hasOwn(this.values, name) ? this.values[name] : undefined
  }
}

function describe(value: FormValue): string {
  return JSON.stringify(value)
}
