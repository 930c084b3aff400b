import { randomFillSync } from 'node:crypto'

/** Prefixes of Payrail's ids, TypeID style: `pay_01h…`, sortable by creation time. */
export const ID_PREFIXES = {
  tenant: 'ten',
  environment: 'env',
  apiKey: 'key',
  customer: 'cus',
  paymentMethod: 'pm',
  product: 'prod',
  price: 'price',
  discount: 'disc',
  order: 'ord',
  invoice: 'inv',
  subscription: 'sub',
  payment: 'pay',
  refund: 're',
  event: 'evt',
  gatewayConnection: 'gwc',
  webhookEndpoint: 'we',
  webhookDelivery: 'whdel',
  paymentAttempt: 'patt',
  sandboxSession: 'sbs',
  sandboxCard: 'sbcard',
  sandboxRefund: 'sbre',
  balanceTransaction: 'btxn',
  invoiceLine: 'il',
  discountRedemption: 'dred',
  subscriptionSchedule: 'ssch',
} as const

export type IdKind = keyof typeof ID_PREFIXES

/**
 * A new id of `kind`: its prefix and a TypeID suffix, the 26-character base32 form of a
 * UUIDv7 (RFC 9562). Ids of one process sort in the order they were made, within a
 * millisecond too: a 31-bit counter (RFC 9562 §6.2, method 1) follows the 48-bit
 * timestamp, started at random each new millisecond and counted up within one.
 */
export function newId(kind: IdKind): string {
  return `${ID_PREFIXES[kind]}_${encodeTypeIdSuffix(nextUuidV7())}`
}

/**
 * Orders two ids as PostgreSQL's `order by id` does (ids are ASCII): rows locked one by one
 * are locked in this order on every path, so two transactions never wait on each other.
 */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Random bytes drawn from a pool refilled 256 ids at a time: one system call per 256 ids. */
const RANDOM = Buffer.allocUnsafe(16 * 256)
let randomAt = RANDOM.length
const UUID = new Uint8Array(16)
let lastMs = 0
let counter = 0

/** The next UUIDv7 of this process, in a buffer the next call overwrites. */
export function nextUuidV7(now = Date.now()): Uint8Array {
  if (randomAt === RANDOM.length) {
    randomFillSync(RANDOM)
    randomAt = 0
  }
  const r = randomAt
  randomAt += 16
  if (now > lastMs) {
    lastMs = now
    // At most 2^30 to start: at least 2^30 more ids fit in the millisecond.
    counter = RANDOM.readUInt32BE(r) >>> 2
  } else if (++counter > 0x7fffffff) {
    // More ids in one millisecond than the counter holds, or a clock that went back:
    // the next millisecond's, still in order.
    lastMs++
    counter = 0
  }
  const b = UUID
  const ms = lastMs
  const high = Math.floor(ms / 0x100000000)
  b[0] = (high >>> 8) & 0xff
  b[1] = high & 0xff
  b[2] = (ms >>> 24) & 0xff
  b[3] = (ms >>> 16) & 0xff
  b[4] = (ms >>> 8) & 0xff
  b[5] = ms & 0xff
  // Version 7 and the counter's 12 high bits; the variant (0b10) and its 19 low bits.
  b[6] = 0x70 | ((counter >>> 27) & 0x0f)
  b[7] = (counter >>> 19) & 0xff
  b[8] = 0x80 | ((counter >>> 13) & 0x3f)
  b[9] = (counter >>> 5) & 0xff
  b[10] = ((counter & 0x1f) << 3) | ((RANDOM[r + 4] as number) & 0x07)
  for (let i = 11; i < 16; i++) b[i] = RANDOM[r + i - 6] as number
  return b
}

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'

/**
 * The TypeID suffix of 16 bytes: their 128 bits after two zero bits, as 26 characters of
 * Crockford's base32 in lower case, most significant first (so the first is 0-7).
 */
export function encodeTypeIdSuffix(bytes: Uint8Array): string {
  let out = ''
  let acc = 0
  let bits = 2
  for (let i = 0; i < 16; i++) {
    acc = ((acc << 8) | (bytes[i] as number)) & 0x3fff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += ALPHABET[(acc >>> bits) & 31]
    }
  }
  return out
}
