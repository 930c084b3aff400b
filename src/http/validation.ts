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
    validate: (value: string) => validate(value) && !Number.isNaN(Date.parse(value)),
    ...(rfc3339.compare && { compare: rfc3339.compare }),
  })
  return ajv
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
    httpPart === 'body' ? strict.compile(schema) : coercing.compile(schema),
  )
}
