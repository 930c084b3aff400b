import type { NewSeedPrice } from './emulator.ts'
import { parameterMissing } from './errors.ts'
import type { Params } from './params.ts'
import {
  BALANCE_TRANSACTION_TYPES,
  type NewBalanceTransaction,
} from './resources/balance-transactions.ts'
import type { NewCustomer } from './resources/customers.ts'
import { INVOICE_STATUSES, type NewInvoice } from './resources/invoices.ts'
import { PRICE_INTERVALS } from './resources/prices.ts'
import type { NewProduct } from './resources/products.ts'
import {
  type NewSubscriptionSchedule,
  SUBSCRIPTION_SCHEDULE_STATUSES,
} from './resources/subscription-schedules.ts'
import { type NewSubscription, SUBSCRIPTION_STATUSES } from './resources/subscriptions.ts'

/**
 * The `POST /_emulator/seed/:kind` bodies (snake_case, JSON or form) read into the
 * arguments of the matching `seed…` method.
 */
export function customerSeed(params: Params): NewCustomer {
  return {
    id: params.string('id'),
    email: params.string('email'),
    name: params.string('name'),
    phone: params.string('phone'),
    description: params.string('description'),
    metadata: params.metadata(),
    created: params.integer('created'),
  }
}

export function productSeed(params: Params): NewProduct {
  return {
    id: params.string('id'),
    name: params.string('name'),
    active: params.boolean('active'),
    description: params.string('description'),
    defaultPrice: params.string('default_price'),
    metadata: params.metadata(),
    created: params.integer('created'),
  }
}

export function priceSeed(params: Params): NewSeedPrice {
  const recurring = params.object('recurring')
  return {
    id: params.string('id'),
    product: params.string('product'),
    unitAmount: params.requiredInteger('unit_amount'),
    currency: params.currency(),
    recurring:
      recurring === undefined
        ? null
        : {
            interval: recurring.oneOf('interval', PRICE_INTERVALS) ?? 'month',
            intervalCount: recurring.integer('interval_count') ?? 1,
          },
    active: params.boolean('active'),
    nickname: params.string('nickname'),
    lookupKey: params.string('lookup_key'),
    metadata: params.metadata(),
    created: params.integer('created'),
  }
}

export function invoiceSeed(params: Params): NewInvoice {
  const lines = params.objects('lines')
  return {
    id: params.string('id'),
    customer: params.requiredString('customer'),
    amountDue: params.integer('amount_due'),
    lines:
      lines.length === 0
        ? undefined
        : lines.map((line) => ({
            description: line.string('description'),
            amount: line.requiredInteger('amount'),
            quantity: line.integer('quantity'),
            price: line.string('price'),
          })),
    currency: params.currency(),
    status: params.oneOf('status', INVOICE_STATUSES),
    subscription: params.string('subscription'),
    description: params.string('description'),
    metadata: params.metadata(),
    dueDate: params.integer('due_date'),
    collectionMethod: params.oneOf('collection_method', [
      'charge_automatically',
      'send_invoice',
    ] as const),
    billingReason: params.string('billing_reason'),
    defaultPaymentMethod: params.string('default_payment_method'),
    created: params.integer('created'),
  }
}

export function subscriptionSeed(params: Params): NewSubscription {
  const items = params.objects('items')
  const price = params.string('price')
  if (items.length === 0 && price === undefined) throw parameterMissing('items')
  return {
    id: params.string('id'),
    customer: params.requiredString('customer'),
    items:
      items.length === 0
        ? [{ price: price ?? '', quantity: params.integer('quantity') }]
        : items.map((item) => ({
            price: item.requiredString('price'),
            quantity: item.integer('quantity'),
          })),
    status: params.oneOf('status', SUBSCRIPTION_STATUSES),
    currentPeriodStart: params.integer('current_period_start'),
    currentPeriodEnd: params.integer('current_period_end'),
    cancelAtPeriodEnd: params.boolean('cancel_at_period_end'),
    defaultPaymentMethod: params.string('default_payment_method'),
    latestInvoice: params.string('latest_invoice'),
    metadata: params.metadata(),
    description: params.string('description'),
    created: params.integer('created'),
  }
}

export function subscriptionScheduleSeed(params: Params): NewSubscriptionSchedule {
  return {
    id: params.string('id'),
    customer: params.requiredString('customer'),
    subscription: params.string('subscription'),
    status: params.oneOf('status', SUBSCRIPTION_SCHEDULE_STATUSES),
    phases: params.objects('phases').map((phase) => ({
      startDate: phase.requiredInteger('start_date'),
      endDate: phase.requiredInteger('end_date'),
      items: phase.objects('items').map((item) => ({
        price: item.requiredString('price'),
        quantity: item.integer('quantity'),
      })),
    })),
    metadata: params.metadata(),
    created: params.integer('created'),
  }
}

export function balanceTransactionSeed(params: Params): NewBalanceTransaction {
  return {
    id: params.string('id'),
    amount: params.requiredInteger('amount'),
    currency: params.currency(),
    type: params.oneOf('type', BALANCE_TRANSACTION_TYPES),
    source: params.string('source'),
    fee: params.integer('fee'),
    description: params.string('description'),
    status: params.oneOf('status', ['available', 'pending'] as const),
    created: params.integer('created'),
  }
}
