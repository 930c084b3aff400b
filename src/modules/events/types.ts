/**
 * Every event type Payrail emits (`GET /v1/events`, merchant webhooks), by object. A
 * webhook endpoint's `enabled_events` names some of them, a prefix of one object's
 * (`payment.*`), or `*`; `recordEvents` takes nothing else.
 */
export const EVENT_TYPES = [
  'customer.balance_transaction.created',
  'customer.created',
  'customer.updated',
  'invoice.created',
  'invoice.finalized',
  'invoice.marked_uncollectible',
  'invoice.overpaid',
  'invoice.paid',
  'invoice.payment_applied',
  'invoice.refunded',
  'invoice.updated',
  'invoice.voided',
  'order.cancelled',
  'order.created',
  'order.fulfilled',
  'payment.cancelled',
  'payment.captured',
  'payment.created',
  'payment.failed',
  'payment.on_retry',
  'payment.partially_refunded',
  'payment.pending',
  'payment.pending_refund',
  'payment.processing',
  'payment.refund_failed',
  'payment.refunded',
  'payment.reserved',
  'payment.succeeded',
  'payment.updated',
  'refund.created',
  'refund.failed',
  'refund.succeeded',
  'subscription.activated',
  'subscription.canceled',
  'subscription.created',
  'subscription.renewed',
  'subscription.updated',
] as const
export type EventType = (typeof EVENT_TYPES)[number]

/** `payment.*`, `customer.*`, `customer.balance_transaction.*`: every prefix of a type. */
const PREFIXES = new Set(
  EVENT_TYPES.flatMap((type) => {
    const parts = type.split('.')
    return parts.slice(1).map((_, i) => `${parts.slice(0, i + 1).join('.')}.*`)
  }),
)
const KNOWN = new Set<string>(EVENT_TYPES)

/** Whether `pattern` (an entry of `enabled_events`) can match an event Payrail emits. */
export function isKnownEventPattern(pattern: string): boolean {
  return pattern === '*' || KNOWN.has(pattern) || PREFIXES.has(pattern)
}
