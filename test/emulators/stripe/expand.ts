import { invalidRequest } from './errors.ts'
import { renderEvent } from './events.ts'
import { isJsonObject, type JsonObject, type JsonValue } from './json.ts'
import { renderBalanceTransaction } from './resources/balance-transactions.ts'
import { renderCharge } from './resources/charges.ts'
import { renderCheckoutSession } from './resources/checkout-sessions.ts'
import { renderCustomer } from './resources/customers.ts'
import { renderInvoice } from './resources/invoices.ts'
import { renderPaymentIntent } from './resources/payment-intents.ts'
import { renderPaymentMethod } from './resources/payment-methods.ts'
import { renderPrice } from './resources/prices.ts'
import { renderProduct } from './resources/products.ts'
import { renderRefund } from './resources/refunds.ts'
import { renderSubscriptionSchedule } from './resources/subscription-schedules.ts'
import { renderSubscription } from './resources/subscriptions.ts'
import type { EmulatorState } from './state.ts'

/** Stripe's limit on how deep `expand` may reach. */
const MAX_DEPTH = 4

/** The current rendering of any stored object, found by its id's prefix. */
export function renderById(state: EmulatorState, id: string): JsonObject | undefined {
  const lookups: [string, () => JsonObject | undefined][] = [
    ['cus_', () => optional(state.customers.get(id), renderCustomer)],
    ['pm_', () => optional(state.paymentMethods.get(id), renderPaymentMethod)],
    ['pi_', () => optional(state.paymentIntents.get(id), renderPaymentIntent)],
    ['ch_', () => optional(state.charges.get(id), (r) => renderCharge(state, r))],
    ['re_', () => optional(state.refunds.get(id), renderRefund)],
    ['cs_', () => optional(state.checkoutSessions.get(id), (r) => renderCheckoutSession(state, r))],
    ['in_', () => optional(state.invoices.get(id), (r) => renderInvoice(state, r))],
    [
      'sub_sched_',
      () =>
        optional(state.subscriptionSchedules.get(id), (r) => renderSubscriptionSchedule(state, r)),
    ],
    ['sub_', () => optional(state.subscriptions.get(id), (r) => renderSubscription(state, r))],
    ['prod_', () => optional(state.products.get(id), renderProduct)],
    ['price_', () => optional(state.prices.get(id), renderPrice)],
    ['txn_', () => optional(state.balanceTransactions.get(id), renderBalanceTransaction)],
    ['evt_', () => optional(state.events.records.get(id), renderEvent)],
  ]
  return lookups.find(([prefix]) => id.startsWith(prefix))?.[1]()
}

function optional<T>(record: T | undefined, render: (record: T) => JsonObject) {
  return record === undefined ? undefined : render(record)
}

/**
 * Replaces the ids at each `expand[]` path (`latest_charge`, `payment_intent.payment_method`,
 * `data.customer` on a list) with the objects they name, as Stripe does.
 */
export function expandPaths(state: EmulatorState, body: JsonObject, paths: string[]): JsonObject {
  for (const path of paths) {
    const segments = path.split('.')
    if (segments.length > MAX_DEPTH) {
      throw invalidRequest(
        `You cannot expand more than ${MAX_DEPTH} levels of a property. Property: ${path}`,
        'expand',
      )
    }
    expandAt(state, body, segments, path)
  }
  return body
}

function expandAt(
  state: EmulatorState,
  holder: JsonObject,
  segments: string[],
  fullPath: string,
): void {
  const [head, ...rest] = segments
  if (head === undefined) return
  if (!Object.hasOwn(holder, head)) throw notExpandable(fullPath)
  const value: JsonValue = holder[head] ?? null
  if (value === null) return
  if (Array.isArray(value)) {
    for (const element of value) {
      if (isJsonObject(element)) expandAt(state, element, rest, fullPath)
    }
    return
  }
  let target: JsonObject
  if (typeof value === 'string') {
    const found = renderById(state, value)
    if (found === undefined) throw notExpandable(fullPath)
    holder[head] = found
    target = found
  } else if (isJsonObject(value)) {
    target = value
  } else {
    throw notExpandable(fullPath)
  }
  if (rest.length > 0) expandAt(state, target, rest, fullPath)
}

function notExpandable(path: string) {
  return invalidRequest(`This property cannot be expanded (${path}).`, 'expand')
}
