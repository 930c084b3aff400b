import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { normalizeCurrency, percentOf, toMinorUnits } from '../../core/money.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Discount } from '../../db/database.ts'
import { isPgError, PG_UNIQUE_VIOLATION } from '../../db/errors.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { mergeMetadata, newMetadata } from '../../http/schema-types.ts'
import {
  type DiscountFilters,
  findDiscount,
  findDiscountByCode,
  insertDiscount,
  insertRedemption,
  listDiscounts as listDiscountRows,
  lockDiscount,
  takeRedemption,
  updateDiscount as updateDiscountRow,
} from './repository.ts'
import { type CreateDiscountBody, isRedeemable, type UpdateDiscountBody } from './schemas.ts'

/**
 * Creates a discount code: `percent_off`, or `amount_off` with its `currency`.
 * Codes are unique per environment, ignoring case.
 */
export async function createDiscount(
  db: Db,
  scope: Scope,
  body: CreateDiscountBody,
  clock: Clock,
): Promise<Discount> {
  const hasPercent = body.percent_off !== undefined
  const hasAmount = body.amount_off !== undefined
  if (hasPercent === hasAmount) {
    throw validationError('Give exactly one of percent_off or amount_off', {
      fields: ['percent_off', 'amount_off'],
    })
  }
  if (body.percent_off !== undefined) assertPercent(body.percent_off)
  let amountOff: bigint | null = null
  let currency: string | null = null
  if (body.amount_off !== undefined) {
    if (!body.currency)
      throw validationError('currency is required with amount_off', { field: 'currency' })
    currency = normalizeCurrency(body.currency)
    amountOff = toMinorUnits(body.amount_off, currency, 'amount_off')
    if (amountOff <= 0n)
      throw validationError('amount_off must be greater than zero', { field: 'amount_off' })
  } else if (body.currency) {
    throw validationError('currency goes only with amount_off', { field: 'currency' })
  }
  const now = clock.now()
  const expiresAt = body.expires_at ? new Date(body.expires_at) : null
  if (expiresAt && expiresAt.getTime() <= now.getTime()) {
    // As Stripe's `redeem_by`: a new code expires in the future (PATCH may end one now).
    throw validationError('expires_at must be in the future', { field: 'expires_at' })
  }
  try {
    // In a transaction (of `inTransaction`), so a keyed request's commit marks its key applied.
    return await inTransaction(db, (trx) =>
      insertDiscount(trx, {
        id: newId('discount'),
        tenant_id: scope.tenantId,
        environment_id: scope.environmentId,
        code: body.code,
        percent_off: body.percent_off === undefined ? null : body.percent_off.toFixed(2),
        amount_off: amountOff,
        currency,
        max_redemptions: body.max_redemptions ?? null,
        expires_at: expiresAt,
        active: body.active ?? true,
        metadata: newMetadata(body.metadata),
        created_at: now,
        updated_at: now,
      }),
    )
  } catch (error) {
    if (isPgError(error, PG_UNIQUE_VIOLATION)) {
      throw new AppError('conflict', `A discount with code '${body.code}' already exists`, {
        field: 'code',
        code: body.code,
      })
    }
    throw error
  }
}

export async function updateDiscount(
  db: Db,
  scope: Scope,
  id: string,
  body: UpdateDiscountBody,
  clock: Clock,
): Promise<Discount> {
  return inTransaction(db, async (trx) => {
    const current = await lockDiscount(trx, scope.environmentId, id)
    if (!current) throw notFound('discount', id)
    if (body.max_redemptions != null && body.max_redemptions < current.times_redeemed) {
      throw validationError(
        `max_redemptions cannot go below the ${current.times_redeemed} uses already made`,
        {
          field: 'max_redemptions',
          times_redeemed: current.times_redeemed,
        },
      )
    }
    const updated = await updateDiscountRow(trx, scope.environmentId, id, {
      ...(body.active !== undefined && { active: body.active }),
      ...(body.max_redemptions !== undefined && { max_redemptions: body.max_redemptions }),
      ...(body.expires_at !== undefined && {
        expires_at: body.expires_at === null ? null : new Date(body.expires_at),
      }),
      ...(body.metadata !== undefined && {
        metadata: JSON.stringify(mergeMetadata(current.metadata, body.metadata)),
      }),
      updated_at: clock.now(),
    })
    if (!updated) throw notFound('discount', id)
    return updated
  })
}

export async function getDiscount(db: Db, scope: Scope, id: string): Promise<Discount> {
  const discount = await findDiscount(db, scope.environmentId, id)
  if (!discount) throw notFound('discount', id)
  return discount
}

export async function listDiscounts(
  db: Db,
  scope: Scope,
  filters: DiscountFilters,
  request: ListRequest<'created_at' | 'code'>,
) {
  return listDiscountRows(db, scope.environmentId, filters, request)
}

/** A percentage Payrail can store exactly: 0.01 to 100, at most two decimals. */
function assertPercent(percent: number): void {
  const hundredths = Math.round(percent * 100)
  if (Math.abs(percent * 100 - hundredths) > 1e-6 || hundredths < 1 || hundredths > 10_000) {
    throw validationError('percent_off must be from 0.01 to 100 with at most two decimals', {
      field: 'percent_off',
    })
  }
}

/**
 * What a discount takes off `subtotal` in `currency`: a percentage rounded half
 * up, or a fixed amount capped at the subtotal. An amount-off code in another
 * currency does not apply (400).
 */
export function discountAmount(discount: Discount, subtotal: bigint, currency: string): bigint {
  if (discount.percent_off !== null) {
    const hundredths = BigInt(Math.round(Number(discount.percent_off) * 100))
    return percentOf(subtotal, hundredths)
  }
  if (discount.currency !== currency) {
    throw validationError(
      `Discount '${discount.code}' is in ${discount.currency?.toUpperCase()}, not ${currency.toUpperCase()}`,
      {
        field: 'discount_code',
      },
    )
  }
  const off = discount.amount_off ?? 0n
  return off < subtotal ? off : subtotal
}

/**
 * Looks up a code for applying it: unknown, inactive, expired or used-up codes are
 * refused with a message the customer can read.
 */
export async function findRedeemableDiscount(
  db: Db,
  scope: Scope,
  code: string,
  at: Date,
): Promise<Discount> {
  const discount = await findDiscountByCode(db, scope.environmentId, code)
  if (!discount)
    throw validationError(`Unknown discount code '${code}'`, { field: 'discount_code' })
  if (!isRedeemable(discount, at)) {
    throw validationError(`Discount code '${code}' is no longer valid`, {
      field: 'discount_code',
      code,
    })
  }
  return discount
}

/**
 * Uses one redemption of the discount for an invoice, in the caller's transaction.
 * Atomic: when two invoices race for the last use, one gets it and the other a 409.
 */
export async function redeemDiscount(
  trx: Db,
  scope: Scope,
  discount: Discount,
  redemption: { invoiceId: string; customerId: string; amount: bigint },
  at: Date,
): Promise<void> {
  const taken = await takeRedemption(trx, discount.id, at)
  if (!taken) {
    throw new AppError(
      'conflict',
      `Discount code '${discount.code}' has no uses left or is no longer valid`,
      {
        field: 'discount_code',
        code: discount.code,
      },
    )
  }
  await insertRedemption(trx, {
    id: newId('discountRedemption'),
    environment_id: scope.environmentId,
    discount_id: discount.id,
    invoice_id: redemption.invoiceId,
    customer_id: redemption.customerId,
    amount: redemption.amount,
    created_at: at,
  })
}
