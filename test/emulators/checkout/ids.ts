import { randomInt } from 'node:crypto'

/** Checkout.com ids end in 26 lowercase base-32 characters (`pay_aqwuar5sjb5upkupgywyzapfii`). */
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

export function randomBase32(length: number): string {
  let token = ''
  for (let i = 0; i < length; i++) token += BASE32[randomInt(BASE32.length)]
  return token
}

const ID_PREFIXES = {
  payment: 'pay_',
  action: 'act_',
  hosted_payment: 'hpp_',
  payment_link: 'pl_',
  payment_session: 'ps_',
  session: 'sid_',
  source: 'src_',
  customer: 'cus_',
  event: 'evt_',
  request: '',
} as const satisfies Record<string, string>

export type IdKind = keyof typeof ID_PREFIXES

export function newId(kind: IdKind): string {
  if (kind === 'request') return crypto.randomUUID()
  return `${ID_PREFIXES[kind]}${randomBase32(26)}`
}

/**
 * A sandbox secret key of the NAS shape (`sk_sbox_` + 27 characters): checkout-sdk-node
 * recognises it and sends `Authorization: Bearer sk_sbox_…`, as against the real sandbox.
 */
export function newSandboxSecretKey(): string {
  return `sk_sbox_${randomBase32(27)}`
}
