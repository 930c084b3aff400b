import type { FastifyInstance } from 'fastify'
import { AppError } from '../core/errors.ts'

/** Deeper than any body Payrail takes: `metadata` and `some_data` are a few levels at most. */
export const MAX_JSON_DEPTH = 64

/**
 * Whether JSON `text` nests arrays and objects deeper than `max`, read in one pass
 * without parsing (brackets inside strings do not count). Code that walks a parsed body
 * recursively (the Idempotency-Key's canonical hash, `JSON.stringify` of `some_data`)
 * would run out of stack on a body of a few kilobytes of brackets.
 */
export function jsonNestingExceeds(text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c)
        i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/**
 * JSON bodies as Fastify parses them (prototype poisoning refused), after refusing one
 * nested deeper than `MAX_JSON_DEPTH` with a 400.
 */
export function registerJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (jsonNestingExceeds(body as string, MAX_JSON_DEPTH)) {
      done(
        new AppError(
          'validation_error',
          `The JSON body is nested more than ${MAX_JSON_DEPTH} levels deep`,
          { max_depth: MAX_JSON_DEPTH },
        ),
        undefined,
      )
      return
    }
    parse(request, body as string, done)
  })
}
