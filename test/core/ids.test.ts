import { fromString, TypeID, toUUID } from 'typeid-js'
import { describe, expect, test } from 'vitest'
import { encodeTypeIdSuffix, ID_PREFIXES, newId, nextUuidV7 } from '../../src/core/ids.ts'

const bytesOf = (uuid: string) => Uint8Array.from(Buffer.from(uuid.replace(/-/g, ''), 'hex'))
const hexOf = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

describe('ids', () => {
  // The TypeID specification's own examples (typeid/spec, valid.yml).
  test.each([
    ['00000000-0000-0000-0000-000000000000', '00000000000000000000000000'],
    ['00000000-0000-0000-0000-000000000001', '00000000000000000000000001'],
    ['00000000-0000-0000-0000-00000000000a', '0000000000000000000000000a'],
    ['00000000-0000-0000-0000-000000000010', '0000000000000000000000000g'],
    ['00000000-0000-0000-0000-000000000020', '00000000000000000000000010'],
    ['ffffffff-ffff-ffff-ffff-ffffffffffff', '7zzzzzzzzzzzzzzzzzzzzzzzzz'],
    ['01890a5d-ac96-774b-bcce-b302099a8057', '01h455vb4pex5vsknk084sn02q'],
  ])('%s encodes as the specification says, %s', (uuid, suffix) => {
    expect(encodeTypeIdSuffix(bytesOf(uuid))).toBe(suffix)
    expect(TypeID.fromUUID('x', uuid).getSuffix()).toBe(suffix)
  })

  test('an id is its kind’s prefix and a TypeID the reference implementation reads back as a UUIDv7', () => {
    for (const kind of Object.keys(ID_PREFIXES) as (keyof typeof ID_PREFIXES)[]) {
      const id = newId(kind)
      const prefix = ID_PREFIXES[kind]
      expect(id).toMatch(new RegExp(`^${prefix}_[0-7][0-9a-hjkmnp-tv-z]{25}$`))
      const uuid = toUUID(fromString(id, prefix))
      // Version 7, variant 0b10.
      expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    }
  })

  // First: on the real clock, before a test below moves this process's latest millisecond ahead.
  test('ids made in one millisecond, or as the clock goes back, still sort in the order they were made', () => {
    const ids = Array.from({ length: 50_000 }, () => newId('event'))
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
    // A clock set back: later ids keep counting from the latest millisecond seen.
    const now = Date.now() + 2_000_000
    const before = encodeTypeIdSuffix(nextUuidV7(now))
    const behind = [1, 1000, 60_000].map((ms) => encodeTypeIdSuffix(nextUuidV7(now - ms)))
    expect([before, ...behind]).toEqual([before, ...behind].sort())
    expect(new Set([before, ...behind]).size).toBe(4)
  })

  test('the UUID carries the time in its first 48 bits, and its suffix decodes to its bytes', () => {
    // Ahead of the clock, as every test here that sets the time: an id is never older than one made before it.
    const at = Date.now() + 5_000_000
    const uuid = nextUuidV7(at)
    expect(Number.parseInt(hexOf(uuid).slice(0, 12), 16)).toBe(at)
    const suffix = encodeTypeIdSuffix(uuid)
    expect(toUUID(fromString(`pay_${suffix}`, 'pay')).replace(/-/g, '')).toBe(hexOf(uuid))
  })

  test('ids are unpredictable: the counter starts at random each millisecond, and the last 43 bits are random', () => {
    const at = Date.now() + 9_000_000
    const starts = new Set<string>()
    const tails = new Set<string>()
    for (let ms = 0; ms < 20; ms++) {
      const first = hexOf(nextUuidV7(at + ms))
      const second = hexOf(nextUuidV7(at + ms))
      expect(second > first).toBe(true)
      starts.add(first.slice(13, 20))
      tails.add(first.slice(22))
      tails.add(second.slice(22))
    }
    expect(starts.size).toBe(20)
    expect(tails.size).toBe(40)
  })
})
