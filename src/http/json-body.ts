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

/** Decodes UTF-8 and refuses bytes that are not: never a replacement character stored for good. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** `charset=…` of a Content-Type, lowercased; undefined when it names none. */
function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')
  return match?.[1]?.toLowerCase()
}

/**
 * JSON bodies as Fastify parses them (prototype poisoning refused), after refusing one
 * nested deeper than `MAX_JSON_DEPTH` with a 400. JSON on the wire is UTF-8 (RFC 8259): a
 * body that says it is in another charset is 415, and bytes that are not UTF-8 are 400,
 * rather than decoded into replacement characters and stored so.
 */
export function registerJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, bytes, done) => {
    const charset = charsetOf(request.headers['content-type'])
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(
        new AppError(
          'unsupported_media_type',
          `Send the request body as JSON in UTF-8, not ${charset}`,
          { charset },
        ),
        undefined,
      )
      return
    }
    let body: string
    try {
      body = utf8.decode(bytes as Buffer)
    } catch {
      done(new AppError('validation_error', 'The body is not valid UTF-8', {}), undefined)
      return
    }
    if (jsonNestingExceeds(body, MAX_JSON_DEPTH)) {
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
    parse(request, body, done)
  })
}
