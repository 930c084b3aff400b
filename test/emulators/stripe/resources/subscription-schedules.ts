import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { requireCustomer } from './customers.ts'

export const SUBSCRIPTION_SCHEDULE_STATUSES = [
  'not_started',
  'active',
  'completed',
  'released',
  'canceled',
] as const
export type SubscriptionScheduleStatus = (typeof SUBSCRIPTION_SCHEDULE_STATUSES)[number]

export interface SchedulePhase {
  startDate: number
  endDate: number
  items: { price: string; quantity: number }[]
}

export interface SubscriptionScheduleRecord extends StoredRecord {
  customer: string
  subscription: string | null
  status: SubscriptionScheduleStatus
  phases: SchedulePhase[]
  endBehavior: 'cancel' | 'none' | 'release' | 'renew'
  metadata: Metadata
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewSubscriptionSchedule {
  id?: string
  customer: string
  subscription?: string | null
  status?: SubscriptionScheduleStatus
  phases?: { startDate: number; endDate: number; items: { price: string; quantity?: number }[] }[]
  endBehavior?: 'cancel' | 'none' | 'release' | 'renew'
  metadata?: Metadata
  created?: number
  overrides?: JsonObject
}

export function insertSubscriptionSchedule(
  state: EmulatorState,
  fields: NewSubscriptionSchedule,
): SubscriptionScheduleRecord {
  requireCustomer(state, fields.customer, 'customer')
  const phases = (fields.phases ?? []).map((phase) => ({
    startDate: phase.startDate,
    endDate: phase.endDate,
    items: phase.items.map((item) => {
      requireRecord(state.prices, 'price', item.price, 'price')
      return { price: item.price, quantity: item.quantity ?? 1 }
    }),
  }))
  const record: SubscriptionScheduleRecord = {
    id: fields.id ?? newId('subscription_schedule'),
    created: fields.created ?? state.nowSeconds(),
    seq: state.nextSeq(),
    customer: fields.customer,
    subscription: fields.subscription ?? null,
    status: fields.status ?? (fields.subscription ? 'active' : 'not_started'),
    phases,
    endBehavior: fields.endBehavior ?? 'release',
    metadata: fields.metadata ?? {},
    overrides: fields.overrides ?? {},
  }
  state.subscriptionSchedules.set(record.id, record)
  return record
}

export function renderSubscriptionSchedule(
  state: EmulatorState,
  record: SubscriptionScheduleRecord,
): JsonObject {
  const now = state.nowSeconds()
  const current = record.phases.find((phase) => phase.startDate <= now && now < phase.endDate)
  const rendered = withFields(template('subscription_schedule'), {
    id: record.id,
    object: 'subscription_schedule',
    application: null,
    billing_mode: { type: 'classic' },
    canceled_at: null,
    completed_at: null,
    created: record.created,
    current_phase:
      current === undefined ? null : { end_date: current.endDate, start_date: current.startDate },
    customer: record.customer,
    customer_account: null,
    default_settings: {
      application_fee_percent: null,
      automatic_tax: { disabled_reason: null, enabled: false, liability: null },
      billing_cycle_anchor: 'automatic',
      billing_thresholds: null,
      collection_method: 'charge_automatically',
      default_payment_method: null,
      description: null,
      invoice_settings: { account_tax_ids: null, days_until_due: null, issuer: { type: 'self' } },
      on_behalf_of: null,
      transfer_data: null,
    },
    end_behavior: record.endBehavior,
    livemode: false,
    metadata: record.metadata,
    phases: record.phases.map((phase) => renderPhase(state, phase)),
    released_at: null,
    released_subscription: null,
    status: record.status,
    subscription: record.subscription,
    test_clock: null,
  })
  return withFields(rendered, record.overrides)
}

function renderPhase(state: EmulatorState, phase: SchedulePhase): JsonObject {
  const currency = state.prices.get(phase.items[0]?.price ?? '')?.currency ?? 'usd'
  return {
    add_invoice_items: [],
    application_fee_percent: null,
    billing_cycle_anchor: null,
    billing_thresholds: null,
    collection_method: null,
    currency,
    default_payment_method: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    end_date: phase.endDate,
    invoice_settings: null,
    items: phase.items.map((item) => ({
      billing_thresholds: null,
      discounts: [],
      metadata: {},
      plan: item.price,
      price: item.price,
      quantity: item.quantity,
      tax_rates: [],
    })),
    metadata: {},
    on_behalf_of: null,
    proration_behavior: 'create_prorations',
    start_date: phase.startDate,
    transfer_data: null,
    trial_end: null,
  }
}

export function registerSubscriptionScheduleRoutes(router: Router): void {
  router.get('/v1/subscription_schedules', ({ state, params }) => {
    const customer = params.string('customer')
    return listResponse({
      params,
      url: '/v1/subscription_schedules',
      objectName: 'subscription_schedule',
      records: state.subscriptionSchedules.values(),
      filter: (record) => customer === undefined || record.customer === customer,
      render: (record) => renderSubscriptionSchedule(state, record),
    })
  })
  router.get('/v1/subscription_schedules/:id', ({ state, pathParam }) =>
    renderSubscriptionSchedule(
      state,
      requireRecord(state.subscriptionSchedules, 'subscription_schedule', pathParam('id')),
    ),
  )
}
