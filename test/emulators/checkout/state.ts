import type { JsonObject } from './json.ts'

export const PAYMENT_STATUSES = [
  'Pending',
  'Authorized',
  'Captured',
  'Partially Captured',
  'Declined',
  'Expired',
  'Canceled',
  'Voided',
  'Refunded',
  'Partially Refunded',
] as const
export type CheckoutPaymentStatus = (typeof PAYMENT_STATUSES)[number]

export const ACTION_TYPES = ['Authorization', 'Capture', 'Refund', 'Void'] as const
export type CheckoutActionType = (typeof ACTION_TYPES)[number]

export const SESSION_KINDS = ['hosted_payment', 'payment_link', 'payment_session'] as const
export type CheckoutSessionKind = (typeof SESSION_KINDS)[number]

export const SESSION_STATUSES = ['Payment Pending', 'Payment Received', 'Expired'] as const
export type CheckoutSessionStatus = (typeof SESSION_STATUSES)[number]

export const WEBHOOK_EVENT_TYPES = [
  'payment_approved',
  'payment_pending',
  'payment_captured',
  'payment_declined',
  'payment_expired',
  'payment_canceled',
  'payment_voided',
  'payment_refunded',
  'payment_refund_declined',
] as const
export type CheckoutWebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number]

export interface Clock {
  now(): Date
}

export interface StoredCard {
  sourceId: string
  number: string
  scheme: string
  expiryMonth: number
  expiryYear: number
}

export interface CustomerRef {
  id: string
  email: string | null
  name: string | null
}

export interface ActionRecord {
  id: string
  type: CheckoutActionType
  amount: number
  processedOn: Date
  approved: boolean
  responseCode: string
  responseSummary: string
  reference: string | null
  metadata: JsonObject
}

export interface PaymentRecord {
  id: string
  /** `sid_…` of the hosted page or link it was paid on, which `GET /payments/{sid}` resolves. */
  sessionId: string | null
  amount: number
  currency: string
  reference: string | null
  description: string | null
  status: CheckoutPaymentStatus
  approved: boolean
  responseCode: string
  responseSummary: string
  card: StoredCard
  customer: CustomerRef | null
  metadata: JsonObject
  paymentType: string
  merchantInitiated: boolean
  requestedOn: Date
  actions: ActionRecord[]
}

export interface SessionRecord {
  kind: CheckoutSessionKind
  /** `hpp_…`, `pl_…` or `ps_…`. */
  id: string
  /** `sid_…`, appended to the redirect as `cko-session-id`. */
  sessionId: string
  status: CheckoutSessionStatus
  amount: number
  currency: string
  reference: string | null
  description: string | null
  customer: JsonObject | null
  billing: JsonObject | null
  metadata: JsonObject
  successUrl: string | null
  failureUrl: string | null
  cancelUrl: string | null
  /** Payment links have one `return_url` for every outcome. */
  returnUrl: string | null
  paymentType: string
  capture: boolean
  paymentId: string | null
  createdOn: Date
  expiresOn: Date
}

export interface EmittedEvent {
  id: string
  type: CheckoutWebhookEventType
  createdOn: Date
  payment: PaymentRecord
  action: ActionRecord | null
}

/** Everything the emulated account holds, in memory. */
export class CheckoutState {
  readonly payments = new Map<string, PaymentRecord>()
  readonly sessions = new Map<string, SessionRecord>()
  readonly cards = new Map<string, StoredCard>()
  readonly customers = new Map<string, CustomerRef>()
  readonly events: EmittedEvent[] = []
  /** Payments requested with `capture: true` whose capture the emulator holds back (`deferCaptureNext`). */
  readonly deferredCaptures = new Set<string>()
  /** How many of the next `capture: true` payments answer `Authorized` and wait for `capturePayment`. */
  capturesToDefer = 0
  /** How many of the next refunds are accepted (202), then declined (`declineRefundNext`). */
  refundsToDecline = 0
  baseUrl = 'http://127.0.0.1'
  private listener: (event: EmittedEvent) => void = () => {}

  constructor(readonly clock: Clock) {}

  onEvent(listener: (event: EmittedEvent) => void): void {
    this.listener = listener
  }

  emit(event: EmittedEvent): void {
    this.events.push(event)
    this.listener(event)
  }

  /** A payment by `pay_…`, or by the `sid_…` of the page it was paid on. */
  findPayment(id: string): PaymentRecord | undefined {
    const direct = this.payments.get(id)
    if (direct !== undefined || !id.startsWith('sid_')) return direct
    return [...this.payments.values()].find((payment) => payment.sessionId === id)
  }

  clear(): void {
    this.payments.clear()
    this.sessions.clear()
    this.cards.clear()
    this.customers.clear()
    this.events.length = 0
    this.deferredCaptures.clear()
    this.capturesToDefer = 0
    this.refundsToDecline = 0
  }
}
