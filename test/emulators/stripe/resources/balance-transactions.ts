import { template } from '../fixtures.ts'
import { newId } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'

export const BALANCE_TRANSACTION_TYPES = [
  'adjustment',
  'charge',
  'payment',
  'payment_refund',
  'payout',
  'refund',
  'refund_failure',
  'stripe_fee',
] as const
export type BalanceTransactionType = (typeof BALANCE_TRANSACTION_TYPES)[number]

export interface BalanceTransactionRecord extends StoredRecord {
  amount: number
  fee: number
  currency: string
  type: BalanceTransactionType
  /** The charge, refund or payout that moved the money. */
  source: string | null
  description: string | null
  status: 'available' | 'pending'
  availableOn: number
  /** Any other fields, set verbatim over the rendered object. */
  overrides: JsonObject
}

export interface NewBalanceTransaction {
  id?: string
  amount: number
  currency?: string
  type?: BalanceTransactionType
  source?: string | null
  fee?: number
  description?: string | null
  status?: 'available' | 'pending'
  created?: number
  availableOn?: number
  overrides?: JsonObject
}

/** Stripe's standard card pricing (2.9% + 30 minor units), as test mode reports it. */
export function cardProcessingFee(amount: number): number {
  return Math.round(amount * 0.029) + 30
}

export function insertBalanceTransaction(
  state: EmulatorState,
  fields: NewBalanceTransaction,
): BalanceTransactionRecord {
  const created = fields.created ?? state.nowSeconds()
  const record: BalanceTransactionRecord = {
    id: fields.id ?? newId('balance_transaction'),
    created,
    seq: state.nextSeq(),
    amount: fields.amount,
    fee: fields.fee ?? 0,
    currency: fields.currency ?? 'usd',
    type: fields.type ?? 'charge',
    source: fields.source ?? null,
    description: fields.description ?? null,
    status: fields.status ?? 'available',
    availableOn: fields.availableOn ?? created,
    overrides: fields.overrides ?? {},
  }
  state.balanceTransactions.set(record.id, record)
  return record
}

export function renderBalanceTransaction(record: BalanceTransactionRecord): JsonObject {
  const rendered = withFields(template('balance_transaction'), {
    id: record.id,
    object: 'balance_transaction',
    amount: record.amount,
    available_on: record.availableOn,
    balance_type: 'payments',
    created: record.created,
    currency: record.currency,
    description: record.description,
    exchange_rate: null,
    fee: record.fee,
    fee_details:
      record.fee === 0
        ? []
        : [
            {
              amount: record.fee,
              application: null,
              currency: record.currency,
              description: 'Stripe processing fees',
              type: 'stripe_fee',
            },
          ],
    net: record.amount - record.fee,
    reporting_category: reportingCategory(record.type),
    source: record.source,
    status: record.status,
    type: record.type,
  })
  return withFields(rendered, record.overrides)
}

function reportingCategory(type: BalanceTransactionType): string {
  switch (type) {
    case 'charge':
    case 'payment':
      return 'charge'
    case 'refund':
    case 'payment_refund':
      return 'refund'
    case 'refund_failure':
      return 'refund_failure'
    case 'payout':
      return 'payout'
    case 'stripe_fee':
      return 'fee'
    case 'adjustment':
      return 'other_adjustment'
  }
}

export function registerBalanceTransactionRoutes(router: Router): void {
  router.get('/v1/balance_transactions', ({ state, params }) => {
    const type = params.string('type')
    const source = params.string('source')
    const currency = params.currency()
    return listResponse({
      params,
      url: '/v1/balance_transactions',
      objectName: 'balance transaction',
      records: state.balanceTransactions.values(),
      filter: (record) =>
        (type === undefined || record.type === type) &&
        (source === undefined || record.source === source) &&
        (currency === undefined || record.currency === currency),
      render: renderBalanceTransaction,
    })
  })
  router.get('/v1/balance_transactions/:id', ({ state, pathParam }) =>
    renderBalanceTransaction(
      requireRecord(state.balanceTransactions, 'balance transaction', pathParam('id')),
    ),
  )
}
