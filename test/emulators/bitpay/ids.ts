import { randomInt } from 'node:crypto'

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** Random base-58 characters, the alphabet of BitPay's invoice ids (`Hpqc62dfE1ZjzeeH4kEycF`). */
export function randomBase58(length: number): string {
  let token = ''
  for (let i = 0; i < length; i++) token += BASE58[randomInt(BASE58.length)]
  return token
}

/** A 22-character invoice id, like BitPay's. */
export function newInvoiceId(): string {
  return randomBase58(22)
}
