import type { RetryPolicy } from '../shared/delivery-runner.ts'
import { type NotificationHeaders, NotificationOutbox as Outbox } from '../shared/notifier.ts'
import type { Clock } from './clock.ts'

export type { RetryPolicy } from '../shared/delivery-runner.ts'

/** Defaults: 5 attempts, 20 ms before the 2nd (doubling), 2 s per attempt. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, backoffMs: 20, timeoutMs: 2_000 }

/** One notification on its way. Copies made by `duplicateNext` share `id`. */
export interface OutgoingNotification {
  readonly id: string
  readonly invoiceId: string
  readonly url: string
  /** The exact bytes sent, the same on every attempt. */
  readonly body: string
}

export interface DeliveryAttempt {
  notificationId: string
  invoiceId: string
  url: string
  body: string
  attempt: number
  ok: boolean
  /** The receiver's HTTP status, or null when the request failed (refused, timed out). */
  status: number | null
  error: string | null
  at: Date
}

/** BitPay's IPN: a JSON POST of the notification body. */
const BITPAY_IPN_HEADERS: NotificationHeaders<OutgoingNotification> = () => ({
  accept: 'application/json',
  'content-type': 'application/json',
  'user-agent': 'BitPay IPN (emulator)',
})

/**
 * Sends IPNs the way BitPay does: a JSON POST, retried with backoff until a 2xx or
 * `maxAttempts`. Unlike BitPay, notifications go out one after another in the order of the
 * changes, so a test's expectations are deterministic; disorder and duplicates are always
 * something a test asks for (`duplicateNext`, `holdAndReverse`).
 */
export class NotificationOutbox extends Outbox<OutgoingNotification> {
  constructor(retry: RetryPolicy, clock: Clock) {
    super(retry, clock, BITPAY_IPN_HEADERS)
  }
}
