import { Ajv, type FormatDefinition, type Options } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance } from 'fastify'

const shared: Options = {
  useDefaults: true,
  removeAdditional: false,
  // allErrors stays off: with it, a crafted body can make validation very slow.
  allErrors: false,
  strict: false,
}

function createAjv(options: Options): Ajv {
  const ajv = new Ajv({ ...shared, ...options })
  addFormats.default(ajv)
  // RFC 3339 allows a leap second (23:59:60Z), which JavaScript's Date cannot hold: such a
  // time is refused here (400), not turned into an Invalid Date that fails a write (500).
  const rfc3339 = ajv.formats['date-time'] as FormatDefinition<string>
  const validate = rfc3339.validate as (value: string) => boolean
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (value: string) => {
      if (!validate(value)) return false
      const at = Date.parse(value)
      return at >= FIRST_INSTANT && at <= LAST_INSTANT
    },
    ...(rfc3339.compare && { compare: rfc3339.compare }),
  })
  return ajv
}

/**
 * The instants RFC 3339 can write in UTC, years 0001 to 9999. Outside them a time has no
 * RFC 3339 form to answer with (`+010000-01-01T…`), and PostgreSQL keeps year 0 as 1 BC.
 */
const FIRST_INSTANT = Date.parse('0001-01-01T00:00:00Z')
const LAST_INSTANT = Date.parse('9999-12-31T23:59:59.999Z')

/**
 * A body schema as the API checks it: an object refuses properties it does not declare, as
 * Stripe refuses unknown parameters. A misspelt optional field (`ammount` on a refund, which
 * without its amount refunds the whole payment) is then a 400 naming it, not a request
 * carried out without it. Objects that take any keys say so (`additionalProperties` or
 * `patternProperties`: metadata, credentials) and keep them. Applied to a copy that only the
 * validator sees: `/openapi.json` shows the route's schema as written (docs/api.md says
 * unknown fields are refused).
 */
function closedObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closedObjects)
  if (schema === null || typeof schema !== 'object') return schema
  const copy: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) copy[key] = closedObjects(value)
  if (
    'properties' in copy &&
    copy.additionalProperties === undefined &&
    copy.patternProperties === undefined
  )
    copy.additionalProperties = false
  return copy
}

/**
 * Request validation with two Ajv instances: query strings and path parameters
 * are text, so they are coerced (`?limit=10` → 10); JSON bodies are not, so a body
 * gets exactly the types it declares (`"max_redemptions": 0` stays 0 and fails a
 * minimum of 1 instead of being coerced to `null`).
 */
export function registerValidation(app: FastifyInstance): void {
  const coercing = createAjv({ coerceTypes: 'array' })
  const strict = createAjv({ coerceTypes: false })
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body'
      ? strict.compile(closedObjects(schema) as object)
      : coercing.compile(schema),
  )
}
