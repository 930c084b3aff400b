import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import type { PaymentStatus } from '../core/payment-state.ts'

/** `timestamptz` columns: read as Date, written as Date or ISO string, defaulting in SQL. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, never>
export type Timestamp = ColumnType<Date, Date | string, Date | string>
export type NullableTimestamp = ColumnType<Date | null, Date | string | null, Date | string | null>

export const ENVIRONMENT_TYPES = ['test', 'live'] as const
export type EnvironmentType = (typeof ENVIRONMENT_TYPES)[number]

export const ROLES = ['admin', 'user'] as const
export type Role = (typeof ROLES)[number]

export interface TenantTable {
  id: string
  name: string
  created_at: CreatedAt
}

export interface EnvironmentTable {
  id: string
  tenant_id: string
  type: EnvironmentType
  name: string
  created_at: CreatedAt
}

export interface ApiKeyTable {
  id: string
  tenant_id: string
  environment_id: string
  role: Role
  /** SHA-256 of the whole secret, hex. The secret itself is never stored. */
  key_hash: string
  /** The first characters of the secret (`sk_test_4f2a`), enough to recognise it in a list. */
  key_prefix: string
  last4: string
  name: string | null
  /** Set for customer tokens (role `user`): the only customer the token may act for. */
  customer_id: string | null
  created_at: CreatedAt
  expires_at: NullableTimestamp
  revoked_at: NullableTimestamp
}

export const IDEMPOTENCY_STATES = ['in_flight', 'completed'] as const
export type IdempotencyState = (typeof IDEMPOTENCY_STATES)[number]

export interface IdempotencyKeyTable {
  environment_id: string
  key: string
  method: string
  path: string
  /** SHA-256 of method, path and canonical JSON body: a different request under the same key is refused. */
  request_hash: string
  state: IdempotencyState
  response_status: number | null
  /** The first response, sealed with the secret box (it may carry personal data or a one-time secret). */
  response_body: string | null
  response_content_type: string | null
  locked_at: Timestamp
  /**
   * When the first transaction of the request's work committed (in that commit). Set on a
   * record still in flight: the work is done but its response was never stored.
   */
  applied_at: ColumnType<Date | null, Date | null | undefined, Date | null>
  created_at: CreatedAt
  expires_at: Timestamp
}

/** `updated_at`: set by the application on every update. */
export type UpdatedAt = ColumnType<Date, Date | string | undefined, Date | string>
/** jsonb columns: objects in and out (pg parses jsonb). */
export type Json<T> = ColumnType<T, T | string, T | string>
export type StringMap = Record<string, string>

export interface Address {
  line1?: string | null
  line2?: string | null
  city?: string | null
  state?: string | null
  postal_code?: string | null
  country?: string | null
}

export interface CustomerTable {
  id: string
  tenant_id: string
  environment_id: string
  name: string
  email: string | null
  external_id: string | null
  billing_address: Json<Address | null>
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  auto_pay: ColumnType<boolean, boolean | undefined, boolean>
  default_payment_method_id: string | null
  /** Per-gateway customer ids, e.g. `{"stripe":"cus_…"}`. */
  gateway_customer_ids: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface PaymentMethodTable {
  id: string
  tenant_id: string
  environment_id: string
  customer_id: string
  gateway: string
  gateway_payment_method_id: string
  type: ColumnType<string, string | undefined, string>
  card_brand: string | null
  card_last4: string | null
  card_exp_month: number | null
  card_exp_year: number | null
  created_at: CreatedAt
  detached_at: NullableTimestamp
}

export interface CustomerBalanceTable {
  customer_id: string
  currency: string
  environment_id: string
  balance: bigint
  updated_at: UpdatedAt
}

export const BALANCE_TRANSACTION_TYPES = ['top_up', 'payment', 'refund', 'adjustment'] as const
export type BalanceTransactionType = (typeof BALANCE_TRANSACTION_TYPES)[number]

export interface BalanceTransactionTable {
  id: string
  tenant_id: string
  environment_id: string
  customer_id: string
  type: BalanceTransactionType
  /** Signed: credits are positive, debits negative. */
  amount: bigint
  currency: string
  balance_after: bigint
  source_type: string | null
  source_id: string | null
  description: string | null
  created_at: CreatedAt
}

export const PRODUCT_TYPES = ['one_time', 'recurring', 'credit_top_up'] as const
export type ProductType = (typeof PRODUCT_TYPES)[number]
export const PRICE_INTERVALS = ['day', 'week', 'month', 'year'] as const
export type PriceInterval = (typeof PRICE_INTERVALS)[number]

export interface ProductTable {
  id: string
  tenant_id: string
  environment_id: string
  name: string
  description: string | null
  type: ProductType
  active: ColumnType<boolean, boolean | undefined, boolean>
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface PriceTable {
  id: string
  environment_id: string
  product_id: string
  /** Order of the product's prices: new prices always come after existing ones. */
  position: number
  amount: bigint
  currency: string
  interval: PriceInterval | null
  interval_count: ColumnType<number, number | undefined, number>
  active: ColumnType<boolean, boolean | undefined, boolean>
  created_at: CreatedAt
}

export interface DiscountTable {
  id: string
  tenant_id: string
  environment_id: string
  code: string
  /** numeric(5,2), read as a string by pg: '12.50'. */
  percent_off: string | null
  amount_off: bigint | null
  currency: string | null
  max_redemptions: number | null
  times_redeemed: ColumnType<number, number | undefined, number>
  expires_at: NullableTimestamp
  active: ColumnType<boolean, boolean | undefined, boolean>
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface DiscountRedemptionTable {
  id: string
  environment_id: string
  discount_id: string
  invoice_id: string
  customer_id: string
  amount: bigint
  created_at: CreatedAt
}

export interface InvoiceSequenceTable {
  environment_id: string
  last_number: bigint
}

export const INVOICE_STATUSES = ['DRAFT', 'FINALIZED', 'VOIDED', 'UNCOLLECTIBLE'] as const
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number]
export const INVOICE_PAYMENT_STATUSES = [
  'PENDING',
  'PROCESSING',
  'SUCCEEDED',
  'OVERPAID',
  'FAILED',
  'PARTIALLY_REFUNDED',
  'REFUNDED',
] as const
export type InvoicePaymentStatus = (typeof INVOICE_PAYMENT_STATUSES)[number]
export const COLLECTION_METHODS = ['charge_automatically', 'send_invoice'] as const
export type CollectionMethod = (typeof COLLECTION_METHODS)[number]
export const BILLING_REASONS = [
  'manual',
  'order',
  'subscription_create',
  'subscription_cycle',
] as const
export type BillingReason = (typeof BILLING_REASONS)[number]

export interface InvoiceTable {
  id: string
  tenant_id: string
  environment_id: string
  customer_id: string
  number: string | null
  currency: string
  invoice_status: InvoiceStatus
  payment_status: InvoicePaymentStatus
  collection_method: CollectionMethod
  billing_reason: BillingReason
  subtotal: bigint
  total_discount: ColumnType<bigint, bigint | undefined, bigint>
  total: bigint
  amount_due: bigint
  amount_paid: ColumnType<bigint, bigint | undefined, bigint>
  amount_refunded: ColumnType<bigint, bigint | undefined, bigint>
  amount_remaining: bigint
  due_date: NullableTimestamp
  payment_window_days: number | null
  payment_window_ends_at: NullableTimestamp
  discount_id: string | null
  discount_code: string | null
  order_id: string | null
  subscription_id: string | null
  period_start: NullableTimestamp
  period_end: NullableTimestamp
  source: ColumnType<'native' | 'stripe', 'native' | 'stripe' | undefined, 'native' | 'stripe'>
  stripe_invoice_id: string | null
  next_payment_attempt: NullableTimestamp
  description: string | null
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  finalized_at: NullableTimestamp
  paid_at: NullableTimestamp
  voided_at: NullableTimestamp
  marked_uncollectible_at: NullableTimestamp
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface InvoiceLineTable {
  id: string
  invoice_id: string
  position: number
  description: string
  quantity: number
  unit_amount: bigint
  amount: bigint
  price_id: string | null
  period_start: NullableTimestamp
  period_end: NullableTimestamp
}

export const ORDER_TYPES = ['SUBSCRIPTION', 'CREDIT_TOP_UP', 'ONE_TIME_PRODUCT'] as const
export type OrderType = (typeof ORDER_TYPES)[number]
export const ORDER_STATUSES = ['PENDING', 'FULFILLED', 'CANCELLED'] as const
export type OrderStatus = (typeof ORDER_STATUSES)[number]

export interface OrderTable {
  id: string
  tenant_id: string
  environment_id: string
  customer_id: string
  type: OrderType
  status: OrderStatus
  product_id: string | null
  price_id: string | null
  quantity: ColumnType<number, number | undefined, number>
  amount: bigint
  currency: string
  invoice_id: string
  subscription_id: string | null
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  fulfilled_at: NullableTimestamp
  cancelled_at: NullableTimestamp
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export const SUBSCRIPTION_STATUSES = ['incomplete', 'active', 'past_due', 'canceled'] as const
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number]

export interface SubscriptionTable {
  id: string
  tenant_id: string
  environment_id: string
  customer_id: string
  product_id: string
  price_id: string
  quantity: ColumnType<number, number | undefined, number>
  status: SubscriptionStatus
  currency: string
  collection_method: CollectionMethod
  interval: PriceInterval
  interval_count: number
  /** Price per period in minor units (price amount × quantity). */
  amount: bigint
  /** Periods are counted from here, so Jan 31 renews on Feb 28 and then Mar 31. */
  billing_cycle_anchor: Timestamp
  current_period_start: Timestamp
  current_period_end: Timestamp
  cancel_at_period_end: ColumnType<boolean, boolean | undefined, boolean>
  canceled_at: NullableTimestamp
  ended_at: NullableTimestamp
  started_at: NullableTimestamp
  order_id: string | null
  latest_invoice_id: string | null
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export const SCHEDULE_STATUSES = ['scheduled', 'applied', 'cancelled'] as const
export type ScheduleStatus = (typeof SCHEDULE_STATUSES)[number]

export interface SubscriptionScheduleTable {
  id: string
  environment_id: string
  subscription_id: string
  /** Null for a change of the quantity alone. */
  price_id: string | null
  quantity: number | null
  effective_at: Timestamp
  status: ScheduleStatus
  applied_at: NullableTimestamp
  created_at: CreatedAt
}

export interface EventTable {
  id: string
  tenant_id: string
  environment_id: string
  type: string
  object_type: string
  object_id: string
  data: Json<Record<string, unknown>>
  created_at: CreatedAt
}

export interface WebhookEndpointTable {
  id: string
  tenant_id: string
  environment_id: string
  url: string
  description: string | null
  enabled_events: string[]
  status: 'enabled' | 'disabled'
  /** The signing secret, sealed (`SecretBox`). */
  secret: string
  /** The secret a rotation replaced, sealed: it signs deliveries too until it expires. */
  previous_secret: string | null
  previous_secret_expires_at: Date | null
  metadata: Json<Record<string, string>>
  created_at: CreatedAt
  updated_at: Date
}

export interface WebhookDeliveryTable {
  id: string
  tenant_id: string
  environment_id: string
  endpoint_id: string
  event_id: string
  event_type: string
  status: ColumnType<
    'pending' | 'succeeded' | 'failed',
    'pending' | undefined,
    'pending' | 'succeeded' | 'failed'
  >
  attempts: ColumnType<number, number | undefined, number>
  response_status: number | null
  response_body: string | null
  error_message: string | null
  last_attempt_at: Date | null
  delivered_at: Date | null
  created_at: CreatedAt
  updated_at: Date
}

export const PAYMENT_METHOD_TYPES = [
  'PAYMENT_LINK',
  'CARD',
  'CRYPTO',
  'CREDITS',
  'OFFLINE',
  'EXTERNAL',
] as const
export type PaymentMethodType = (typeof PAYMENT_METHOD_TYPES)[number]
export const DESTINATION_TYPES = ['INVOICE', 'ORDERS'] as const
export type DestinationType = (typeof DESTINATION_TYPES)[number]

export interface GatewayConnectionTable {
  id: string
  tenant_id: string
  environment_id: string
  gateway: string
  /** The credentials as JSON, sealed with the secret box; never returned by the API. */
  credentials: string
  settings: ColumnType<
    Record<string, string>,
    Record<string, string> | string | undefined,
    Record<string, string> | string
  >
  active: ColumnType<boolean, boolean | undefined, boolean>
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface PaymentTable {
  id: string
  tenant_id: string
  environment_id: string
  human_id: string
  customer_id: string
  destination_type: DestinationType
  destination_id: string
  subject: string | null
  amount: bigint
  amount_paid: ColumnType<bigint, bigint | undefined, bigint>
  amount_reserved: ColumnType<bigint, bigint | undefined, bigint>
  amount_refunded: ColumnType<bigint, bigint | undefined, bigint>
  currency: string
  payment_status: PaymentStatus
  payment_method_type: PaymentMethodType
  payment_method_id: string | null
  payment_gateway: string | null
  gateway_payment_id: string | null
  gateway_tracking_id: string | null
  payment_url: string | null
  active: ColumnType<boolean, boolean | undefined, boolean>
  payment_date: NullableTimestamp
  billing_address: Json<Address | null>
  description: string | null
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  gateway_metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  status_code: string | null
  error_message: string | null
  success_url: string | null
  cancel_url: string | null
  save_card_and_make_default: ColumnType<boolean, boolean | undefined, boolean>
  idempotency_key: string | null
  track_attempts: ColumnType<boolean, boolean | undefined, boolean>
  invoice_number: string | null
  discount_code: string | null
  /** The invoices the payment pays, in allocation order; fixed at creation. */
  invoice_ids: ColumnType<string[], string[] | undefined, never>
  created_by: string | null
  updated_by: string | null
  succeeded_at: NullableTimestamp
  failed_at: NullableTimestamp
  refunded_at: NullableTimestamp
  cancelled_at: NullableTimestamp
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface PaymentAllocationTable {
  payment_id: string
  invoice_id: string
  position: number
  amount: bigint
  /** What reconciliation has put on the invoice so far. */
  applied_amount: ColumnType<bigint, bigint | undefined, bigint>
}

export interface PaymentAttemptTable {
  id: string
  payment_id: string
  gateway: string
  gateway_payment_id: string | null
  gateway_tracking_id: string | null
  status: string
  error_code: string | null
  error_message: string | null
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export const TRANSITION_CAUSES = ['api', 'webhook', 'job', 'gateway'] as const
export type TransitionCause = (typeof TRANSITION_CAUSES)[number]

export interface PaymentTransitionTable {
  id: Generated<bigint>
  payment_id: string
  from_status: PaymentStatus | null
  to_status: PaymentStatus
  cause: TransitionCause
  cause_id: string | null
  note: string | null
  created_at: CreatedAt
}

export const REFUND_STATUSES = ['pending', 'succeeded', 'failed', 'canceled'] as const
export type RefundStatus = (typeof REFUND_STATUSES)[number]

export interface RefundTable {
  id: string
  tenant_id: string
  environment_id: string
  payment_id: string
  amount: bigint
  currency: string
  status: RefundStatus
  reason: string | null
  metadata: ColumnType<StringMap, StringMap | string | undefined, StringMap | string>
  gateway_refund_id: string | null
  failure_code: string | null
  failure_message: string | null
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface WebhookEventTable {
  id: Generated<bigint>
  tenant_id: string
  environment_id: string
  gateway: string
  event_id: string
  event_type: string
  payload: Json<unknown>
  received_at: CreatedAt
  handled_at: NullableTimestamp
  outcome: string | null
}

export interface SandboxSessionTable {
  id: string
  environment_id: string
  payment_id: string
  customer_id: string
  mode: 'card' | 'crypto'
  status: 'open' | 'requires_action' | 'confirming' | 'complete' | 'expired'
  amount: bigint
  currency: string
  save_card: ColumnType<boolean, boolean | undefined, boolean>
  success_url: string | null
  cancel_url: string | null
  tenant_id: string
  pending_card_number: string | null
  amount_received: ColumnType<bigint, bigint | undefined, bigint>
  expires_at: Timestamp
  created_at: CreatedAt
  updated_at: UpdatedAt
}

export interface SandboxCardTable {
  id: string
  environment_id: string
  customer_id: string
  number: string
  brand: string
  last4: string
  exp_month: number
  exp_year: number
  created_at: CreatedAt
}

export interface StripeReplicaTable {
  environment_id: string
  object_type: string
  stripe_id: string
  data: Json<unknown>
  stripe_created: NullableTimestamp
  synced_at: Timestamp
  /** When Stripe made the event the row came from (or the object was fetched); null before 0017. */
  seen_at: NullableTimestamp
}

/** A dashboard session signed out before it lapsed, kept until then (migration 0018). */
export interface DashboardSignoutTable {
  session_id: string
  expires_at: Timestamp
}

/** Active payments per environment, status and UTC day, in shards; kept by triggers (migration 0006). */
export interface PaymentDailyCountTable {
  environment_id: string
  payment_status: string
  day: ColumnType<Date, string, string>
  shard: number
  n: ColumnType<bigint, bigint | number, bigint | number>
}

export interface Database {
  tenants: TenantTable
  environments: EnvironmentTable
  api_keys: ApiKeyTable
  idempotency_keys: IdempotencyKeyTable
  customers: CustomerTable
  payment_methods: PaymentMethodTable
  customer_balances: CustomerBalanceTable
  balance_transactions: BalanceTransactionTable
  products: ProductTable
  prices: PriceTable
  discounts: DiscountTable
  discount_redemptions: DiscountRedemptionTable
  invoice_sequences: InvoiceSequenceTable
  invoices: InvoiceTable
  invoice_lines: InvoiceLineTable
  orders: OrderTable
  subscriptions: SubscriptionTable
  subscription_schedules: SubscriptionScheduleTable
  events: EventTable
  webhook_endpoints: WebhookEndpointTable
  webhook_deliveries: WebhookDeliveryTable
  gateway_connections: GatewayConnectionTable
  payments: PaymentTable
  payment_allocations: PaymentAllocationTable
  payment_attempts: PaymentAttemptTable
  payment_transitions: PaymentTransitionTable
  payment_daily_counts: PaymentDailyCountTable
  refunds: RefundTable
  webhook_events: WebhookEventTable
  sandbox_sessions: SandboxSessionTable
  sandbox_cards: SandboxCardTable
  stripe_replicas: StripeReplicaTable
  dashboard_signouts: DashboardSignoutTable
}

export type Tenant = Selectable<TenantTable>
export type Environment = Selectable<EnvironmentTable>
export type ApiKey = Selectable<ApiKeyTable>
export type NewApiKey = Insertable<ApiKeyTable>
export type ApiKeyUpdate = Updateable<ApiKeyTable>
export type IdempotencyRecord = Selectable<IdempotencyKeyTable>
export type Customer = Selectable<CustomerTable>
export type PaymentMethod = Selectable<PaymentMethodTable>
export type BalanceTransaction = Selectable<BalanceTransactionTable>
export type Product = Selectable<ProductTable>
export type Price = Selectable<PriceTable>
export type Discount = Selectable<DiscountTable>
export type Invoice = Selectable<InvoiceTable>
export type InvoiceLine = Selectable<InvoiceLineTable>
export type Order = Selectable<OrderTable>
export type Subscription = Selectable<SubscriptionTable>
export type SubscriptionSchedule = Selectable<SubscriptionScheduleTable>
export type Event = Selectable<EventTable>
export type WebhookEndpoint = Selectable<WebhookEndpointTable>
export type WebhookDelivery = Selectable<WebhookDeliveryTable>
export type GatewayConnection = Selectable<GatewayConnectionTable>
export type Payment = Selectable<PaymentTable>
export type PaymentAllocation = Selectable<PaymentAllocationTable>
export type PaymentAttempt = Selectable<PaymentAttemptTable>
export type PaymentTransition = Selectable<PaymentTransitionTable>
export type Refund = Selectable<RefundTable>
export type SandboxSession = Selectable<SandboxSessionTable>
export type SandboxCard = Selectable<SandboxCardTable>
