import { AppError, isRefusalOrUnreachable, notFound, validationError } from '../../core/errors.ts'
import { formatMinorUnits, normalizeCurrency, toMinorUnits } from '../../core/money.ts'
import {
  type Access,
  adminAccess,
  type Principal,
  type Scope,
  scopeOf,
} from '../../core/principal.ts'
import type { Payment, PaymentMethodType, Subscription } from '../../db/database.ts'
import type { GatewayName } from '../../gateways/gateway.ts'
import {
  availableGatewayNames,
  gatewayFor,
  isGatewayAvailable,
  isGatewayName,
} from '../../gateways/registry.ts'
import { balanceOf } from '../balances/service.ts'
import { getCustomer } from '../customers/service.ts'
import { assertPayable, getInvoice, lockInvoiceOrFail } from '../invoices/service.ts'
import { getOrder } from '../orders/service.ts'
import { findCustomerPaymentMethod } from '../payment-methods/service.ts'
import {
  applyDiscountCodeLocked,
  assertStartsNoEndedSubscription,
  cancelSubscriptionAndFirstInvoice,
  ENDED_SUBSCRIPTION_DETAIL,
  endIncompleteCancellationAndFirstInvoice,
  voidableFirstInvoice,
} from '../settlement/service.ts'
import { findDueIncompleteCancellations, findSubscription } from '../subscriptions/repository.ts'
import type { UpdateSubscriptionBody } from '../subscriptions/schemas.ts'
import {
  isDueIncompleteCancellation,
  type SubscriptionWithSchedules,
  updateSubscriptionSettings,
} from '../subscriptions/service.ts'
import { openPaymentsForInvoice, setAllocationAmount, updatePayment } from './repository.ts'
import { assertNoAutomaticFlag, type CreatePaymentBody } from './schemas.ts'
import {
  cancelPayment,
  createPaymentRecord,
  getPayment,
  type NewPayment,
  type PaymentDeps,
  type PaymentView,
  processPayment,
  withLockedPayment,
} from './service.ts'
import { type Cause, recordPaymentEvent } from './state.ts'

/** Method types a customer token may pay with; recording money received offline is for admins. */
const CUSTOMER_METHOD_TYPES: readonly PaymentMethodType[] = [
  'PAYMENT_LINK',
  'CARD',
  'CRYPTO',
  'CREDITS',
  'EXTERNAL',
]

export function accessFor(principal: Principal): Access {
  return {
    tenantId: principal.tenantId,
    environmentId: principal.environmentId,
    customerId: principal.customerId,
  }
}

export function assertMethodAllowed(access: Access, methodType: PaymentMethodType): void {
  if (access.customerId !== null && !CUSTOMER_METHOD_TYPES.includes(methodType)) {
    throw new AppError('forbidden', `A customer token cannot create ${methodType} payments`, {
      payment_method_type: methodType,
    })
  }
}

/**
 * `POST /v1/payments` (Flexprice-compatible): create the payment, then process it
 * unless `process_payment` is false. A decline is a 402 after the FAILED payment
 * is saved.
 */
export async function createAndProcess(
  deps: PaymentDeps,
  access: Access,
  body: CreatePaymentBody,
  cause: Cause,
): Promise<PaymentView> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    assertMethodAllowed(access, body.payment_method_type)
    assertNoAutomaticFlag(body.metadata)
    const currency = normalizeCurrency(body.currency)
    const amount = toMinorUnits(body.amount, currency)
    const view = await createPaymentRecord(deps, access, {
      allocations: [{ invoiceId: body.destination_id, amount }],
      destinationType: 'INVOICE',
      destinationId: body.destination_id,
      subject: null,
      methodType: body.payment_method_type,
      gateway: body.payment_gateway,
      paymentMethodId: body.payment_method_id,
      currency,
      successUrl: body.success_url,
      cancelUrl: body.cancel_url,
      saveCard: body.save_card_and_make_default,
      metadata: body.metadata,
      idempotencyKey: body.idempotency_key,
      description: body.description,
      billingAddress: body.billing_address,
      discountCode: body.discount_code,
      paymentDate: body.payment_date ? new Date(body.payment_date) : undefined,
      createdBy: cause.causeId,
      settleWith: body.process_payment === false ? undefined : cause,
    })
    if (body.process_payment === false) return view
    return processUnlessSettled(deps, access, view, cause)
  })
}

export interface PayInvoiceInput {
  payment_method_type: PaymentMethodType
  payment_gateway?: string | undefined
  payment_method_id?: string | undefined
  amount?: string | number | undefined
  success_url?: string | undefined
  cancel_url?: string | undefined
  save_card_and_make_default?: boolean | undefined
  discount_code?: string | undefined
  metadata?: Record<string, string> | undefined
}

/** `POST /v1/invoices/:id/pay`: pay what is left (or `amount`) of an invoice with one method, now. */
export async function payInvoice(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  input: PayInvoiceInput,
  cause: Cause,
): Promise<PaymentView> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    assertMethodAllowed(access, input.payment_method_type)
    assertNoAutomaticFlag(input.metadata)
    const { invoice } = await getInvoice(deps.db, access, invoiceId)
    const view = await createPaymentRecord(deps, access, {
      allocations: [
        {
          invoiceId,
          amount:
            input.amount === undefined ? 'remaining' : toMinorUnits(input.amount, invoice.currency),
        },
      ],
      destinationType: 'INVOICE',
      destinationId: invoiceId,
      subject: null,
      methodType: input.payment_method_type,
      gateway: input.payment_gateway,
      paymentMethodId: input.payment_method_id,
      currency: invoice.currency,
      successUrl: input.success_url,
      cancelUrl: input.cancel_url,
      saveCard: input.save_card_and_make_default,
      metadata: input.metadata,
      discountCode: input.discount_code,
      createdBy: cause.causeId,
      settleWith: cause,
    })
    return processUnlessSettled(deps, access, view, cause)
  })
}

/** `POST /v1/orders/pay`: one payment for several pending orders of one customer, split over their invoices. */
export async function payOrders(
  deps: PaymentDeps,
  access: Access,
  orderIds: string[],
  input: Omit<PayInvoiceInput, 'amount' | 'discount_code'>,
  cause: Cause,
): Promise<PaymentView> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    assertMethodAllowed(access, input.payment_method_type)
    assertNoAutomaticFlag(input.metadata)
    if (new Set(orderIds).size !== orderIds.length)
      throw validationError('orders lists an order twice', { field: 'orders' })
    const allocations: NewPayment['allocations'] = []
    let currency: string | undefined
    for (const id of orderIds) {
      const order = await getOrder(deps.db, access, id)
      if (order.status !== 'PENDING') {
        throw new AppError(
          'invalid_state_transition',
          `Order ${id} is ${order.status}; only pending orders can be paid`,
          {
            order_id: id,
            status: order.status,
          },
        )
      }
      const { invoice } = await getInvoice(deps.db, access, order.invoice_id)
      currency ??= invoice.currency
      if (invoice.currency !== currency)
        throw validationError('All orders paid together must be in one currency', {
          field: 'orders',
        })
      allocations.push({ invoiceId: invoice.id, amount: 'remaining' })
    }
    if (!currency) throw validationError('orders must list at least one order', { field: 'orders' })
    const first = orderIds[0] ?? ''
    const view = await createPaymentRecord(deps, access, {
      allocations,
      destinationType: 'ORDERS',
      destinationId: first,
      subject: first,
      methodType: input.payment_method_type,
      gateway: input.payment_gateway,
      paymentMethodId: input.payment_method_id,
      currency,
      successUrl: input.success_url,
      cancelUrl: input.cancel_url,
      saveCard: input.save_card_and_make_default,
      metadata: input.metadata,
      createdBy: cause.causeId,
      settleWith: cause,
    })
    return processUnlessSettled(deps, access, view, cause)
  })
}

/**
 * Runs a payment flow. Refused because an invoice it pays is the first of a subscription the
 * merchant has ended (`assertStartsNoEndedSubscription`: set to cancel at a period end that
 * has passed, the renewal job behind), that subscription is ended there and then, as the job
 * would end it (its first invoice voided, its order cancelled), and the refusal stands: as
 * when the job has run. Before, such a payment started the subscription with a new period.
 */
async function catchingUpEndedSubscription<T>(
  deps: PaymentDeps,
  access: Access,
  cause: Cause,
  pay: () => Promise<T>,
): Promise<T> {
  try {
    return await pay()
  } catch (error) {
    const ended = error instanceof AppError ? error.details[ENDED_SUBSCRIPTION_DETAIL] : undefined
    if (typeof ended === 'string') {
      try {
        await endDueIncompleteCancellation(deps, adminAccess(scopeOf(access)), ended, cause)
      } catch (failure) {
        // The renewal job ends it on its next run; the payment is refused all the same.
        deps.logger.error({ err: failure, subscription_id: ended }, 'subscription ending failed')
      }
    }
    throw error
  }
}

/** Internal rails settled the payment as they created it; every other rail is processed now. */
function processUnlessSettled(
  deps: PaymentDeps,
  access: Access,
  view: PaymentView,
  cause: Cause,
): Promise<PaymentView> | PaymentView {
  if (view.payment.payment_status !== 'INITIATED') return view
  // A payment made earlier under the same `idempotency_key` is processed by its id: its
  // invoices are checked again under their locks, as they may have been paid since.
  if (view.replayed) return processPayment(deps, scopeOf(access), view.payment.id, cause)
  return processPayment(deps, scopeOf(access), view.payment, cause, view.customer)
}

export const ON_RAMP_TYPES = ['PLATFORM', 'CHECKOUT', 'EXTERNAL'] as const
export type OnRampType = (typeof ON_RAMP_TYPES)[number]

export interface OnRampInput {
  type: OnRampType
  account_id?: string | undefined
  some_data?: unknown
  payment_id?: string | undefined
  discount_code?: string | undefined
  payment_gateway?: string | undefined
  success_url?: string | undefined
  cancel_url?: string | undefined
}

const ON_RAMP_METHOD: Record<OnRampType, PaymentMethodType> = {
  PLATFORM: 'CREDITS',
  CHECKOUT: 'PAYMENT_LINK',
  EXTERNAL: 'EXTERNAL',
}

/**
 * `PUT /v1/invoices/:id/payment`: the invoice's open payment of this type (or the
 * one named by `payment_id`), or a new INITIATED one for what is left to pay.
 * `created` tells the route whether to answer 201 or 200.
 */
export async function createOrRetrieveInvoicePayment(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  input: OnRampInput,
  cause: Cause,
): Promise<PaymentView & { created: boolean }> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    const { invoice } = await getInvoice(deps.db, access, invoiceId)
    const methodType = ON_RAMP_METHOD[input.type]
    if (input.type === 'PLATFORM') {
      if (!input.account_id)
        throw validationError('PLATFORM payments need account_id (the paying customer)', {
          field: 'account_id',
        })
      if (input.account_id !== invoice.customer_id) {
        throw validationError("account_id must be the invoice's customer", { field: 'account_id' })
      }
    }
    if (input.payment_id) {
      const open = await openPaymentsForInvoice(deps.db, access.environmentId, invoiceId)
      const named = open.find((p) => p.id === input.payment_id)
      if (!named) throw notFound('payment', input.payment_id)
      // As without payment_id: the existing payment's amount would not follow the code.
      // Before, the code was dropped and the undiscounted payment returned with 200.
      if (input.discount_code) throw discountOnExistingPayment(invoiceId, named)
      return { ...(await getPayment(deps.db, access, named.id)), created: false }
    }
    const view = await createPaymentRecord(deps, access, {
      allocations: [{ invoiceId, amount: 'remaining' }],
      // The open payment of this type is found under the invoice's row lock: concurrent PUTs make one payment.
      reuseOpen: true,
      destinationType: 'INVOICE',
      destinationId: invoiceId,
      subject: null,
      methodType,
      gateway:
        input.payment_gateway ??
        (input.type === 'CHECKOUT' ? await hostedCheckoutGateway(deps, access) : undefined),
      currency: invoice.currency,
      successUrl: input.success_url,
      cancelUrl: input.cancel_url,
      discountCode: input.discount_code,
      gatewayMetadata:
        input.some_data === undefined ? undefined : { some_data: JSON.stringify(input.some_data) },
      createdBy: cause.causeId,
    })
    return { ...view, created: !view.reused }
  })
}

/** 409 to a `PUT` with a discount code that finds the invoice's payment already made. */
function discountOnExistingPayment(invoiceId: string, payment: Payment): AppError {
  return new AppError(
    'conflict',
    `Invoice ${invoiceId} already has payment ${payment.id}; apply the discount code with PATCH /v1/invoices/${invoiceId}/payment`,
    { invoice_id: invoiceId, payment_id: payment.id },
  )
}

/** `PATCH /v1/invoices/:id/payment`: change the open payment before it is confirmed (discount code, URLs, external data). */
export async function updateInvoicePayment(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  input: Omit<OnRampInput, 'type'> & { type?: OnRampType | undefined },
  cause: Cause,
): Promise<PaymentView> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    const current = await openInvoicePayment(deps, access, invoiceId, input.payment_id)
    assertUnconfirmed(current)
    if (input.type && ON_RAMP_METHOD[input.type] !== current.payment_method_type) {
      throw validationError(
        'type cannot change on an existing payment; cancel it and PUT a new one',
        { field: 'type' },
      )
    }
    const scope = scopeOf(access)
    return withLockedPayment(deps, scope, current.id, async (trx, locked) => {
      // Again under the lock: a confirm that took the payment meanwhile has it charged already.
      assertUnconfirmed(locked)
      let amount = locked.amount
      if (input.discount_code) {
        // A payment of several invoices (orders/pay) would become this one's amount alone.
        if (locked.invoice_ids.length > 1) {
          throw new AppError(
            'conflict',
            `Payment ${locked.id} pays ${locked.invoice_ids.length} invoices; a discount code applies to a payment of one invoice only`,
            { payment_id: locked.id, invoice_ids: locked.invoice_ids },
          )
        }
        // A code that covers the whole invoice finds this payment open: cancel it, then PUT.
        const before = await lockInvoiceOrFail(trx, scope, invoiceId)
        const { invoice } = await applyDiscountCodeLocked(
          trx,
          scope,
          before,
          input.discount_code,
          deps.clock,
          locked.id,
        )
        assertPayable(invoice, deps.clock.now())
        // A payment of all the invoice owed follows the code down to what it owes now; a
        // payment of part of it (the rest paid another way) keeps the amount its caller chose.
        if (locked.amount >= before.amount_remaining) {
          amount = invoice.amount_remaining
          await setAllocationAmount(trx, locked.id, invoiceId, amount)
        } else if (locked.amount > invoice.amount_remaining) {
          throw new AppError(
            'invalid_state_transition',
            `Payment ${locked.id} is more than the invoice owes once the code applies`,
            {
              payment_id: locked.id,
              amount: formatMinorUnits(locked.amount, locked.currency),
              amount_remaining: formatMinorUnits(invoice.amount_remaining, invoice.currency),
            },
          )
        }
      }
      const updated = await updatePayment(trx, locked.id, {
        amount,
        ...(input.discount_code !== undefined && { discount_code: input.discount_code }),
        ...(input.success_url !== undefined && { success_url: input.success_url }),
        ...(input.cancel_url !== undefined && { cancel_url: input.cancel_url }),
        ...(input.some_data !== undefined && {
          gateway_metadata: JSON.stringify({
            ...locked.gateway_metadata,
            some_data: JSON.stringify(input.some_data),
          }),
        }),
        updated_by: cause.causeId,
        updated_at: deps.clock.now(),
      })
      // Its amount or code changed without a move (docs/webhooks.md): `payment.updated` says so,
      // as no transition's event will. URLs and external data alone are not announced.
      if (updated.amount !== locked.amount || updated.discount_code !== locked.discount_code)
        await recordPaymentEvent(trx, scope, updated, 'payment.updated', deps.clock)
      return updated
    })
  })
}

/** Only a payment not yet confirmed (INITIATED) can change its amount, discount or URLs. */
function assertUnconfirmed(payment: Payment): void {
  if (payment.payment_status === 'INITIATED') return
  throw new AppError(
    'invalid_state_transition',
    `Payment ${payment.id} is ${payment.payment_status}; only an unconfirmed payment can change`,
    { payment_id: payment.id },
  )
}

/** `POST /v1/invoices/:id/payment/confirm`: process the invoice's open payment. */
export async function confirmInvoicePayment(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  paymentId: string | undefined,
  cause: Cause,
): Promise<PaymentView> {
  return catchingUpEndedSubscription(deps, access, cause, async () => {
    const payment = await openInvoicePayment(deps, access, invoiceId, paymentId)
    if (payment.payment_status !== 'INITIATED') return getPayment(deps.db, access, payment.id)
    return processPayment(deps, scopeOf(access), payment.id, cause)
  })
}

async function openInvoicePayment(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  paymentId: string | undefined,
) {
  await getInvoice(deps.db, access, invoiceId)
  const open = await openPaymentsForInvoice(deps.db, access.environmentId, invoiceId)
  // A customer may not confirm or change what it may not create: an admin's OFFLINE payment
  // (a bank transfer still expected) is settled by the admin who sees the money arrive.
  const payment = paymentId
    ? open.find((p) => p.id === paymentId)
    : open.find(
        (p) => access.customerId === null || CUSTOMER_METHOD_TYPES.includes(p.payment_method_type),
      )
  if (!payment) throw notFound('payment', paymentId ?? `for invoice ${invoiceId}`)
  assertMethodAllowed(access, payment.payment_method_type)
  return payment
}

export interface PayOption {
  payment_method_type: PaymentMethodType
  payment_gateway: string
  available: boolean
  reason: string | null
  payment_method_id: string | null
  card: { brand: string | null; last4: string | null } | null
  balance: string | null
}

/**
 * `GET /v1/invoices/:id/pay_options`: what this customer can pay this invoice with
 * right now: connected gateways' hosted pages, the saved default card, the account
 * balance when it covers what is left, external and offline rails.
 */
export async function payOptions(deps: PaymentDeps, access: Access, invoiceId: string) {
  const { invoice } = await getInvoice(deps.db, access, invoiceId)
  const scope = scopeOf(access)
  let payable = true
  let reason: string | null = null
  try {
    assertPayable(invoice, deps.clock.now())
    await assertStartsNoEndedSubscription(deps.db, scope, invoice, deps.clock.now())
  } catch (error) {
    // Only a refusal says the invoice is not payable; a fault (the database gone) is a fault.
    if (!(error instanceof AppError)) throw error
    payable = false
    reason = error.message
  }
  const customer = await getCustomer(deps.db, scope, invoice.customer_id)
  const options: PayOption[] = []
  const option = (
    partial: Partial<PayOption> & Pick<PayOption, 'payment_method_type' | 'payment_gateway'>,
  ): PayOption => ({
    available: payable,
    reason: payable ? null : reason,
    payment_method_id: null,
    card: null,
    balance: null,
    ...partial,
  })
  for (const name of availableGatewayNames()) {
    if (!(await isGatewayAvailable(deps, scope, name))) continue
    const gateway = gatewayFor(name)
    for (const methodType of gateway.capabilities.methodTypes) {
      if (methodType === 'CARD' || methodType === 'CREDITS') continue
      if (methodType === 'OFFLINE' && access.customerId !== null) continue
      options.push(option({ payment_method_type: methodType, payment_gateway: name }))
    }
  }
  const method = customer.default_payment_method_id
    ? await findCustomerPaymentMethod(
        deps.db,
        scope,
        customer.id,
        customer.default_payment_method_id,
      )
    : undefined
  // A saved card charges through its gateway, which must take money here (a sandbox card
  // saved in a live environment does not).
  const cardGateway = method?.gateway ?? 'sandbox'
  const cardUsable =
    method !== undefined &&
    isGatewayName(cardGateway) &&
    (await isGatewayAvailable(deps, scope, cardGateway))
  options.push(
    option({
      payment_method_type: 'CARD',
      payment_gateway: cardGateway,
      available: payable && cardUsable,
      reason: !payable
        ? reason
        : !method
          ? 'no saved default card'
          : cardUsable
            ? null
            : `the ${cardGateway} gateway takes no payments here`,
      payment_method_id: method?.id ?? null,
      card: method ? { brand: method.card_brand, last4: method.card_last4 } : null,
    }),
  )
  const balance = await balanceOf(deps.db, customer.id, invoice.currency)
  const covers = balance >= invoice.amount_remaining && invoice.amount_remaining > 0n
  options.push(
    option({
      payment_method_type: 'CREDITS',
      payment_gateway: 'platform',
      available: payable && covers,
      reason: !payable ? reason : covers ? null : 'the balance does not cover what is left to pay',
      balance: formatMinorUnits(balance, invoice.currency),
    }),
  )
  return {
    object: 'pay_options' as const,
    invoice_id: invoice.id,
    customer_id: invoice.customer_id,
    payable,
    reason,
    currency: invoice.currency,
    amount_remaining: formatMinorUnits(invoice.amount_remaining, invoice.currency),
    payment_window_ends_at: invoice.payment_window_ends_at?.toISOString() ?? null,
    options,
  }
}

/**
 * The gateway a CHECKOUT on-ramp payment uses when none is named: the sandbox in a test
 * environment, else the first connected hosted checkout (Stripe, then Checkout.com).
 */
async function hostedCheckoutGateway(deps: PaymentDeps, scope: Scope): Promise<GatewayName> {
  for (const name of ['sandbox', 'stripe', 'checkout'] as const) {
    if (await isGatewayAvailable(deps, scope, name)) return name
  }
  throw validationError(
    'No hosted checkout is connected in this environment: connect stripe or checkout, or name payment_gateway',
    { field: 'payment_gateway' },
  )
}

/**
 * The renewal job's ending of `incomplete` subscriptions cancelled at the end of their
 * period: once it has ended, each is ended as `POST /v1/subscriptions/:id/cancel` would
 * cancel it now (`endDueIncompleteCancellation`), so that paying that invoice later cannot
 * start the subscription the merchant ended. Before, the renewal job saw only `active` and
 * `past_due` subscriptions, and such a subscription stayed `incomplete`, payable, for good.
 * Returns how many it ended; one that fails is logged and left for the next run.
 */
export async function endIncompleteAtPeriodEnd(deps: PaymentDeps): Promise<number> {
  // Failed (logged), or left as it is (a payment started it meanwhile): not listed again.
  const leftAsIs: string[] = []
  let ended = 0
  for (;;) {
    const due = await findDueIncompleteCancellations(deps.db, deps.clock.now(), 100, leftAsIs)
    if (due.length === 0) return ended
    for (const row of due) {
      const access = adminAccess({ tenantId: row.tenant_id, environmentId: row.environment_id })
      try {
        if (await endDueIncompleteCancellation(deps, access, row.id, RENEWAL_JOB)) ended += 1
        else leftAsIs.push(row.id)
      } catch (error) {
        deps.logger.error({ err: error, subscription_id: row.id }, 'subscription ending failed')
        leftAsIs.push(row.id)
      }
    }
  }
}

const RENEWAL_JOB: Cause = { cause: 'job', causeId: 'renew_subscriptions' }

/**
 * Ends `id` if it is an `incomplete` subscription whose cancel at the period end has come
 * (`isDueIncompleteCancellation`), as a cancel now would end it: the unprocessed payments of
 * its first invoice cancelled (`cancelUnprocessedFirstPayments`), then the invoice voided
 * and its order cancelled, or the subscription alone ended, each decided again under the
 * subscription's row lock (`endIncompleteCancellationAndFirstInvoice`). The renewal job does
 * it once the period has ended, and so does a request that finds the job behind: a change,
 * a cancel, a payment of that invoice. Returns whether it ended it.
 */
export async function endDueIncompleteCancellation(
  deps: PaymentDeps,
  access: Access,
  id: string,
  cause: Cause,
): Promise<boolean> {
  const current = await findSubscription(deps.db, access.environmentId, id)
  return current !== undefined && (await endIfCancellationDue(deps, access, current, cause))
}

/** `endDueIncompleteCancellation` of a subscription read by the caller. */
async function endIfCancellationDue(
  deps: PaymentDeps,
  access: Access,
  current: Subscription,
  cause: Cause,
): Promise<boolean> {
  if (!isDueIncompleteCancellation(current, deps.clock.now())) return false
  await cancelUnprocessedFirstPayments(deps, access, current, cause)
  const scope = scopeOf(access)
  const ended = await endIncompleteCancellationAndFirstInvoice(
    deps.db,
    scope,
    current.id,
    deps.clock,
  )
  return ended !== undefined
}

/**
 * `PATCH /v1/subscriptions/:id`. One set to cancel at a period end that has passed, the
 * renewal job behind, is ended first as the job would end it, and the change then finds it
 * canceled (422): before, a PATCH took back a cancel whose moment had passed, and the
 * subscription stayed `incomplete`, its first invoice payable.
 */
export async function changeSubscription(
  deps: PaymentDeps,
  access: Access,
  id: string,
  body: UpdateSubscriptionBody,
  cause: Cause,
): Promise<SubscriptionWithSchedules> {
  await endDueIncompleteCancellation(deps, access, id, cause)
  return updateSubscriptionSettings(deps.db, scopeOf(access), id, body, deps.clock)
}

/**
 * `POST /v1/subscriptions/:id/cancel`. An `incomplete` subscription cancelled now first has
 * the payments of its first invoice that hold no money yet (`INITIATED`) cancelled, when
 * that lets the invoice be voided (`voidableFirstInvoice`): processed later, one would charge
 * the customer for a subscription that no longer exists. The invoice is then voided by
 * `cancelSubscriptionAndFirstInvoice`. A payment that cannot be cancelled (its provider
 * cannot withdraw what it opened, or cannot be reached) leaves the invoice as it is, and the
 * subscription alone is cancelled. One whose cancel at the period end has come is ended as
 * the renewal job would end it, and the cancel then finds it canceled (422).
 */
export async function cancelSubscriptionNow(
  deps: PaymentDeps,
  access: Access,
  id: string,
  atPeriodEnd: boolean,
  cause: Cause,
) {
  const current = await findSubscription(deps.db, access.environmentId, id)
  const ended = current !== undefined && (await endIfCancellationDue(deps, access, current, cause))
  if (current && !ended && !atPeriodEnd)
    await cancelUnprocessedFirstPayments(deps, access, current, cause)
  return cancelSubscriptionAndFirstInvoice(deps.db, scopeOf(access), id, atPeriodEnd, deps.clock)
}

/**
 * Cancels the payments of an `incomplete` subscription's first invoice that hold no money yet,
 * when that lets the invoice be voided (`voidableFirstInvoice`). One that cannot be cancelled
 * (moved on meanwhile, not withdrawable, or its provider unreachable) is left, and the
 * invoice with it.
 */
async function cancelUnprocessedFirstPayments(
  deps: PaymentDeps,
  access: Access,
  subscription: Subscription,
  cause: Cause,
): Promise<void> {
  const first = await voidableFirstInvoice(deps.db, scopeOf(access), subscription)
  for (const payment of first?.unprocessed ?? []) {
    try {
      await cancelPayment(deps, access, payment.id, cause)
    } catch (error) {
      if (!isRefusalOrUnreachable(error)) throw error
    }
  }
}
