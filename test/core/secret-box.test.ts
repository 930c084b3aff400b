import { createHmac, randomBytes } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { SecretBox } from '../../src/core/secret-box.ts'

describe('SecretBox', () => {
  const box = new SecretBox(randomBytes(32))

  test('round-trips and never repeats a ciphertext', () => {
    const a = box.seal('sk_live_secret')
    const b = box.seal('sk_live_secret')
    expect(a).not.toBe(b)
    expect(a).not.toContain('sk_live_secret')
    expect(box.open(a)).toBe('sk_live_secret')
    expect(box.open(b)).toBe('sk_live_secret')
  })

  test('refuses a tampered value or another key', () => {
    const sealed = box.seal('payload')
    const parts = sealed.split('.')
    const tampered = [...parts.slice(0, 3), Buffer.from('paylaod').toString('base64url')].join('.')
    expect(() => box.open(tampered)).toThrow()
    expect(() => new SecretBox(randomBytes(32)).open(sealed)).toThrow()
    expect(() => box.open('garbage')).toThrow(/Not a sealed secret/)
  })

  test('derives HMAC-SHA256(key, label) per label, the same every time and per key', () => {
    const key = randomBytes(32)
    const keyed = new SecretBox(key)
    const expected = createHmac('sha256', key).update('sandbox-webhook:env_1').digest('hex')
    expect(keyed.derive('sandbox-webhook:env_1')).toBe(expected)
    expect(keyed.derive('sandbox-webhook:env_1')).toBe(expected)
    expect(keyed.derive('sandbox-webhook:env_2')).not.toBe(expected)
    expect(new SecretBox(randomBytes(32)).derive('sandbox-webhook:env_1')).not.toBe(expected)
  })

  test('needs a 32-byte key', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow()
  })
})
