import { requestInvalid } from './errors.ts'
import { isJsonObject, type JsonObject } from './json.ts'

/**
 * Typed reads of a JSON request body. A wrong type is a 422 with `<field>_invalid`, a missing
 * required field `<field>_required`, Checkout.com's error-code pattern.
 */
export class RequestFields {
  constructor(private readonly body: JsonObject) {}

  optionalString(key: string): string | null {
    const value = this.body[key]
    if (value === undefined || value === null) return null
    if (typeof value !== 'string') throw requestInvalid(`${key}_invalid`)
    return value
  }

  requiredString(key: string): string {
    const value = this.optionalString(key)
    if (value === null || value === '') throw requestInvalid(`${key}_required`)
    return value
  }

  optionalAmount(key: string): number | null {
    const value = this.body[key]
    if (value === undefined || value === null) return null
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
      throw requestInvalid(`${key}_invalid`)
    }
    return value
  }

  requiredAmount(key: string): number {
    const value = this.optionalAmount(key)
    if (value === null) throw requestInvalid(`${key}_required`)
    return value
  }

  /** ISO 4217, three capital letters. */
  requiredCurrency(): string {
    const currency = this.requiredString('currency')
    if (!/^[A-Z]{3}$/.test(currency)) throw requestInvalid('currency_invalid')
    return currency
  }

  optionalBoolean(key: string): boolean | null {
    const value = this.body[key]
    if (value === undefined || value === null) return null
    if (typeof value !== 'boolean') throw requestInvalid(`${key}_invalid`)
    return value
  }

  optionalObject(key: string): JsonObject | null {
    const value = this.body[key]
    if (value === undefined || value === null) return null
    if (!isJsonObject(value)) throw requestInvalid(`${key}_invalid`)
    return value
  }

  requiredObject(key: string): JsonObject {
    const value = this.optionalObject(key)
    if (value === null) throw requestInvalid(`${key}_required`)
    return value
  }

  /** An http(s) URL, the only kind Checkout.com accepts for redirects. */
  optionalUrl(key: string): string | null {
    const value = this.optionalString(key)
    if (value === null) return null
    if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
      throw requestInvalid(`${key}_invalid`)
    }
    return value
  }

  requiredUrl(key: string): string {
    const value = this.optionalUrl(key)
    if (value === null) throw requestInvalid(`${key}_required`)
    return value
  }

  /** `metadata`: a flat object of scalars. */
  metadata(): JsonObject {
    const value = this.optionalObject('metadata') ?? {}
    for (const item of Object.values(value)) {
      if (typeof item === 'object' && item !== null) throw requestInvalid('metadata_invalid')
    }
    return value
  }

  /** `payment_type`, one of the values the SDK also validates; `Regular` by default. */
  paymentType(): string {
    const value = this.optionalString('payment_type') ?? 'Regular'
    if (!PAYMENT_TYPES.includes(value)) throw requestInvalid('payment_type_invalid')
    return value
  }
}

const PAYMENT_TYPES: readonly string[] = [
  'Regular',
  'Recurring',
  'MOTO',
  'Installment',
  'Unscheduled',
  'PayLater',
]
