import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { requireCustomer } from './customers.ts'
import { type PriceRecord, renderPlan, renderPrice } from './prices.ts'

export const SUBSCRIPTION_STATUSES = [
  'incomplete',
  'incomplete_expired',
  'trialing',
  'active',
  'past_due',
  'canceled',
  'unpaid',
  'paused',
] as const
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number]

export interface SubscriptionItemRecord {
  id: string
  created: number
  price: string
  quantity: number
}

export interface SubscriptionRecord extends StoredRecord {
  customer: string
  status: SubscriptionStatus
  items: SubscriptionItemRecord[]
  currentPeriodStart: number
  currentPeriodEnd: number
  cancelAtPeriodEnd: boolean
  canceledAt: number | null
  endedAt: number | null
  defaultPaymentMethod: string | null
  latestInvoice: string | null
  collectionMethod: 'charge_automatically' | 'send_invoice'
  metadata: Metadata
  description: string | null
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewSubscription {
  id?: string
  customer: string
  items: { price: string; quantity?: number }[]
  status?: SubscriptionStatus
  currentPeriodStart?: number
  currentPeriodEnd?: number
  cancelAtPeriodEnd?: boolean
  canceledAt?: number | null
  defaultPaymentMethod?: string | null
  latestInvoice?: string | null
  collectionMethod?: 'charge_automatically' | 'send_invoice'
  metadata?: Metadata
  description?: string | null
  created?: number
  overrides?: JsonObject
}

const DAY = 24 * 60 * 60

export function insertSubscription(
  state: EmulatorState,
  fields: NewSubscription,
): SubscriptionRecord {
  requireCustomer(state, fields.customer, 'customer')
  const created = fields.created ?? state.nowSeconds()
  const prices = fields.items.map((item) => requireRecord(state.prices, 'price', item.price))
  const periodStart = fields.currentPeriodStart ?? created
  const status = fields.status ?? 'active'
  const record: SubscriptionRecord = {
    id: fields.id ?? newId('subscription'),
    created,
    seq: state.nextSeq(),
    customer: fields.customer,
    status,
    items: fields.items.map((item) => ({
      id: newId('subscription_item'),
      created,
      price: item.price,
      quantity: item.quantity ?? 1,
    })),
    currentPeriodStart: periodStart,
    currentPeriodEnd: fields.currentPeriodEnd ?? periodStart + periodLength(prices[0]),
    cancelAtPeriodEnd: fields.cancelAtPeriodEnd ?? false,
    canceledAt: fields.canceledAt ?? (status === 'canceled' ? created : null),
    endedAt: status === 'canceled' ? (fields.canceledAt ?? created) : null,
    defaultPaymentMethod: fields.defaultPaymentMethod ?? null,
    latestInvoice: fields.latestInvoice ?? null,
    collectionMethod: fields.collectionMethod ?? 'charge_automatically',
    metadata: fields.metadata ?? {},
    description: fields.description ?? null,
    overrides: fields.overrides ?? {},
  }
  state.subscriptions.set(record.id, record)
  return record
}

function periodLength(price: PriceRecord | undefined): number {
  const recurring = price?.recurring ?? { interval: 'month', intervalCount: 1 }
  const days = { day: 1, week: 7, month: 30, year: 365 }[recurring.interval]
  return days * recurring.intervalCount * DAY
}

export function renderSubscription(state: EmulatorState, record: SubscriptionRecord): JsonObject {
  const firstPrice = record.items[0] && state.prices.get(record.items[0].price)
  const rendered = withFields(template('subscription'), {
    id: record.id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: record.currentPeriodStart,
    billing_cycle_anchor_config: null,
    billing_mode: { type: 'classic' },
    billing_schedules: [],
    billing_thresholds: null,
    cancel_at: record.cancelAtPeriodEnd ? record.currentPeriodEnd : null,
    cancel_at_period_end: record.cancelAtPeriodEnd,
    canceled_at: record.canceledAt,
    cancellation_details: { comment: null, feedback: null, reason: null },
    collection_method: record.collectionMethod,
    created: record.created,
    currency: firstPrice?.currency ?? 'usd',
    customer: record.customer,
    customer_account: null,
    days_until_due: record.collectionMethod === 'send_invoice' ? 30 : null,
    default_payment_method: record.defaultPaymentMethod,
    default_source: null,
    default_tax_rates: [],
    description: record.description,
    discounts: [],
    ended_at: record.endedAt,
    invoice_settings: { account_tax_ids: null, issuer: { type: 'self' } },
    items: {
      object: 'list',
      data: record.items.map((item) => renderSubscriptionItem(state, record, item)),
      has_more: false,
      url: `/v1/subscription_items?subscription=${record.id}`,
    },
    latest_invoice: record.latestInvoice,
    livemode: false,
    managed_payments: null,
    metadata: record.metadata,
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    payment_settings: {
      payment_method_options: null,
      payment_method_types: null,
      save_default_payment_method: 'off',
    },
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: scheduleOf(state, record.id),
    start_date: record.created,
    status: record.status,
    test_clock: null,
    transfer_data: null,
    trial_end: null,
    trial_settings: { end_behavior: { missing_payment_method: 'create_invoice' } },
    trial_start: null,
  })
  return withFields(rendered, record.overrides)
}

function renderSubscriptionItem(
  state: EmulatorState,
  subscription: SubscriptionRecord,
  item: SubscriptionItemRecord,
): JsonObject {
  const price = requireRecord(state.prices, 'price', item.price)
  return {
    id: item.id,
    object: 'subscription_item',
    billing_thresholds: null,
    created: item.created,
    current_period_end: subscription.currentPeriodEnd,
    current_period_start: subscription.currentPeriodStart,
    discounts: [],
    metadata: {},
    plan: renderPlan(price),
    price: renderPrice(price),
    quantity: item.quantity,
    subscription: subscription.id,
    tax_rates: [],
  }
}

function scheduleOf(state: EmulatorState, subscriptionId: string): string | null {
  for (const schedule of state.subscriptionSchedules.values()) {
    if (schedule.subscription === subscriptionId) return schedule.id
  }
  return null
}

export function registerSubscriptionRoutes(router: Router): void {
  router.get('/v1/subscriptions', ({ state, params }) => {
    const customer = params.string('customer')
    const price = params.string('price')
    const status = params.oneOf('status', [...SUBSCRIPTION_STATUSES, 'all', 'ended'] as const)
    return listResponse({
      params,
      url: '/v1/subscriptions',
      objectName: 'subscription',
      records: state.subscriptions.values(),
      filter: (record) =>
        (customer === undefined || record.customer === customer) &&
        (price === undefined || record.items.some((item) => item.price === price)) &&
        matchesStatus(record.status, status),
      render: (record) => renderSubscription(state, record),
    })
  })
  router.get('/v1/subscriptions/:id', ({ state, pathParam }) =>
    renderSubscription(state, requireRecord(state.subscriptions, 'subscription', pathParam('id'))),
  )
}

/** Without `status`, Stripe lists every subscription that is not canceled. */
function matchesStatus(
  status: SubscriptionStatus,
  filter: SubscriptionStatus | 'all' | 'ended' | undefined,
): boolean {
  if (filter === undefined) return status !== 'canceled'
  if (filter === 'all') return true
  if (filter === 'ended') return status === 'canceled' || status === 'incomplete_expired'
  return status === filter
}
