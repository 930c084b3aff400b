import { Ajv, type Options } from 'ajv'
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
