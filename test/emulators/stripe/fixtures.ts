import { readFileSync } from 'node:fs'
import { copyJson, isJsonObject, type JsonObject, type JsonValue } from './json.ts'

/**
 * Stripe's own example objects (MIT, from Stripe's public OpenAPI repository), copied
 * verbatim from `shared/reference/stripe/fixtures3.json` for the resources the emulator
 * serves. Every response starts from one of them, so every key Stripe returns is present.
 */
export const FIXTURE_NAMES = [
  'balance_transaction',
  'charge',
  'checkout.session',
  'customer',
  'event',
  'invoice',
  'item',
  'line_item',
  'payment_intent',
  'payment_method',
  'price',
  'product',
  'refund',
  'subscription',
  'subscription_schedule',
] as const
export type FixtureName = (typeof FIXTURE_NAMES)[number]

const FIXTURES_FILE = new URL('./fixtures/fixtures3.subset.json', import.meta.url)

const templates: ReadonlyMap<FixtureName, JsonObject> = loadTemplates()

/** A fresh deep copy of Stripe's example `name` object, free to modify. */
export function template(name: FixtureName): JsonObject {
  const found = templates.get(name)
  if (found === undefined) throw new Error(`No Stripe fixture named ${name}`)
  return copyJson(found)
}

function loadTemplates(): Map<FixtureName, JsonObject> {
  const parsed: JsonValue = JSON.parse(readFileSync(FIXTURES_FILE, 'utf8'))
  const resources = isJsonObject(parsed) ? parsed.resources : undefined
  if (!isJsonObject(resources)) throw new Error(`${FIXTURES_FILE.pathname} has no "resources"`)
  const loaded = new Map<FixtureName, JsonObject>()
  for (const name of FIXTURE_NAMES) {
    const resource = resources[name]
    if (!isJsonObject(resource)) throw new Error(`${FIXTURES_FILE.pathname} lacks "${name}"`)
    loaded.set(name, resource)
  }
  return loaded
}
