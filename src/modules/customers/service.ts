import type { Updateable } from 'kysely'
import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { normalizeCurrency, toMinorUnits } from '../../core/money.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { BalanceTransaction, Customer, CustomerTable } from '../../db/database.ts'
import { isPgError, PG_UNIQUE_VIOLATION } from '../../db/errors.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import { queueDefaultMethodSync } from '../../jobs/tasks/sync-default-payment-method.ts'
import { issueApiKey } from '../api-keys/service.ts'
import { balancesByCustomer, requireBalanceChange } from '../balances/service.ts'
import { recordEvents } from '../events/service.ts'
import type { EventType } from '../events/types.ts'
import { findCustomerPaymentMethod } from '../payment-methods/service.ts'
import {
  type CustomerFilters,
  type CustomerSortField,
  findCustomer,
  insertCustomer,
  listCustomers as listCustomerRows,
  lockCustomer,
  updateCustomer as updateCustomerRow,
} from './repository.ts'
import { type CreateCustomerBody, toCustomerResponse, type UpdateCustomerBody } from './schemas.ts'

export const DEFAULT_TOKEN_TTL_SECONDS = 3600

/**
 * Creates a customer. `external_id` is unique per environment (409 otherwise).
 *
 * @example
 * const customer = await createCustomer(db, scope, { name: 'Ada', email: 'ada@example.com' }, clock)
 */
export async function createCustomer(
  db: Db,
  scope: Scope,
  body: CreateCustomerBody,
  clock: Clock,
): Promise<Customer> {
  const now = clock.now()
  return inTransaction(db, async (trx) => {
    const customer = await withExternalIdConflict(body.external_id, () =>
      insertCustomer(trx, {
        id: newId('customer'),
        tenant_id: scope.tenantId,
        environment_id: scope.environmentId,
        name: body.name,
        email: body.email,
        external_id: body.external_id ?? null,
        billing_address: body.billing_address ? JSON.stringify(body.billing_address) : null,
        auto_pay: body.auto_pay ?? false,
        metadata: newMetadata(body.metadata),
        created_at: now,
        updated_at: now,
      }),
    )
    await recordEvents(trx, scope, clock.now(), [
      await customerEvent(trx, 'customer.created', customer),
    ])
    return customer
  })
}

export async function getCustomer(db: Db, scope: Scope, id: string): Promise<Customer> {
  const customer = await findCustomer(db, scope.environmentId, id)
  if (!customer) throw notFound('customer', id)
  return customer
}

export async function listCustomers(
  db: Db,
  scope: Scope,
  filters: CustomerFilters,
  request: ListRequest<CustomerSortField>,
) {
  return listCustomerRows(db, scope.environmentId, filters, request)
}

/** Updates the given fields; `metadata` merges (a key set to "" is removed), like Stripe. */
export async function updateCustomer(
  db: Db,
  scope: Scope,
  id: string,
  body: UpdateCustomerBody,
  clock: Clock,
): Promise<Customer> {
  return inTransaction(db, async (trx) => {
    const current = await lockCustomer(trx, scope.environmentId, id)
    if (!current) throw notFound('customer', id)
    const changes: Updateable<CustomerTable> = {}
    if (body.name !== undefined) changes.name = body.name
    if (body.email !== undefined) changes.email = body.email
    if (body.external_id !== undefined) changes.external_id = body.external_id
    if (body.billing_address !== undefined) {
      changes.billing_address =
        body.billing_address === null ? null : JSON.stringify(body.billing_address)
    }
    if (body.auto_pay !== undefined) changes.auto_pay = body.auto_pay
    if (body.metadata !== undefined)
      changes.metadata = JSON.stringify(mergeMetadata(current.metadata, body.metadata))
    if (body.default_payment_method_id !== undefined) {
      if (body.default_payment_method_id !== null) {
        await requirePaymentMethod(trx, scope, id, body.default_payment_method_id)
      }
      changes.default_payment_method_id = body.default_payment_method_id
    }
    const updated = await withExternalIdConflict(body.external_id ?? undefined, () =>
      updateCustomerRow(trx, scope.environmentId, id, { ...changes, updated_at: clock.now() }),
    )
    if (!updated) throw notFound('customer', id)
    // The provider's default follows (Stripe Billing charges the customer's default there).
    if (
      changes.default_payment_method_id &&
      changes.default_payment_method_id !== current.default_payment_method_id
    )
      await queueDefaultMethodSync(trx, scope, id)
    await recordEvents(trx, scope, clock.now(), [
      await customerEvent(trx, 'customer.updated', updated),
    ])
    return updated
  })
}

/** Makes a saved payment method the one `CARD` payments and automatic renewals use. */
export async function setDefaultPaymentMethod(
  db: Db,
  scope: Scope,
  customerId: string,
  paymentMethodId: string,
  clock: Clock,
): Promise<Customer> {
  return updateCustomer(
    db,
    scope,
    customerId,
    { default_payment_method_id: paymentMethodId },
    clock,
  )
}

async function requirePaymentMethod(
  db: Db,
  scope: Scope,
  customerId: string,
  paymentMethodId: string,
) {
  const method = await findCustomerPaymentMethod(db, scope, customerId, paymentMethodId)
  if (!method) throw notFound('payment_method', paymentMethodId)
  return method
}

/**
 * A token for one customer (role `user`): it reads and pays only that customer's
 * invoices, orders and payments. Shown once, like an API key.
 */
export async function createCustomerToken(
  db: Db,
  scope: Scope,
  customerId: string,
  expiresInSeconds: number | undefined,
  clock: Clock,
): Promise<{ token: string; customerId: string; expiresAt: Date }> {
  await getCustomer(db, scope, customerId)
  const expiresAt = new Date(
    clock.now().getTime() + (expiresInSeconds ?? DEFAULT_TOKEN_TTL_SECONDS) * 1000,
  )
  const { key } = await issueApiKey(
    db,
    { ...scope, role: 'user', customerId, expiresAt, name: 'Customer token' },
    clock,
  )
  return { token: key, customerId, expiresAt }
}

/** An admin's correction of a customer's balance: positive credits, negative debits, never below zero. */
export async function adjustBalance(
  db: Db,
  scope: Scope,
  customerId: string,
  input: { amount: string | number; currency: string; description?: string | undefined },
  clock: Clock,
): Promise<BalanceTransaction> {
  const currency = normalizeCurrency(input.currency)
  const amount = toMinorUnits(input.amount, currency)
  if (amount === 0n) throw validationError('amount must not be zero', { field: 'amount' })
  return inTransaction(db, async (trx) => {
    const customer = await lockCustomer(trx, scope.environmentId, customerId)
    if (!customer) throw notFound('customer', customerId)
    return requireBalanceChange(
      trx,
      scope,
      { customerId, currency, amount, type: 'adjustment', description: input.description ?? null },
      clock,
    )
  })
}

/** Customers as the API shows them, with their balances fetched in one query. */
export async function customerResponses(db: Db, customers: Customer[]) {
  const balances = await balancesByCustomer(
    db,
    customers.map((c) => c.id),
  )
  return customers.map((customer) => toCustomerResponse(customer, balances.get(customer.id)))
}

async function withExternalIdConflict<T>(
  externalId: string | undefined,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run()
  } catch (error) {
    if (isPgError(error, PG_UNIQUE_VIOLATION) && error.constraint === 'customers_external_id_key') {
      throw new AppError('conflict', `A customer with external_id '${externalId}' already exists`, {
        field: 'external_id',
        external_id: externalId,
      })
    }
    throw error
  }
}

/**
 * An event about `customer`, carrying it as the API shows it, its balances included (they
 * were always `{}`). A customer just created has none.
 */
export async function customerEvent(db: Db, type: EventType, customer: Customer) {
  const balances =
    type === 'customer.created'
      ? undefined
      : (await balancesByCustomer(db, [customer.id])).get(customer.id)
  return {
    type,
    objectType: 'customer',
    objectId: customer.id,
    data: toCustomerResponse(customer, balances),
  }
}
