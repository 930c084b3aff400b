import type { IncomingMessage } from 'node:http'

/** The largest request body the emulators read (1 MiB). */
export const MAX_BODY_BYTES = 1024 * 1024

/** The whole body as text; null when it exceeds `maxBytes`. */
export async function readBody(
  request: IncomingMessage,
  maxBytes: number = MAX_BODY_BYTES,
): Promise<string | null> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk))
    size += buffer.length
    if (size > maxBytes) return null
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}
