import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { BoundedCache } from './bounded-cache.ts'

const VERSION = 'v1'

/**
 * Authenticated encryption (AES-256-GCM) of small secrets at rest: gateway
 * credentials, stored idempotent responses. The sealed form is
 * `v1.<iv>.<tag>.<ciphertext>` in base64url, safe to keep in a text column.
 *
 * @example
 * const box = new SecretBox(key)
 * const sealed = box.seal('sk_live_…')
 * box.open(sealed) // 'sk_live_…'
 */
export class SecretBox {
  readonly #key: Buffer
  /** Derived secrets by label: one HMAC each, not one per request (a sandbox link or webhook asks for its environment's). */
  readonly #derived = new BoundedCache<string, string>(10_000)

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte key')
    this.#key = key
  }

  seal(plaintext: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const tag = cipher.getAuthTag()
    return [VERSION, iv, tag, body]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.')
  }

  /** A secret derived from the key for one purpose (`label`), stable across restarts: HMAC-SHA256(key, label). */
  derive(label: string): string {
    let derived = this.#derived.get(label)
    if (derived === undefined) {
      derived = createHmac('sha256', this.#key).update(label).digest('hex')
      this.#derived.set(label, derived)
    }
    return derived
  }

  open(sealed: string): string {
    const [version, iv, tag, body] = sealed.split('.')
    if (version !== VERSION || iv === undefined || tag === undefined || body === undefined) {
      throw new Error('Not a sealed secret')
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(iv, 'base64url'))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([
      decipher.update(Buffer.from(body, 'base64url')),
      decipher.final(),
    ]).toString('utf8')
  }
}
