import { randomInt } from 'node:crypto'

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** Random base-62 characters, the alphabet of Stripe's ids and secrets. */
export function randomToken(length: number): string {
  let token = ''
  for (let i = 0; i < length; i++) token += ALPHABET[randomInt(ALPHABET.length)]
  return token
}

/**
 * The id prefixes this emulator issues, with the length of the random part Stripe uses
 * (`cus_QXg1o8vcGmoR32`, `pi_3PgafyB7WZ01zgkWSjxsAJo3`, `cs_test_a1YS1U…`).
 */
const ID_SHAPES = {
  customer: ['cus_', 14],
  payment_method: ['pm_', 24],
  payment_intent: ['pi_', 24],
  charge: ['ch_', 24],
  refund: ['re_', 24],
  checkout_session: ['cs_test_a1', 56],
  checkout_line_item: ['li_', 24],
  invoice: ['in_', 24],
  invoice_line_item: ['il_', 24],
  subscription: ['sub_', 24],
  subscription_item: ['si_', 14],
  subscription_schedule: ['sub_sched_', 24],
  product: ['prod_', 14],
  price: ['price_', 24],
  balance_transaction: ['txn_', 24],
  event: ['evt_', 24],
  request: ['req_', 14],
} as const satisfies Record<string, readonly [string, number]>

export type IdKind = keyof typeof ID_SHAPES

export function newId(kind: IdKind): string {
  const [prefix, length] = ID_SHAPES[kind]
  return `${prefix}${randomToken(length)}`
}

/** `pi_…_secret_…`, the client secret of a PaymentIntent. */
export function clientSecret(id: string): string {
  return `${id}_secret_${randomToken(25)}`
}
