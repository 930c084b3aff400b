import { randomInt } from 'node:crypto'
import type { Updateable } from 'kysely'
import type { Clock } from '../../core/clock.ts'
import { AppError, type ErrorCode, notFound, validationError } from '../../core/errors.ts'
import { compareIds, newId } from '../../core/ids.ts'
import { formatMinorUnits, normalizeCurrency, toMinorUnits } from '../../core/money.ts'
import { checkTransition, isSettled, type PaymentStatus } from '../../core/payment-state.ts'
import { type Access, type Scope, scopeOf } from '../../core/principal.ts'
import type { SecretBox } from '../../core/secret-box.ts'
import type { Db } from '../../db/client.ts'
import type {
  Customer,
  Invoice,
  Payment,
  PaymentAttempt,
  PaymentMethod,
  PaymentMethodType,
  PaymentTable,
  StringMap,
} from '../../db/database.ts'
import { isPgError, PG_UNIQUE_VIOLATION } from '../../db/errors.ts'
import { inTransaction } from '../../db/transaction.ts'
import {
  type CancelResult,
  type ChargeResult,
  type CheckoutResult,
  DECLINE_CODES,
  type Decline,
  type Gateway,
  type GatewayContext,
  type GatewayFailure,
  type GatewayName,
  type GatewayPaymentRequest,
} from '../../gateways/gateway.ts'
import {
  assertMayTakeMoney,
  type GatewayDeps,
  gatewayContext,
  resolveGateway,
} from '../../gateways/registry.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import { queueDefaultMethodSync } from '../../jobs/tasks/sync-default-payment-method.ts'
import type { Logger } from '../../logger.ts'
import {
  customerOfInvoiceAhead,
  setDefaultPaymentMethodRow,
  setGatewayCustomerId,
  takeCustomerOfInvoice,
} from '../customers/repository.ts'
import { customerEvent, getCustomer } from '../customers/service.ts'
import { recordEvents } from '../events/service.ts'
import { findInvoice, findInvoices } from '../invoices/repository.ts'
import { assertPayable, lockInvoiceOrFail } from '../invoices/service.ts'
import { findCustomerPaymentMethod, savePaymentMethod } from '../payment-methods/service.ts'
import { applyDiscountCodeLocked, assertStartsNoEndedSubscription } from '../settlement/service.ts'
import {
  ANSWER_LOST,
  allocationsLockingInvoices,
  allocationsOf,
  attemptsOf,
  attemptsOfHeldPayment,
  findPayment,
  findPaymentByIdempotencyKey,
  inFlightAhead,
  inFlightAmount,
  inFlightOf,
  insertAttempt,
  insertPayment,
  listPaymentsJson as listPaymentPageJson,
  lockPayment,
  openPaymentsForInvoice,
  type PaymentFilters,
  type PaymentSortField,
  processingSince,
  updatePayment,
} from './repository.ts'
import { assertNoAutomaticFlag, type UpdatePaymentBody } from './schemas.ts'
import { type Cause, movePayment, recordCreation } from './state.ts'

export interface PaymentDeps extends GatewayDeps {
  logger: Logger
  secretBox: SecretBox
}

export interface NewPayment {
  /** Invoices this payment pays, with the amount meant for each (one for `INVOICE` payments). */
  allocations: { invoiceId: string; amount: bigint | 'remaining' }[]
  /** Return the invoice's open payment of this method type instead of creating a second (the on-ramp). */
  reuseOpen?: boolean | undefined
  destinationType: 'INVOICE' | 'ORDERS'
  destinationId: string
  subject: string | null
  methodType: PaymentMethodType
  gateway: string | undefined
  paymentMethodId?: string | undefined
  currency: string
  successUrl?: string | undefined
  cancelUrl?: string | undefined
  saveCard?: boolean | undefined
  metadata?: StringMap | undefined
  gatewayMetadata?: StringMap | undefined
  idempotencyKey?: string | undefined
  description?: string | undefined
  billingAddress?: object | undefined
  discountCode?: string | undefined
  paymentDate?: Date | undefined
  createdBy: string | null
  /**
   * Settle at once on an internal rail (balance, offline), in the transaction that
   * creates the payment, with this cause. Other rails ignore it and are processed after.
   */
  settleWith?: Cause | undefined
}

export interface PaymentView {
  payment: Payment
  invoiceIds: string[]
  /** The payment's attempts when the transaction that produced the view knows them. */
  attempts?: PaymentAttempt[] | undefined
  /** True when an open payment was returned instead of a new one being created. */
  reused?: boolean
  /** True when the payment was made earlier under the request's `idempotency_key`. */
  replayed?: boolean
  /** The payment's customer, when the transaction that wrote it read it for the gateway. */
  customer?: Customer | undefined
}

/** What a new payment's transaction returns when a discount code paid the whole invoice. */
const PAID_BY_DISCOUNT = Symbol('paid by discount')
/** What it returns when a payment under the request's `idempotency_key` committed meanwhile. */
const MADE_MEANWHILE = Symbol('made under the same key meanwhile')

/**
 * The answer to a payment a discount code made needless: 409, after the invoice was paid by
 * the code (committed). A client retrying finds the invoice paid.
 */
function paidByDiscountError(invoice: Invoice | undefined, code: string | undefined): AppError {
  return new AppError(
    'conflict',
    `Invoice ${invoice?.id} is paid in full by discount code ${code}: no payment is needed`,
    {
      invoice_id: invoice?.id ?? null,
      payment_status: invoice?.payment_status ?? null,
      paid_by_discount: true,
    },
  )
}

const HUMAN_ID_ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ'
const HUMAN_ID_SPACE = HUMAN_ID_ALPHABET.length ** 6

/**
 * Writes a new INITIATED payment and its allocations, after checking each invoice
 * under its row lock: finalized, unpaid, window open, same customer and currency,
 * amount within what is left to pay. A discount code is applied to a single
 * invoice first. A repeated `idempotency_key` returns the payment it made.
 *
 * @example
 * const { payment } = await createPaymentRecord(deps, access, { allocations: [{ invoiceId, amount: 1500n }], … })
 */
export async function createPaymentRecord(
  deps: PaymentDeps,
  access: Access,
  input: NewPayment,
): Promise<PaymentView> {
  const scope = scopeOf(access)
  // A repeat is compared with the request as it came, before a card or gateway is chosen for it.
  const requested = input
  if (input.idempotencyKey) {
    const existing = await findPaymentByIdempotencyKey(
      deps.db,
      scope.environmentId,
      input.idempotencyKey,
    )
    if (existing) return replayByKey(deps, access, existing, requested)
  }
  input = await withCardGateway(deps, access, input)
  const gateway = resolveGateway(input.methodType, input.gateway)
  // A gateway that is not connected is refused before anything is written.
  await assertMayTakeMoney(deps, scope, gateway.name)
  const ctx = await gatewayContext(deps, scope, gateway.name)
  // A payment the gateway is asked for once it is written needs its customer (`gatewayRequestFor`).
  const toGateway = input.settleWith !== undefined && !gateway.capabilities.internal
  let paidByDiscount: Invoice | undefined
  let madeMeanwhile: Payment | undefined
  try {
    const settled = await withNewHumanId(
      deps.db,
      async (
        trx,
        humanId,
      ): Promise<SettledView | typeof PAID_BY_DISCOUNT | typeof MADE_MEANWHILE> => {
        const locked = new Map<string, Invoice>()
        // Locked in the order of their ids, not the caller's: two payments of the same invoices
        // named in opposite orders would otherwise each hold one lock and wait for the other.
        const lockOrder =
          input.allocations.length > 1
            ? [...input.allocations].sort((a, b) => compareIds(a.invoiceId, b.invoiceId))
            : input.allocations
        const last = lockOrder[lockOrder.length - 1]
        for (const allocation of lockOrder) {
          // The charges in flight on the invoices (`inFlightOf` below), and the customer the
          // gateway will be asked for, come with the last one's lock.
          if (allocation === last) {
            inFlightAhead(
              trx,
              input.allocations.map((a) => a.invoiceId),
            )
            if (toGateway) customerOfInvoiceAhead(trx, scope.environmentId, allocation.invoiceId)
          }
          let invoice = await lockInvoiceOrFail(trx, scope, allocation.invoiceId)
          if (access.customerId !== null && invoice.customer_id !== access.customerId)
            throw notFound('invoice', invoice.id)
          // The same key sent twice at once: the first request's payment committed while this
          // one waited for the lock, and it is this request's answer, not "already paid".
          if (input.idempotencyKey && locked.size === 0) {
            madeMeanwhile = await findPaymentByIdempotencyKey(
              trx,
              scope.environmentId,
              input.idempotencyKey,
            )
            if (madeMeanwhile) return MADE_MEANWHILE
          }
          if (input.discountCode && input.allocations.length === 1) {
            const applied = await applyDiscountCodeLocked(
              trx,
              scope,
              invoice,
              input.discountCode,
              deps.clock,
            )
            // Nothing left to pay: the invoice is paid by the code, committed without a payment.
            if (applied.paidByDiscount) {
              paidByDiscount = applied.invoice
              return PAID_BY_DISCOUNT
            }
            invoice = applied.invoice
          }
          assertPayable(invoice, deps.clock.now())
          if (invoice.currency !== input.currency) {
            throw validationError(
              `currency must be the invoice's (${invoice.currency}), got '${input.currency}'`,
              {
                field: 'currency',
                invoice_currency: invoice.currency,
              },
            )
          }
          locked.set(invoice.id, invoice)
        }
        const invoices = input.allocations.flatMap((a) => locked.get(a.invoiceId) ?? [])
        const first = invoices[0]
        if (!first)
          throw validationError('A payment needs an invoice to pay', { field: 'destination_id' })
        if (invoices.some((i) => i.customer_id !== first.customer_id)) {
          throw validationError('All invoices paid together must belong to one customer', {
            field: 'orders',
          })
        }
        if (input.reuseOpen) {
          const open = (await openPaymentsForInvoice(trx, scope.environmentId, first.id)).find(
            (p) => p.payment_method_type === input.methodType,
          )
          if (open && input.discountCode) {
            // The code was applied to the invoice above; this rolls it back. The open payment's
            // amount would not follow it: PATCH changes the payment and the invoice together.
            throw new AppError(
              'conflict',
              `Invoice ${first.id} already has an open ${input.methodType} payment; apply the discount code with PATCH /v1/invoices/${first.id}/payment`,
              { invoice_id: first.id, payment_id: open.id },
            )
          }
          // The open payment as it is: one of several orders' invoices pays them all.
          if (open) return { payment: open, invoiceIds: open.invoice_ids, reused: true }
        }
        const amounts = input.allocations.map((allocation, index) => {
          const invoice = invoices[index]
          if (!invoice) throw new Error('allocation without invoice')
          const amount =
            allocation.amount === 'remaining' ? invoice.amount_remaining : allocation.amount
          if (amount <= 0n)
            throw validationError('amount must be greater than zero', { field: 'amount' })
          if (amount > invoice.amount_remaining) {
            throw validationError(
              `amount is more than the ${formatMinorUnits(invoice.amount_remaining, invoice.currency)} still owed on ${invoice.id}`,
              {
                field: 'amount',
                amount_remaining: formatMinorUnits(invoice.amount_remaining, invoice.currency),
              },
            )
          }
          return amount
        })
        // An amount the provider cannot take (Checkout.com's 1.234 BHD) is the caller's 400,
        // before a payment that could never be charged is written.
        gateway.checkAmount?.(
          amounts.reduce((sum, amount) => sum + amount, 0n),
          input.currency,
        )
        // And a page its provider would keep open past the invoices' payment window, the
        // caller's 422 (a Stripe session lasts at least 30 minutes).
        if (input.methodType !== 'CARD')
          gateway.checkPayBy?.(paymentWindowEnd(invoices), deps.clock.now())
        // Read with the last invoice's lock (`customerOfInvoiceAhead` above).
        const customer =
          toGateway && last ? await takeCustomerOfInvoice(trx, last.invoiceId) : undefined
        const method = await paymentMethodFor(trx, scope, first.customer_id, input, customer)
        // Before it is written: a payment whose card its gateway cannot charge was created,
        // then refused (400) when it was charged, left INITIATED for nothing.
        if (method) assertCardOfGateway(method, gateway.name)
        const now = deps.clock.now()
        // Under the invoices' locks, as a charge Payrail starts reads them (`chargeCard`).
        const inFlight = await inFlightOf(
          trx,
          invoices.map((invoice) => invoice.id),
        )
        const payment = await insertPayment(
          trx,
          {
            id: newId('payment'),
            human_id: humanId,
            tenant_id: scope.tenantId,
            environment_id: scope.environmentId,
            customer_id: first.customer_id,
            destination_type: input.destinationType,
            destination_id: input.destinationId,
            subject: input.subject ?? first.order_id ?? first.subscription_id ?? first.id,
            amount: amounts.reduce((sum, a) => sum + a, 0n),
            currency: input.currency,
            payment_status: 'INITIATED',
            payment_method_type: input.methodType,
            payment_method_id: method?.id ?? null,
            payment_gateway: gateway.name,
            success_url: input.successUrl ?? null,
            cancel_url: input.cancelUrl ?? null,
            save_card_and_make_default: input.saveCard ?? false,
            metadata: newMetadata(input.metadata),
            gateway_metadata: JSON.stringify(input.gatewayMetadata ?? {}),
            idempotency_key: input.idempotencyKey ?? null,
            description: input.description ?? null,
            billing_address: input.billingAddress ? JSON.stringify(input.billingAddress) : null,
            discount_code: input.discountCode ?? null,
            payment_date: input.paymentDate ?? null,
            invoice_number: first.number,
            invoice_ids: invoices.map((invoice) => invoice.id),
            created_by: input.createdBy,
            updated_by: input.createdBy,
            created_at: now,
            updated_at: now,
          },
          invoices.map((invoice, position) => ({
            invoice_id: invoice.id,
            position,
            amount: amounts[position] ?? 0n,
          })),
        )
        const shares = invoices.map((invoice, i) => ({
          invoice,
          amount: amounts[i] ?? 0n,
          inFlight: inFlight.get(invoice.id) ?? 0n,
        }))
        const settlesNow = input.settleWith !== undefined && gateway.capabilities.internal
        // Charges in flight (an automatic card charge whose outcome is not known yet, a crypto
        // payment awaiting confirmations) still count against what the invoice owes: a link
        // opened beside one could pay the invoice twice. Settling now checks it as it settles.
        if (!settlesNow) await assertStillOwed(trx, scope, payment, deps.clock, shares)
        await recordCreation(
          trx,
          scope,
          payment,
          { cause: 'api', causeId: input.createdBy },
          deps.clock,
        )
        // A page the gateway opens in this database (the sandbox's) is opened in this
        // transaction: the payment is written once, already PENDING.
        const startNow =
          input.settleWith && input.methodType !== 'CARD' ? gateway.startInTransaction : undefined
        if (input.settleWith && startNow) {
          const request = await gatewayRequestFor(deps, scope, payment, customer, invoices)
          const result = await startNow.call(gateway, trx, { ...ctx, db: trx }, request)
          const started = await recordStart(
            trx,
            scope,
            payment,
            gateway.name,
            result,
            input.settleWith,
            deps,
          )
          return {
            payment: started.payment,
            invoiceIds: payment.invoice_ids,
            attempts: attemptsOfHeldPayment(trx, payment.id),
            customer,
            failure: started.failure,
          }
        }
        if (input.settleWith && settlesNow) {
          const settled = await settleLocked(
            trx,
            scope,
            payment,
            gateway,
            ctx,
            input.settleWith,
            deps,
            shares,
          )
          return { ...settled, attempts: attemptsOfHeldPayment(trx, payment.id) }
        }
        return {
          payment,
          invoiceIds: payment.invoice_ids,
          attempts: attemptsOfHeldPayment(trx, payment.id),
          customer,
        }
      },
    )
    if (settled === MADE_MEANWHILE) {
      if (!madeMeanwhile) throw new Error('no payment made meanwhile')
      return replayByKey(deps, access, madeMeanwhile, requested)
    }
    if (settled === PAID_BY_DISCOUNT) throw paidByDiscountError(paidByDiscount, input.discountCode)
    const view = settled
    if (view.decline) throw declineError(view.decline, view.payment)
    if (view.failure) throw startFailed(gateway.name, view.payment.id, view.failure)
    return view
  } catch (error) {
    // Two requests with one idempotency_key raced: the loser returns the winner's payment.
    if (
      input.idempotencyKey &&
      isPgError(error, PG_UNIQUE_VIOLATION) &&
      error.constraint === 'payments_idempotency_key'
    ) {
      const existing = await findPaymentByIdempotencyKey(
        deps.db,
        scope.environmentId,
        input.idempotencyKey,
      )
      if (existing) return replayByKey(deps, access, existing, requested)
    }
    throw error
  }
}

/**
 * A payment made earlier with the same `idempotency_key`. Only the same request by
 * the same caller gets it back; a customer token never learns of another
 * customer's payment through a key.
 */
async function replayByKey(
  deps: PaymentDeps,
  access: Access,
  existing: Payment,
  input: NewPayment,
): Promise<PaymentView> {
  if (access.customerId !== null && existing.customer_id !== access.customerId) {
    // Another customer's payment: its invoice does not exist for this caller, and the key reveals nothing.
    if (existing.destination_id === input.destinationId)
      throw notFound('invoice', input.destinationId)
    throw new AppError(
      'idempotency_mismatch',
      'idempotency_key was already used for a different payment',
      {},
    )
  }
  const allocations = await allocationsOf(deps.db, [existing.id])
  const same =
    existing.destination_id === input.destinationId &&
    existing.payment_method_type === input.methodType &&
    existing.currency === input.currency &&
    (input.gateway === undefined || existing.payment_gateway === input.gateway) &&
    // Another card named is another request: replayed, it would charge the first one's card.
    (input.paymentMethodId === undefined || existing.payment_method_id === input.paymentMethodId) &&
    // A code the first request did not apply (or another one) is another request: replayed,
    // the caller would believe the code applied while the invoice still owes its full amount.
    sameDiscountCode(existing.discount_code, input.discountCode) &&
    allocations.length === input.allocations.length &&
    allocations.every(
      (a, i) =>
        a.invoice_id === input.allocations[i]?.invoiceId &&
        a.amount === input.allocations[i]?.amount,
    )
  if (!same) {
    throw new AppError(
      'idempotency_mismatch',
      'idempotency_key was already used for a different payment',
      access.customerId === null
        ? { idempotency_key: existing.idempotency_key, payment_id: existing.id }
        : {},
    )
  }
  return { payment: existing, invoiceIds: allocations.map((a) => a.invoice_id), replayed: true }
}

/** Whether two requests name the same discount code (codes match whatever their case), or both none. */
function sameDiscountCode(first: string | null, repeat: string | undefined): boolean {
  return (first ?? '').toLowerCase() === (repeat ?? '').toLowerCase()
}

/**
 * A `CARD` payment that names no gateway goes through its card's: `payment_method_id`, else
 * the customer's default (402 `no_default_payment_method` when there is none). The card is
 * then named too, so the payment charges the card whose gateway it took, even if the default
 * changes meanwhile.
 */
async function withCardGateway(
  deps: PaymentDeps,
  access: Access,
  input: NewPayment,
): Promise<NewPayment> {
  if (input.methodType !== 'CARD' || input.gateway !== undefined) return input
  const invoiceId = input.allocations[0]?.invoiceId ?? input.destinationId
  const invoice = await findInvoice(deps.db, access.environmentId, invoiceId, access.customerId)
  if (!invoice) throw notFound('invoice', invoiceId)
  const method = await paymentMethodFor(deps.db, scopeOf(access), invoice.customer_id, input)
  return method ? { ...input, gateway: method.gateway, paymentMethodId: method.id } : input
}

async function paymentMethodFor(
  db: Db,
  scope: Scope,
  customerId: string,
  input: Pick<NewPayment, 'methodType' | 'paymentMethodId'>,
  known?: Customer,
): Promise<PaymentMethod | undefined> {
  if (input.methodType !== 'CARD') return undefined
  if (input.paymentMethodId) {
    const method = await findCustomerPaymentMethod(db, scope, customerId, input.paymentMethodId)
    if (!method) throw notFound('payment_method', input.paymentMethodId)
    return method
  }
  const customer = known?.id === customerId ? known : await getCustomer(db, scope, customerId)
  const method = customer.default_payment_method_id
    ? await findCustomerPaymentMethod(db, scope, customerId, customer.default_payment_method_id)
    : undefined
  if (!method) {
    throw new AppError(
      'no_default_payment_method',
      'The customer has no default payment method; give payment_method_id',
      {
        customer_id: customerId,
      },
    )
  }
  return method
}

/** A saved card is charged only through the gateway it was saved with (400 otherwise). */
function assertCardOfGateway(method: PaymentMethod, gateway: string): void {
  if (method.gateway !== gateway) {
    throw validationError(`Card ${method.id} was saved with ${method.gateway}, not ${gateway}`, {
      field: 'payment_gateway',
    })
  }
}

/**
 * Runs `run` in a transaction with a random 6-character `human_id` for the payment it
 * creates, and again with another on the rare collision (a unique violation, from the
 * statement or the commit that writes the payment: nothing of the first try stays).
 */
async function withNewHumanId<T>(
  db: Db,
  run: (trx: Db, humanId: string) => Promise<T>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    // One draw of all six symbols (31^6 < 2^48, randomInt's bound), uniform like six draws.
    let draw = randomInt(HUMAN_ID_SPACE)
    let humanId = ''
    for (let i = 0; i < 6; i++) {
      humanId += HUMAN_ID_ALPHABET[draw % HUMAN_ID_ALPHABET.length]
      draw = Math.floor(draw / HUMAN_ID_ALPHABET.length)
    }
    try {
      return await inTransaction(db, (trx) => run(trx, humanId))
    } catch (error) {
      const taken =
        isPgError(error, PG_UNIQUE_VIOLATION) && error.constraint === 'payments_human_id_key'
      if (!taken || attempt === 9) throw error
    }
  }
}

/**
 * Starts or completes a payment at its gateway. Internal rails (balance, offline)
 * settle in one transaction. Hosted rails get a page (PENDING with `payment_url`);
 * a gateway failure leaves the payment INITIATED with the error recorded. Saved
 * cards are charged off-session: a decline leaves it FAILED and answers 402. A charge
 * whose outcome is unknown (timeout, 5xx, network error) leaves it PROCESSING and
 * answers 502; processing it again asks the provider again with the same idempotency
 * key, so a charge that went through is replayed, never taken twice.
 */
export async function processPayment(
  deps: PaymentDeps,
  scope: Scope,
  target: string | Payment,
  cause: Cause,
  customer?: Customer,
): Promise<PaymentView> {
  // A payment the caller just wrote is used as it is: every change below re-reads it under its lock.
  const payment =
    typeof target === 'string' ? await findPayment(deps.db, scope.environmentId, target) : target
  if (!payment) throw notFound('payment', String(target))
  const paymentId = payment.id
  const gateway = resolveGateway(payment.payment_method_type, payment.payment_gateway ?? undefined)
  assertProcessable(payment, deps.clock.now())
  const hosted = !gateway.capabilities.internal && payment.payment_method_type !== 'CARD'
  if (hosted && payment.payment_status !== 'INITIATED') {
    // Only PROCESSING follows ON_RETRY in the state machine, never a new page: a customer who
    // let a hosted checkout fail or expire gets a new payment.
    throw new AppError(
      'invalid_state_transition',
      `Payment ${paymentId} is ${payment.payment_status}; create a new payment for a new ${payment.payment_method_type}`,
      { payment_id: paymentId, payment_status: payment.payment_status },
    )
  }
  // A hosted payment made earlier and processed now: its invoices may have been paid
  // since (OFFLINE, another link), and its page would take the money again. One the
  // caller has just written was checked, under the same locks, as it was written.
  if (hosted && typeof target === 'string') await assertHostedStillOwed(deps, scope, paymentId)
  const ctx = await gatewayContext(deps, scope, gateway.name)
  if (gateway.capabilities.internal)
    return settleInternal(deps, scope, paymentId, gateway, ctx, cause)

  await assertMayTakeMoney(deps, scope, gateway.name)
  const request = await gatewayRequestFor(deps, scope, payment, customer)
  if (payment.payment_method_type === 'CARD') {
    return chargeCard(deps, scope, payment, gateway, ctx, request, cause)
  }
  const start =
    payment.payment_method_type === 'PAYMENT_LINK' ? gateway.createCheckout : gateway.startAsync
  if (!start) {
    throw new AppError(
      'not_supported',
      `The ${gateway.name} gateway cannot take ${payment.payment_method_type} payments`,
      {
        payment_gateway: gateway.name,
      },
    )
  }
  const result = await start.call(gateway, ctx, request)
  if (result.ok && result.gatewayCustomerId)
    await rememberGatewayCustomer(deps, request.customer, gateway.name, result.gatewayCustomerId)
  let failure: GatewayFailure | undefined
  let refused: AppError | undefined
  const view = await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    const started = await recordStart(
      trx,
      scope,
      locked,
      gateway.name,
      result,
      cause,
      deps,
      request.payment,
    )
    failure = started.failure
    refused = started.refused
    return started.payment
  })
  if (failure) throw startFailed(gateway.name, paymentId, failure)
  if (refused && result.ok) {
    await withdrawUnrecordedPage(deps, gateway, ctx, view.payment, result)
    throw refused
  }
  return view
}

/**
 * A page the provider opened that its payment did not take (`recordStart`'s `refused`): the
 * payment was cancelled or deleted, its amount changed, or its invoices came to owe less,
 * while the provider was asked. Nobody was given its URL, but the provider would take money
 * on it that no payment could record (or more than the invoice asks), so it is withdrawn as
 * a cancel would withdraw it. A gateway that cannot withdraw pages, or a withdrawal that
 * fails, leaves it to expire, logged.
 */
async function withdrawUnrecordedPage(
  deps: PaymentDeps,
  gateway: Gateway,
  ctx: GatewayContext,
  payment: Payment,
  opened: Extract<CheckoutResult, { ok: true }>,
): Promise<void> {
  const page: Payment = {
    ...payment,
    gateway_tracking_id: opened.trackingId,
    gateway_payment_id: opened.gatewayPaymentId,
    payment_url: opened.url,
  }
  const context = { payment_id: payment.id, gateway: gateway.name, page: opened.trackingId }
  try {
    const stopped = gateway.cancel ? await gateway.cancel(ctx, page) : undefined
    if (stopped?.ok) return
    deps.logger.error(
      { ...context, reason: stopped?.reason ?? 'the gateway cannot withdraw pages' },
      'a page its payment did not take could not be withdrawn; it expires on its own',
    )
  } catch (error) {
    deps.logger.error(
      { ...context, err: error },
      'a page its payment did not take could not be withdrawn; it expires on its own',
    )
  }
}

/**
 * Records what the gateway answered when asked to open a payment's page or start it:
 * PENDING, with the page and the provider's ids; or, when it failed, an attempt with the
 * error on the payment, left INITIATED for `POST /v1/payments/:id/process` to try again
 * (`failure`, which the caller answers with 502 once this is committed). A failure that
 * comes back to a payment no longer INITIATED writes nothing.
 *
 * `opened` is the payment as the provider was asked for its page, when that was outside any
 * lock (`processPayment`): what changed meanwhile is checked here, under the payment's and
 * its invoices' locks, before the page is the payment's. A page the payment does not take
 * writes nothing and comes back as `refused`, the error the caller answers with once it has
 * withdrawn the page (`withdrawUnrecordedPage`).
 */
async function recordStart(
  trx: Db,
  scope: Scope,
  locked: Payment,
  gateway: GatewayName,
  result: CheckoutResult,
  cause: Cause,
  deps: PaymentDeps,
  opened?: Payment,
): Promise<{ payment: Payment; failure?: GatewayFailure | undefined; refused?: AppError }> {
  if (!result.ok) {
    // Moved on while the gateway was asked (cancelled, or opened by a concurrent call): the
    // failed call is only answered, never written onto what the payment is now.
    if (locked.payment_status !== 'INITIATED' || !locked.active)
      return { payment: locked, failure: result.failure }
    await insertAttempt(
      trx,
      attemptRow(
        locked,
        gateway,
        'failed',
        null,
        null,
        result.failure.code,
        result.failure.message,
        deps.clock,
      ),
    )
    const payment = await updatePayment(trx, locked.id, {
      status_code: result.failure.code,
      error_message: result.failure.message,
      updated_at: deps.clock.now(),
    })
    return { payment, failure: result.failure }
  }
  if (!locked.active || locked.payment_status === 'CANCELLED') {
    // Cancelled or deleted while the provider was asked: nothing is written onto what the
    // payment is now, and the page is withdrawn after the commit (`withdrawUnrecordedPage`).
    // Before, a deleted payment took the page (PENDING) and its money on a voided invoice.
    // (Moved on otherwise, by the provider's own report of this page, the move below is a
    // repeat or refused, as before.)
    const became = locked.active ? locked.payment_status : 'deleted'
    return {
      payment: locked,
      refused: new AppError(
        'conflict',
        `Payment ${locked.id} was ${became} while its page was being opened; the page was withdrawn`,
        { payment_id: locked.id, payment_status: locked.payment_status },
      ),
    }
  }
  if (opened && locked.gateway_tracking_id !== result.trackingId) {
    const page = { ...opened, amount: result.amount ?? opened.amount }
    const refused = await refusalOfOpenedPage(trx, scope, locked, page, deps.clock)
    if (refused) return { payment: locked, refused }
  }
  const ids = { gatewayPaymentId: result.gatewayPaymentId, trackingId: result.trackingId }
  const moved = await moveWithAttempt(
    trx,
    scope,
    locked,
    { gateway, status: 'pending', ...ids },
    'PENDING',
    {
      payment_url: result.url,
      gateway_tracking_id: result.trackingId,
      gateway_payment_id: result.gatewayPaymentId,
      status_code: null,
      error_message: null,
    },
    cause,
    deps,
  )
  if (moved.kind === 'illegal') throw illegal(locked, 'PENDING', moved.reason)
  return { payment: moved.payment }
}

/**
 * Why a page opened outside any lock for `opened` (the payment as it was read, with the
 * amount the page asks) cannot be the locked payment's, or undefined when it can. The page
 * must ask the payment's amount: a payment whose amount changed meanwhile (`PATCH
 * /v1/invoices/:id/payment` applying a discount code) would have its customer pay the old
 * one. And its invoices must still owe it, checked under their locks as at creation
 * (`assertStillOwed`): another payment, or a discount code applied with one, may have paid
 * them, or their window closed, meanwhile. Before, the page was taken whatever happened, and
 * the customer paid 100.00 of an invoice a code had brought down to 90.00.
 */
async function refusalOfOpenedPage(
  trx: Db,
  scope: Scope,
  locked: Payment,
  opened: Payment,
  clock: Clock,
): Promise<AppError | undefined> {
  if (locked.amount !== opened.amount) {
    return new AppError(
      'conflict',
      `Payment ${locked.id} is for ${formatMinorUnits(locked.amount, locked.currency)}, but its page was opened for ${formatMinorUnits(opened.amount, opened.currency)} (the amount changed while the page was being opened); the page was withdrawn: process the payment again`,
      {
        payment_id: locked.id,
        payment_status: locked.payment_status,
        amount: formatMinorUnits(locked.amount, locked.currency),
        page_amount: formatMinorUnits(opened.amount, opened.currency),
      },
    )
  }
  // Already moved on (a concurrent call recorded its page): the move is a repeat, as before.
  if (locked.payment_status !== 'INITIATED') return undefined
  try {
    await assertStillOwed(trx, scope, locked, clock)
    return undefined
  } catch (error) {
    if (!(error instanceof AppError)) throw error
    return new AppError(
      error.code,
      `${error.message}; the page opened for payment ${locked.id} meanwhile was withdrawn`,
      { ...error.details, payment_id: locked.id },
    )
  }
}

function startFailed(gateway: GatewayName, paymentId: string, failure: GatewayFailure): AppError {
  return new AppError('gateway_error', `The ${gateway} gateway failed: ${failure.message}`, {
    payment_id: paymentId,
    retryable: failure.retryable,
  })
}

async function settleInternal(
  deps: PaymentDeps,
  scope: Scope,
  paymentId: string,
  gateway: Gateway,
  ctx: GatewayContext,
  cause: Cause,
): Promise<PaymentView> {
  let decline: Decline | undefined
  const view = await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    const settled = await settleLocked(trx, scope, locked, gateway, ctx, cause, deps)
    decline = settled.decline
    return settled.payment
  })
  if (decline) throw declineError(decline, view.payment)
  return view
}

interface SettledView extends PaymentView {
  /** Set when the rail refused the money (the payment is FAILED, and the caller answers 402). */
  decline?: Decline | undefined
  /** Set when the gateway could not open the payment's page (the caller answers 502). */
  failure?: GatewayFailure | undefined
}

/**
 * Settles a locked payment on an internal rail in the caller's transaction: checks
 * the invoices still owe it, lets the rail move the money, then SUCCEEDED (or
 * FAILED with the decline). `shares` are the invoices the caller already holds
 * locked with this payment's amount for each, so they need not be read again.
 */
async function settleLocked(
  trx: Db,
  scope: Scope,
  locked: Payment,
  gateway: Gateway,
  ctx: GatewayContext,
  cause: Cause,
  deps: PaymentDeps,
  shares?: InvoiceShare[],
): Promise<SettledView> {
  assertProcessable(locked, deps.clock.now())
  const current = await retryIfFailed(trx, scope, locked, cause, deps)
  await assertStillOwed(trx, scope, current, deps.clock, shares)
  const settled = await gateway.settleInternal?.(trx, ctx, current)
  if (!settled || settled.ok) {
    const moved = await movePayment(
      trx,
      scope,
      current,
      'SUCCEEDED',
      { amount_paid: current.amount },
      cause,
      deps,
    )
    if (moved.kind === 'illegal') throw illegal(moved.payment, 'SUCCEEDED', moved.reason)
    return { payment: moved.payment, invoiceIds: moved.payment.invoice_ids }
  }
  const failed = await failWithAttempt(
    trx,
    scope,
    current,
    gateway.name,
    settled.decline,
    null,
    cause,
    deps,
  )
  return { payment: failed, invoiceIds: failed.invoice_ids, decline: settled.decline }
}

async function chargeCard(
  deps: PaymentDeps,
  scope: Scope,
  payment: Payment,
  gateway: Gateway,
  ctx: GatewayContext,
  request: GatewayPaymentRequest,
  cause: Cause,
): Promise<PaymentView> {
  if (!gateway.chargeSavedMethod) {
    throw new AppError('not_supported', `The ${gateway.name} gateway cannot charge saved cards`, {
      payment_gateway: gateway.name,
    })
  }
  if (
    isUnansweredCharge(payment, deps.clock.now()) &&
    !(await isStillReplayable(deps.db, payment, deps.clock.now()))
  ) {
    return settleLostCharge(deps, scope, payment, gateway, ctx, request, cause)
  }
  const method = payment.payment_method_id
    ? await findCustomerPaymentMethod(
        deps.db,
        scope,
        payment.customer_id,
        payment.payment_method_id,
      )
    : undefined
  if (!method) {
    throw new AppError('no_default_payment_method', 'The payment has no saved card to charge', {
      payment_id: payment.id,
    })
  }
  assertCardOfGateway(method, gateway.name)
  // PROCESSING before the call: a crash mid-charge leaves a payment that says it was being charged.
  let resumed = false
  const processing = await withLockedPayment(deps, scope, payment.id, async (trx, locked) => {
    assertProcessable(locked, deps.clock.now())
    // The card read before the lock is the one charged: a PATCH that chose another card
    // meanwhile (allowed while INITIATED) would have the old card charged while the payment
    // names the new one.
    if (locked.payment_method_id !== method.id) {
      throw new AppError(
        'conflict',
        `Payment ${locked.id} changed its card while it was being charged; process it again`,
        { payment_id: locked.id, payment_method_id: locked.payment_method_id },
      )
    }
    // Already PROCESSING: an earlier call's outcome is unknown, and this one asks again with its key.
    resumed = locked.payment_status === 'PROCESSING'
    if (resumed) await assertStillReplayable(trx, locked, deps.clock.now())
    // Before PROCESSING, whose charge would then never be asked: a payment written before
    // its gateway checked amounts (or whose amount a discount changed since) gets its 400.
    gateway.checkAmount?.(locked.amount, locked.currency)
    const current = await retryIfFailed(trx, scope, locked, cause, deps)
    await assertStillOwed(trx, scope, current, deps.clock)
    const moved = await movePayment(trx, scope, current, 'PROCESSING', {}, cause, deps)
    if (moved.kind === 'illegal') throw illegal(moved.payment, 'PROCESSING', moved.reason)
    return moved.payment
  })
  // The card is charged what the payment says under its lock, not what it said when the
  // request was built: a change committed in between (a discount) must not be overcharged.
  const result = await gateway.chargeSavedMethod(
    ctx,
    { ...request, payment: processing.payment },
    method,
  )
  return recordCharge(deps, scope, payment.id, gateway, request, result, { resumed, cause })
}

/**
 * Records a charge's answer on its payment, under the payment's lock: SUCCEEDED,
 * RESERVED, a decline (FAILED, 402), still processing, or an error. An error leaves the
 * payment PROCESSING when it says nothing of the charge (`retryable`, or `resumed`: an
 * earlier call's outcome is still unknown), else FAILED; either way 502.
 */
async function recordCharge(
  deps: PaymentDeps,
  scope: Scope,
  paymentId: string,
  gateway: Gateway,
  request: GatewayPaymentRequest,
  result: ChargeResult,
  {
    resumed,
    cause,
    lookedUp,
  }: {
    resumed: boolean
    cause: Cause
    /** The payment as it was when the provider was asked about its charge (`findCharge`). */
    lookedUp?: Payment | undefined
  },
): Promise<PaymentView> {
  if (result.outcome === 'succeeded' && result.gatewayCustomerId) {
    await rememberGatewayCustomer(deps, request.customer, gateway.name, result.gatewayCustomerId)
  }
  let decline: Decline | undefined
  let failure: GatewayFailure | undefined
  let changed = false
  const view = await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    if (lookedUp && !unchanged(lookedUp, locked)) {
      // Settled, or charged anew, while the provider was asked: what it said is stale.
      changed = true
      return locked
    }
    const ids =
      result.outcome === 'error'
        ? { gatewayPaymentId: null, trackingId: null }
        : { gatewayPaymentId: result.gatewayPaymentId, trackingId: result.trackingId }
    switch (result.outcome) {
      case 'succeeded': {
        const moved = await moveWithAttempt(
          trx,
          scope,
          locked,
          { gateway: gateway.name, status: 'succeeded', ...ids },
          'SUCCEEDED',
          // A replayed charge clears the error its lost first answer left.
          {
            amount_paid: result.amountReceived ?? locked.amount,
            status_code: null,
            error_message: null,
          },
          cause,
          deps,
        )
        if (moved.kind === 'illegal') {
          // Money taken that the payment cannot record: for an operator, never silently.
          deps.logger.error(
            {
              payment_id: locked.id,
              payment_status: locked.payment_status,
              gateway_payment_id: ids.gatewayPaymentId,
            },
            'the gateway charged the card but the payment refuses SUCCEEDED; refund or record it by hand',
          )
        }
        return moved.payment
      }
      case 'processing': {
        await insertAttempt(
          trx,
          attemptRow(
            locked,
            gateway.name,
            'processing',
            result.gatewayPaymentId,
            result.trackingId,
            null,
            null,
            deps.clock,
          ),
        )
        return updatePayment(trx, locked.id, {
          gateway_payment_id: result.gatewayPaymentId,
          gateway_tracking_id: result.trackingId,
          updated_at: deps.clock.now(),
        })
      }
      case 'reserved': {
        const moved = await moveWithAttempt(
          trx,
          scope,
          locked,
          { gateway: gateway.name, status: 'reserved', ...ids },
          'RESERVED',
          { amount_reserved: result.amountReserved },
          cause,
          deps,
        )
        return moved.payment
      }
      case 'declined': {
        decline = result.decline
        return failWithAttempt(trx, scope, locked, gateway.name, result.decline, ids, cause, deps)
      }
      case 'error': {
        failure = result.failure
        // The provider's report of this charge moved the payment while the call was failing.
        if (locked.payment_status !== 'PROCESSING') {
          if (isSettled(locked.payment_status)) failure = undefined
          return locked
        }
        // A timeout, a 5xx or a reset connection says nothing of the charge, and neither does any
        // error while an earlier call's outcome is still unknown: the provider may have taken the
        // money. The payment stays PROCESSING, where the provider's report can still settle it and
        // a retry sends the same key; only an error that is a definitive refusal makes it FAILED.
        if (result.failure.retryable || resumed)
          return recordUnknownOutcome(trx, locked, gateway.name, result.failure, deps)
        return failWithAttempt(trx, scope, locked, gateway.name, result.failure, null, cause, deps)
      }
    }
  })
  if (changed) {
    throw new AppError(
      'conflict',
      `Payment ${paymentId} changed while ${gateway.name} was asked about its charge; nothing was recorded`,
      { payment_id: paymentId, payment_status: view.payment.payment_status },
    )
  }
  if (decline) throw declineError(decline, view.payment)
  if (failure)
    throw new AppError('gateway_error', `The ${gateway.name} gateway failed: ${failure.message}`, {
      payment_id: paymentId,
      payment_status: view.payment.payment_status,
      status_code: view.payment.status_code,
      retryable: view.payment.payment_status === 'PROCESSING',
    })
  return view
}

/**
 * Records a charge attempt that got no usable answer on the locked PROCESSING payment,
 * with the error on it, and leaves its status alone: whether money moved is unknown.
 */
async function recordUnknownOutcome(
  trx: Db,
  locked: Payment,
  gateway: string,
  error: { code: string; message: string },
  deps: PaymentDeps,
): Promise<Payment> {
  await insertAttempt(
    trx,
    attemptRow(locked, gateway, 'failed', null, null, error.code, error.message, deps.clock),
  )
  return updatePayment(trx, locked.id, {
    status_code: error.code,
    error_message: error.message,
    updated_at: deps.clock.now(),
  })
}

interface InvoiceShare {
  invoice: Invoice
  amount: bigint
  /**
   * The other charges in flight on the invoice, when read under its lock by the statement
   * that created the payment, with no payment moved since (`insertPayment`); else read.
   */
  inFlight?: bigint
}

/**
 * Checks, under each invoice's row lock, that the invoice still owes this payment's
 * share before money moves: an invoice paid meanwhile, or charges already in
 * flight for it, refuse the payment with 409 and nothing is taken.
 */
async function assertStillOwed(
  trx: Db,
  scope: Scope,
  payment: Payment,
  clock: Clock,
  lockedShares?: InvoiceShare[],
): Promise<void> {
  const shares = lockedShares ?? (await sharesOf(trx, scope, payment))
  for (const { invoice, amount, inFlight } of shares) {
    assertPayable(invoice, clock.now())
    await assertStartsNoEndedSubscription(trx, scope, invoice, clock.now())
    const owed =
      invoice.amount_remaining - (inFlight ?? (await inFlightAmount(trx, invoice.id, payment.id)))
    if (amount > owed) {
      throw new AppError('conflict', `Invoice ${invoice.id} no longer owes this payment's amount`, {
        invoice_id: invoice.id,
        amount: formatMinorUnits(amount, invoice.currency),
        still_owed: formatMinorUnits(owed > 0n ? owed : 0n, invoice.currency),
      })
    }
  }
}

/** `assertStillOwed` for an INITIATED hosted payment about to get its page, under the payment's lock. */
async function assertHostedStillOwed(deps: PaymentDeps, scope: Scope, paymentId: string) {
  await withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    assertProcessable(locked, deps.clock.now())
    await assertStillOwed(trx, scope, locked, deps.clock)
    return locked
  })
}

/** The payment's invoices, each locked, with the amount allocated to it. */
async function sharesOf(trx: Db, scope: Scope, payment: Payment): Promise<InvoiceShare[]> {
  const shares: InvoiceShare[] = []
  for (const allocation of await allocationsLockingInvoices(trx, scope.environmentId, payment)) {
    const invoice = await lockInvoiceOrFail(trx, scope, allocation.invoice_id)
    shares.push({ invoice, amount: allocation.amount })
  }
  return shares
}

/** Records a failed gateway attempt and moves the locked payment to FAILED with the error on it. */
async function failWithAttempt(
  trx: Db,
  scope: Scope,
  locked: Payment,
  gateway: string,
  error: { code: string; message: string },
  ids: { gatewayPaymentId: string | null; trackingId: string | null } | null,
  cause: Cause,
  deps: PaymentDeps,
): Promise<Payment> {
  const moved = await moveWithAttempt(
    trx,
    scope,
    locked,
    {
      gateway,
      status: 'failed',
      gatewayPaymentId: ids?.gatewayPaymentId ?? null,
      trackingId: ids?.trackingId ?? null,
      error,
    },
    'FAILED',
    { status_code: error.code, error_message: error.message },
    cause,
    deps,
  )
  return moved.payment
}

/**
 * Records what the gateway answered as an attempt, then moves the locked payment,
 * keeping the gateway's ids on it when the answer carried any.
 */
/** Whether the payment has an attempt of this charge (its provider id) with this status. */
export async function attemptRecorded(
  trx: Db,
  paymentId: string,
  attempt: { status: string; gatewayPaymentId: string | null },
): Promise<boolean> {
  if (attempt.gatewayPaymentId === null) return false
  const attempts = await attemptsOf(trx, [paymentId])
  return attempts.some(
    (a) => a.gateway_payment_id === attempt.gatewayPaymentId && a.status === attempt.status,
  )
}

async function moveWithAttempt(
  trx: Db,
  scope: Scope,
  locked: Payment,
  attempt: {
    gateway: string
    status: string
    gatewayPaymentId: string | null
    trackingId: string | null
    error?: { code: string; message: string }
  },
  to: PaymentStatus,
  changes: Updateable<PaymentTable>,
  cause: Cause,
  deps: PaymentDeps,
) {
  // Once per charge and outcome: the provider's report of the same outcome (a decline's
  // webhook, handled before this answer) may have recorded it already, and a second would
  // count one decline twice against the invoice's automatic attempts. A report that moved
  // the payment without an attempt leaves it to this answer.
  if (
    checkTransition(locked.payment_status, to).kind === 'apply' ||
    !(await attemptRecorded(trx, locked.id, attempt))
  ) {
    await insertAttempt(
      trx,
      attemptRow(
        locked,
        attempt.gateway,
        attempt.status,
        attempt.gatewayPaymentId,
        attempt.trackingId,
        attempt.error?.code ?? null,
        attempt.error?.message ?? null,
        deps.clock,
      ),
    )
  }
  const hasIds = attempt.gatewayPaymentId !== null || attempt.trackingId !== null
  return movePayment(
    trx,
    scope,
    locked,
    to,
    {
      ...changes,
      ...(hasIds && {
        gateway_payment_id: attempt.gatewayPaymentId,
        gateway_tracking_id: attempt.trackingId,
      }),
    },
    cause,
    deps,
  )
}

async function rememberGatewayCustomer(
  deps: PaymentDeps,
  customer: GatewayPaymentRequest['customer'],
  gateway: string,
  gatewayCustomerId: string,
): Promise<void> {
  if (customer.gatewayCustomerIds[gateway] === gatewayCustomerId) return
  await setGatewayCustomerId(deps.db, customer.id, gateway, gatewayCustomerId, deps.clock.now())
}

/**
 * What a gateway is asked for `payment`: its customer, a description, when its page must stop
 * taking money, and the charge's idempotency key. `invoices` are the payment's, when the
 * caller has them (else a page's are read).
 */
export async function gatewayRequestFor(
  deps: PaymentDeps,
  scope: Scope,
  payment: Payment,
  known?: Customer,
  invoices?: readonly Invoice[],
): Promise<GatewayPaymentRequest> {
  const customer =
    known?.id === payment.customer_id
      ? known
      : await getCustomer(deps.db, scope, payment.customer_id)
  return {
    payBy:
      payment.payment_method_type === 'CARD'
        ? null
        : paymentWindowEnd(
            invoices ?? (await findInvoices(deps.db, scope.environmentId, payment.invoice_ids)),
          ),
    payment,
    customer: {
      id: customer.id,
      name: customer.name,
      email: customer.email,
      gatewayCustomerIds: customer.gateway_customer_ids,
    },
    description:
      payment.description ??
      (payment.invoice_number ? `Invoice ${payment.invoice_number}` : 'Payment'),
    chargeKey: await chargeKeyFor(deps.db, payment),
  }
}

/** The earliest end of the invoices' payment windows: after it, none of them can be paid. */
function paymentWindowEnd(invoices: readonly Invoice[]): Date | null {
  let end: Date | null = null
  for (const { payment_window_ends_at: ends } of invoices)
    if (ends && (end === null || ends.getTime() < end.getTime())) end = ends
  return end
}

/**
 * `payrail-charge-<payment>-<charges ended so far>`: a retry after a timeout or provider
 * error sends the key of the attempt it retries, so a charge that went through is
 * replayed, not taken again; only a charge that ended at the provider (declined, expired,
 * cancelled in flight) starts a new key.
 */
async function chargeKeyFor(db: Db, payment: Payment): Promise<string> {
  if (payment.payment_method_type !== 'CARD') return `payrail-charge-${payment.id}-0`
  // Charges that ended at the provider: declined, expired (an authorization never
  // captured) or cancelled by the provider in flight. Replayed, such a charge's key answered
  // its old authorization, and the payment stayed RESERVED on a charge that would never settle.
  const declined = (await attemptsOf(db, [payment.id])).filter(
    (a) =>
      a.status === 'failed' &&
      (isDeclineCode(a.error_code) || a.error_code === 'expired' || a.error_code === 'cancelled'),
  ).length
  return `payrail-charge-${payment.id}-${declined}`
}

/** A card decline (a definitive answer), as opposed to an error that says nothing of the charge. */
export function isDeclineCode(code: string | null): boolean {
  return DECLINE_CODES.some((decline) => decline === code)
}

/**
 * How long after its charge began a charge whose outcome is unknown is still asked again.
 * The retry is safe only while the provider still replays its idempotency key (Stripe
 * keeps a key at least 24 hours: https://docs.stripe.com/api/idempotent_requests);
 * later, the same key could be taken for a new charge.
 */
export const UNKNOWN_OUTCOME_RETRY_WINDOW_MS = 12 * 60 * 60 * 1000

/**
 * Whether a charge left PROCESSING may be asked again with its key: only while the
 * provider surely remembers the key, counted from the payment's move to PROCESSING, when
 * the key was first sent.
 */
async function isStillReplayable(db: Db, payment: Payment, now: Date): Promise<boolean> {
  const since = (await processingSince(db, payment.id)) ?? payment.created_at
  return now.getTime() - since.getTime() <= UNKNOWN_OUTCOME_RETRY_WINDOW_MS
}

/**
 * Past that window, 409 on a gateway that cannot look the charge up: the provider's
 * report (or a person who checks with the provider) settles it.
 */
async function assertStillReplayable(db: Db, payment: Payment, now: Date): Promise<void> {
  if (await isStillReplayable(db, payment, now)) return
  throw tooOldToAskAgain(payment)
}

function tooOldToAskAgain(payment: Payment): AppError {
  return new AppError(
    'conflict',
    `The outcome of payment ${payment.id} is unknown and too old to ask the provider again; its report settles it`,
    { payment_id: payment.id, payment_status: payment.payment_status },
  )
}

/** The status code of a lost charge the provider never received (the payment FAILED). */
export const CHARGE_NOT_FOUND = 'charge_not_found'

/**
 * A charge left PROCESSING past the window in which its key is replayed: sent again,
 * the key could be taken for a new charge, so the provider is asked what it holds of
 * the charge instead (`findCharge`). What it holds is recorded as the charge's answer.
 * When it holds nothing, the call never reached it: the payment is FAILED
 * (`charge_not_found`, 502), no money was taken, and the invoice owes its amount again.
 * When it cannot be asked, nothing changes (502, retryable).
 */
async function settleLostCharge(
  deps: PaymentDeps,
  scope: Scope,
  payment: Payment,
  gateway: Gateway,
  ctx: GatewayContext,
  request: GatewayPaymentRequest,
  cause: Cause,
): Promise<PaymentView> {
  if (!gateway.findCharge) throw tooOldToAskAgain(payment)
  const since = (await processingSince(deps.db, payment.id)) ?? payment.created_at
  const answered = (await attemptsOf(deps.db, [payment.id]))
    .filter((a) => a.status === 'failed' && a.gateway_payment_id !== null)
    .map((a) => a.gateway_payment_id as string)
  const found = await gateway.findCharge(ctx, { request, since, answered })
  if (found.outcome === 'error') {
    throw new AppError(
      'gateway_error',
      `The ${gateway.name} gateway could not be asked about the charge: ${found.failure.message}`,
      { payment_id: payment.id, payment_status: payment.payment_status, retryable: true },
    )
  }
  const result: ChargeResult =
    found.outcome === 'not_found'
      ? {
          outcome: 'error',
          failure: {
            code: CHARGE_NOT_FOUND,
            message: `${gateway.name} has no charge for this payment: the call never reached it, and no money was taken`,
            retryable: false,
          },
        }
      : found
  return recordCharge(deps, scope, payment.id, gateway, request, result, {
    resumed: false,
    cause,
    lookedUp: payment,
  })
}

/** Whether nothing moved the payment since `before` was read. */
function unchanged(before: Payment, now: Payment): boolean {
  return (
    now.payment_status === before.payment_status &&
    now.status_code === before.status_code &&
    now.updated_at.getTime() === before.updated_at.getTime()
  )
}

/**
 * Longer than a charge call can take (the SDKs' timeouts and retries): a card charge
 * PROCESSING for longer, with no answer recorded, was cut off by a process that died.
 */
const CHARGE_CALL_LIMIT_MS = 5 * 60 * 1000

/**
 * A card charge left PROCESSING without an answer: its call failed with an unknown
 * outcome (the error is on the payment), or the process making it died. A charge still
 * within its call is not asked again beside it.
 */
function isUnansweredCharge(payment: Payment, now: Date): boolean {
  if (payment.payment_status !== 'PROCESSING' || payment.payment_method_type !== 'CARD')
    return false
  return (
    payment.status_code !== null ||
    now.getTime() - payment.updated_at.getTime() > CHARGE_CALL_LIMIT_MS
  )
}

/**
 * INITIATED, FAILED and ON_RETRY payments can be processed, and an unanswered card
 * charge asked again; a deleted one (inactive) cannot. Re-checked under the row lock: a concurrent request may have
 * processed the payment first.
 */
function assertProcessable(locked: Payment, now: Date): void {
  if (!locked.active) {
    // Deleted: hidden from its invoice's checks (a void, a discount), it must not take money.
    throw new AppError(
      'invalid_state_transition',
      `Payment ${locked.id} was deleted and cannot be processed`,
      { payment_id: locked.id, payment_status: locked.payment_status, active: false },
    )
  }
  if (
    locked.payment_status === 'INITIATED' ||
    locked.payment_status === 'FAILED' ||
    locked.payment_status === 'ON_RETRY' ||
    isUnansweredCharge(locked, now)
  )
    return
  throw new AppError(
    'invalid_state_transition',
    `Payment ${locked.id} is ${locked.payment_status} and cannot be processed`,
    {
      payment_id: locked.id,
      payment_status: locked.payment_status,
    },
  )
}

/** A FAILED payment processed again goes through ON_RETRY, as the state machine asks. */
async function retryIfFailed(
  trx: Db,
  scope: Scope,
  locked: Payment,
  cause: Cause,
  deps: PaymentDeps,
): Promise<Payment> {
  if (locked.payment_status !== 'FAILED') return locked
  const moved = await movePayment(
    trx,
    scope,
    locked,
    'ON_RETRY',
    { status_code: null, error_message: null },
    cause,
    deps,
  )
  if (moved.kind === 'illegal') throw illegal(locked, 'ON_RETRY', moved.reason)
  if (moved.payment.payment_method_type === 'CARD') return moved.payment
  // Only PROCESSING follows ON_RETRY; rails that go straight to a page or settle pass through it.
  const processing = await movePayment(trx, scope, moved.payment, 'PROCESSING', {}, cause, deps)
  return processing.payment
}

/**
 * Cancels a payment that has not taken money: INITIATED, PENDING, RESERVED or ON_RETRY.
 * What it started at the provider is stopped first (a hosted page expired, an
 * authorization voided); if the provider has already taken the money, the payment is
 * not cancelled (409) and the provider's report of the charge reconciles it, so money
 * taken is never left on a CANCELLED payment.
 */
export async function cancelPayment(
  deps: PaymentDeps,
  access: Access,
  paymentId: string,
  cause: Cause,
): Promise<PaymentView> {
  const scope = scopeOf(access)
  const payment = await requirePayment(deps.db, access, paymentId)
  const check = checkTransition(payment.payment_status, 'CANCELLED')
  if (check.kind === 'illegal') throw illegal(payment, 'CANCELLED', check.reason)
  const gateway = resolveGateway(payment.payment_method_type, payment.payment_gateway ?? undefined)
  // What it opened may exist though its answer was lost (the start failed, recorded on the
  // payment): BitPay made an invoice whose answer never came, the payment stayed INITIATED.
  const mayHaveOpened =
    payment.gateway_tracking_id !== null ||
    (payment.payment_status === 'INITIATED' &&
      payment.status_code !== null &&
      ANSWER_LOST.test(payment.status_code))
  if (
    !gateway.cancel &&
    !gateway.capabilities.internal &&
    mayHaveOpened &&
    check.kind === 'apply'
  ) {
    // A page or crypto invoice the provider cannot withdraw: cancelled here, it could still
    // be paid there, and the money would have no payment to land on.
    throw new AppError(
      'conflict',
      `The ${gateway.name} gateway cannot withdraw what it opened for this payment (${payment.gateway_tracking_id ?? 'its answer was lost'}): the payment is not cancelled, and is settled or failed when ${gateway.name} reports it`,
      { payment_id: paymentId, payment_status: payment.payment_status },
    )
  }
  if (gateway.cancel && payment.gateway_tracking_id && check.kind === 'apply') {
    const ctx = await gatewayContext(deps, scope, gateway.name)
    let stopped: CancelResult
    try {
      stopped = await gateway.cancel(ctx, payment)
    } catch (error) {
      deps.logger.warn({ err: error, payment_id: paymentId }, 'gateway cancel failed')
      throw new AppError(
        'gateway_error',
        `The ${gateway.name} gateway could not cancel the payment; it is unchanged`,
        { payment_id: paymentId },
      )
    }
    if (!stopped.ok) {
      throw new AppError(
        'conflict',
        `${stopped.reason}: the payment is not cancelled, and is settled or failed when ${gateway.name} reports it`,
        { payment_id: paymentId, payment_status: payment.payment_status },
      )
    }
  }
  return withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    // The provider's report of the expiry we just caused can land first: closed either way.
    if (locked.payment_status === 'FAILED' && payment.payment_status !== 'FAILED') return locked
    // A page opened (processed) since the payment was read, which was not withdrawn above:
    // cancelled now, it would stay open at the provider and take money no payment records.
    if (locked.gateway_tracking_id !== payment.gateway_tracking_id) {
      throw new AppError(
        'conflict',
        `Payment ${paymentId} opened its page (${locked.gateway_tracking_id}) while it was being cancelled; cancel it again`,
        { payment_id: paymentId, payment_status: locked.payment_status },
      )
    }
    const moved = await movePayment(trx, scope, locked, 'CANCELLED', {}, cause, deps)
    if (moved.kind === 'illegal') throw illegal(locked, 'CANCELLED', moved.reason)
    return moved.payment
  })
}

/** Changes the editable fields. Method and card-saving choices only before the payment is processed. */
export async function updatePaymentFields(
  deps: PaymentDeps,
  access: Access,
  paymentId: string,
  body: UpdatePaymentBody,
  updatedBy: string | null,
): Promise<PaymentView> {
  assertNoAutomaticFlag(body.metadata)
  const scope = scopeOf(access)
  await requirePayment(deps.db, access, paymentId)
  return withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    const beforeProcessing = locked.payment_status === 'INITIATED'
    if (
      !beforeProcessing &&
      (body.payment_method_id !== undefined || body.save_card_and_make_default !== undefined)
    ) {
      throw new AppError(
        'invalid_state_transition',
        'payment_method_id and save_card_and_make_default change only before processing',
        {
          payment_id: locked.id,
          payment_status: locked.payment_status,
        },
      )
    }
    // Only a CARD payment charges a saved card: a link's card is the one entered on its page
    // (saved and made the default when it asks), which a card named here would hide.
    if (body.payment_method_id !== undefined && locked.payment_method_type !== 'CARD') {
      throw validationError('payment_method_id names the saved card of a CARD payment', {
        field: 'payment_method_id',
        payment_method_type: locked.payment_method_type,
      })
    }
    // A card named, or (null) the customer's default again, as at creation: the payment always
    // names the card it will charge.
    const method =
      body.payment_method_id === undefined
        ? undefined
        : await paymentMethodFor(trx, scope, locked.customer_id, {
            methodType: 'CARD',
            paymentMethodId: body.payment_method_id ?? undefined,
          })
    if (method && locked.payment_gateway !== null)
      assertCardOfGateway(method, locked.payment_gateway)
    const changes: Updateable<PaymentTable> = {
      ...(body.description !== undefined && { description: body.description }),
      ...(body.metadata !== undefined && {
        metadata: JSON.stringify(mergeMetadata(locked.metadata, body.metadata)),
      }),
      ...(body.success_url !== undefined && { success_url: body.success_url }),
      ...(body.cancel_url !== undefined && { cancel_url: body.cancel_url }),
      ...(body.billing_address !== undefined && {
        billing_address:
          body.billing_address === null ? null : JSON.stringify(body.billing_address),
      }),
      ...(method && { payment_method_id: method.id }),
      ...(body.save_card_and_make_default !== undefined && {
        save_card_and_make_default: body.save_card_and_make_default,
      }),
      ...(body.payment_date !== undefined && {
        payment_date: body.payment_date === null ? null : new Date(body.payment_date),
      }),
      updated_by: updatedBy,
      updated_at: deps.clock.now(),
    }
    return updatePayment(trx, locked.id, changes)
  })
}

/** Hides a payment that never took money (INITIATED or FAILED); it stays retrievable, marked inactive. */
export async function deletePayment(
  deps: PaymentDeps,
  access: Access,
  paymentId: string,
  updatedBy: string | null,
): Promise<PaymentView> {
  const scope = scopeOf(access)
  await requirePayment(deps.db, access, paymentId)
  return withLockedPayment(deps, scope, paymentId, async (trx, locked) => {
    if (locked.payment_status !== 'INITIATED' && locked.payment_status !== 'FAILED') {
      throw new AppError(
        'invalid_state_transition',
        `Only INITIATED or FAILED payments can be deleted; this one is ${locked.payment_status}`,
        {
          payment_id: locked.id,
          payment_status: locked.payment_status,
        },
      )
    }
    return updatePayment(trx, locked.id, {
      active: false,
      updated_by: updatedBy,
      updated_at: deps.clock.now(),
    })
  })
}

export async function getPayment(db: Db, access: Access, paymentId: string): Promise<PaymentView> {
  const payment = await requirePayment(db, access, paymentId)
  return { payment, invoiceIds: payment.invoice_ids }
}

/** The payments `access` may see, as the API's JSON array built by PostgreSQL (`GET /v1/payments`). */
export async function listPaymentsJson(
  db: Db,
  access: Access,
  filters: PaymentFilters,
  request: ListRequest<PaymentSortField>,
  genericPlans: Db = db,
): Promise<{ items: string; total: number }> {
  const scoped = scopedFilters(access, filters)
  if (!scoped) return { items: '[]', total: 0 }
  return listPaymentPageJson(db, access.environmentId, scoped, request, genericPlans)
}

/** A customer token sees only its customer's payments: `undefined` when it asked for another's. */
function scopedFilters(access: Access, filters: PaymentFilters): PaymentFilters | undefined {
  if (access.customerId === null) return filters
  if (filters.customerId !== undefined && filters.customerId !== access.customerId) return undefined
  return { ...filters, customerId: access.customerId }
}

/** Attempts of many payments in one query, for responses. */
export async function attemptsByPayment(db: Db, paymentIds: string[]) {
  const attempts = await attemptsOf(db, paymentIds)
  const out = new Map<string, typeof attempts>()
  for (const attempt of attempts)
    out.set(attempt.payment_id, [...(out.get(attempt.payment_id) ?? []), attempt])
  return out
}

/**
 * Runs `change` on the payment under its row lock, in one transaction, and returns
 * the payment with its invoice ids. Every state change of a payment goes through here.
 */
export async function withLockedPayment(
  deps: Pick<PaymentDeps, 'db'>,
  scope: Scope,
  paymentId: string,
  change: (trx: Db, locked: Payment) => Promise<Payment>,
): Promise<PaymentView> {
  return inTransaction(deps.db, async (trx) => {
    const locked = await lockPayment(trx, scope.environmentId, paymentId)
    if (!locked) throw notFound('payment', paymentId)
    const payment = await change(trx, locked)
    return {
      payment,
      invoiceIds: payment.invoice_ids,
      attempts: attemptsOfHeldPayment(trx, payment.id),
    }
  })
}

/** Records a saved card and, when the payment asked for it, makes it the customer's default. */
export async function saveCardFromPayment(
  trx: Db,
  scope: Scope,
  payment: Payment,
  card: {
    brand: string | null
    last4: string | null
    expMonth: number | null
    expYear: number | null
    gatewayPaymentMethodId: string
  },
  clock: Clock,
): Promise<PaymentMethod> {
  const method = await savePaymentMethod(trx, scope, {
    customerId: payment.customer_id,
    gateway: payment.payment_gateway ?? 'unknown',
    gatewayPaymentMethodId: card.gatewayPaymentMethodId,
    brand: card.brand,
    last4: card.last4,
    expMonth: card.expMonth,
    expYear: card.expYear,
  })
  if (payment.save_card_and_make_default) {
    const customer = await setDefaultPaymentMethodRow(
      trx,
      payment.customer_id,
      method.id,
      clock.now(),
    )
    // As a default set through the API tells it.
    if (customer)
      await recordEvents(trx, scope, clock.now(), [
        await customerEvent(trx, 'customer.updated', customer),
      ])
    // The provider's default follows, once this commits (Stripe Billing charges that one),
    // even when Payrail's was already this card: one the provider never had is set then.
    await queueDefaultMethodSync(trx, scope, payment.customer_id)
  }
  return method
}

async function requirePayment(db: Db, access: Access, paymentId: string): Promise<Payment> {
  const payment = await findPayment(db, access.environmentId, paymentId, access.customerId)
  if (!payment) throw notFound('payment', paymentId)
  return payment
}

export function parsePaymentAmount(
  amount: string | number,
  currency: string,
): { amount: bigint; currency: string } {
  const normalized = normalizeCurrency(currency)
  return { amount: toMinorUnits(amount, normalized), currency: normalized }
}

function declineError(decline: Decline, payment: Payment): AppError {
  const code: ErrorCode = decline.code
  return new AppError(code, decline.message, {
    payment_id: payment.id,
    payment_status: payment.payment_status,
    decline_code: decline.declineCode ?? null,
    ...(decline.code === 'authentication_required' && {
      next_action: {
        type: 'use_payment_link',
        message:
          'The card needs the customer to authenticate: create a PAYMENT_LINK payment and send them its payment_url',
        payment_method_type: 'PAYMENT_LINK',
        payment_gateway: payment.payment_gateway,
      },
    }),
  })
}

function illegal(payment: Payment, to: PaymentStatus, reason: string): AppError {
  return new AppError('invalid_state_transition', `Payment ${payment.id}: ${reason}`, {
    payment_id: payment.id,
    from: payment.payment_status,
    to,
  })
}

function attemptRow(
  payment: Payment,
  gateway: string,
  status: string,
  gatewayPaymentId: string | null,
  trackingId: string | null,
  errorCode: string | null,
  errorMessage: string | null,
  clock: Clock,
) {
  const now = clock.now()
  return {
    id: newId('paymentAttempt'),
    payment_id: payment.id,
    gateway,
    gateway_payment_id: gatewayPaymentId,
    gateway_tracking_id: trackingId,
    status,
    error_code: errorCode,
    error_message: errorMessage,
    created_at: now,
    updated_at: now,
  }
}

export { attemptRow, isSettled }
