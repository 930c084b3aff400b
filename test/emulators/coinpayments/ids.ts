import { randomBytes, randomInt } from 'node:crypto'

const UPPER_ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function randomFrom(alphabet: string, length: number): string {
  let text = ''
  for (let i = 0; i < length; i++) text += alphabet[randomInt(alphabet.length)]
  return text
}

/** `CPFE1JWHX5XUTXRBAH1RNWBEPF`: the shape of CoinPayments' transaction ids. */
export function newTxnId(): string {
  return `CP${randomFrom(UPPER_ALPHANUMERIC, 24)}`
}

/** A made-up deposit address (base58, 34 characters, like a legacy BTC address). */
export function newAddress(): string {
  return `1${randomFrom(BASE58, 33)}`
}

/** 32 hex characters: IPN ids, page keys, generated credentials. */
export function randomHex(bytes = 16): string {
  return randomBytes(bytes).toString('hex')
}
