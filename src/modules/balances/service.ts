import type { Clock } from '../../core/clock.ts'
import { AppError, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { formatMinorUnits } from '../../core/money.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { BalanceTransaction, BalanceTransactionType } from '../../db/database.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { toBalanceTransactionResponse } from '../customers/schemas.ts'
import { recordEvents } from '../events/service.ts'
import {
  type BalanceTransactionFilters,
  creditBalance,
  debitBalance,
  findBalance,
  findBalances,
  insertBalanceTransaction,
  listBalanceTransactions,
} from './repository.ts'

export interface BalanceChange {
  customerId: string
  currency: string
  /** Signed minor units: a credit is positive, a debit negative. */
  amount: bigint
  type: BalanceTransactionType
  source?: { type: string; id: string } | undefined
  description?: string | null | undefined
}

/**
 * Moves a customer's balance and writes its ledger row in the caller's
 * transaction. The balance row and the ledger change together, so the ledger
 * always sums to the balance; a debit the balance does not cover changes nothing
 * and returns `undefined`.
 *
 * @example
 * await inTransaction(db, (trx) =>
 *   applyBalanceChange(trx, scope, { customerId, currency: 'usd', amount: 5000n, type: 'top_up' }, clock))
 */
export async function applyBalanceChange(
  trx: Db,
  scope: Scope,
  change: BalanceChange,
  clock: Clock,
): Promise<BalanceTransaction | undefined> {
  if (change.amount === 0n)
    throw validationError('A balance change needs a non-zero amount', { field: 'amount' })
  const at = clock.now()
  const balanceAfter =
    change.amount > 0n
      ? await creditBalance(trx, {
          customerId: change.customerId,
          currency: change.currency,
          environmentId: scope.environmentId,
          amount: change.amount,
          at,
        })
      : await debitBalance(trx, {
          customerId: change.customerId,
          currency: change.currency,
          amount: -change.amount,
          at,
        })
  if (balanceAfter === undefined) return undefined
  const transaction = await insertBalanceTransaction(trx, {
    id: newId('balanceTransaction'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    customer_id: change.customerId,
    type: change.type,
    amount: change.amount,
    currency: change.currency,
    balance_after: balanceAfter,
    source_type: change.source?.type ?? null,
    source_id: change.source?.id ?? null,
    description: change.description ?? null,
    created_at: at,
  })
  await recordEvents(trx, scope, clock.now(), [
    {
      type: 'customer.balance_transaction.created',
      objectType: 'balance_transaction',
      objectId: transaction.id,
      // The transaction as the API shows it, as every event carries its object.
      data: toBalanceTransactionResponse(transaction),
    },
  ])
  return transaction
}

/** Like `applyBalanceChange` for a debit, but a shortfall is a 409 the caller can show. */
export async function requireBalanceChange(
  trx: Db,
  scope: Scope,
  change: BalanceChange,
  clock: Clock,
) {
  const transaction = await applyBalanceChange(trx, scope, change, clock)
  if (!transaction) {
    const balance = await findBalance(trx, change.customerId, change.currency)
    throw new AppError(
      'conflict',
      'The customer balance does not cover this debit; a balance never goes negative',
      {
        customer_id: change.customerId,
        currency: change.currency,
        balance: formatMinorUnits(balance, change.currency),
        requested: formatMinorUnits(-change.amount, change.currency),
      },
    )
  }
  return transaction
}

export async function balancesByCustomer(
  db: Db,
  customerIds: string[],
): Promise<Map<string, Map<string, bigint>>> {
  const out = new Map<string, Map<string, bigint>>()
  for (const row of await findBalances(db, customerIds)) {
    const balances = out.get(row.customer_id) ?? new Map<string, bigint>()
    balances.set(row.currency, row.balance)
    out.set(row.customer_id, balances)
  }
  return out
}

export async function balanceOf(
  db: Db,
  customerId: string,
  currency: string,
  options: { lock?: boolean } = {},
): Promise<bigint> {
  return findBalance(db, customerId, currency, options)
}

export async function listTransactions(
  db: Db,
  scope: Scope,
  customerId: string,
  filters: BalanceTransactionFilters,
  request: ListRequest<'created_at' | 'amount'>,
) {
  return listBalanceTransactions(db, scope.environmentId, customerId, filters, request)
}
