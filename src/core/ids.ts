import { typeid } from 'typeid-js'

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

export function newId(kind: IdKind): string {
  return typeid(ID_PREFIXES[kind]).toString()
}
