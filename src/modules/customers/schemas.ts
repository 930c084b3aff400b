import { type Static, Type } from 'typebox'
import { formatMinorUnits } from '../../core/money.ts'
import type { Address, BalanceTransaction, Customer } from '../../db/database.ts'
import { ListQuery } from '../../http/list-query.ts'
import {
  CurrencyCode,
  DecimalAmount,
  Metadata,
  Nullable,
  Timestamp,
} from '../../http/schema-types.ts'

export const AddressSchema = Type.Object(
  {
    line1: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
    line2: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
    city: Type.Optional(Nullable(Type.String({ maxLength: 100 }))),
    state: Type.Optional(Nullable(Type.String({ maxLength: 100 }))),
    postal_code: Type.Optional(Nullable(Type.String({ maxLength: 20 }))),
    country: Type.Optional(
      Nullable(Type.String({ pattern: '^[A-Za-z]{2}$', description: 'ISO 3166-1 alpha-2' })),
    ),
  },
  { additionalProperties: false },
)

const Email = Type.String({ format: 'email', maxLength: 320 })

export const CreateCustomerBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  email: Email,
  external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  billing_address: Type.Optional(AddressSchema),
  auto_pay: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
})
export type CreateCustomerBody = Static<typeof CreateCustomerBody>

export const UpdateCustomerBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  email: Type.Optional(Email),
  external_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 200 }))),
  billing_address: Type.Optional(Nullable(AddressSchema)),
  auto_pay: Type.Optional(Type.Boolean()),
  default_payment_method_id: Type.Optional(Nullable(Type.String())),
  metadata: Type.Optional(Metadata),
})
export type UpdateCustomerBody = Static<typeof UpdateCustomerBody>

export const CustomerListQuery = ListQuery({
  email: Type.Optional(Type.String()),
  external_id: Type.Optional(Type.String()),
  name: Type.Optional(Type.String({ description: 'Substring, case-insensitive' })),
})

export const CustomerSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('customer'),
    name: Type.String(),
    email: Nullable(Type.String()),
    external_id: Nullable(Type.String()),
    billing_address: Nullable(Type.Record(Type.String(), Nullable(Type.String()))),
    auto_pay: Type.Boolean(),
    default_payment_method_id: Nullable(Type.String()),
    gateway_customer_ids: Type.Record(Type.String(), Type.String()),
    balances: Type.Record(Type.String(), Type.String(), {
      description: 'Account balance per currency, e.g. {"usd":"12.50"}',
    }),
    metadata: Type.Record(Type.String(), Type.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Customer' },
)

export function toCustomerResponse(customer: Customer, balances: Map<string, bigint> | undefined) {
  return {
    id: customer.id,
    object: 'customer' as const,
    name: customer.name,
    email: customer.email,
    external_id: customer.external_id,
    billing_address: customer.billing_address ? normalizeAddress(customer.billing_address) : null,
    auto_pay: customer.auto_pay,
    default_payment_method_id: customer.default_payment_method_id,
    gateway_customer_ids: customer.gateway_customer_ids,
    balances: Object.fromEntries(
      [...(balances ?? new Map())].map(([currency, amount]) => [
        currency,
        formatMinorUnits(amount, currency),
      ]),
    ),
    metadata: customer.metadata,
    created_at: customer.created_at.toISOString(),
    updated_at: customer.updated_at.toISOString(),
  }
}

function normalizeAddress(address: Address): Record<string, string | null> {
  return {
    line1: address.line1 ?? null,
    line2: address.line2 ?? null,
    city: address.city ?? null,
    state: address.state ?? null,
    postal_code: address.postal_code ?? null,
    country: address.country ?? null,
  }
}

export const CreateTokenBody = Type.Object({
  expires_in: Type.Optional(
    Type.Integer({
      minimum: 60,
      maximum: 30 * 24 * 3600,
      description: 'Seconds until the token expires (default 3600)',
    }),
  ),
})

export const CustomerTokenSchema = Type.Object({
  object: Type.Literal('customer_token'),
  token: Type.String({ description: 'Use like an API key; shown once' }),
  customer_id: Type.String(),
  expires_at: Timestamp,
})

export const RevokedTokensSchema = Type.Object({
  object: Type.Literal('customer_token_revocation'),
  customer_id: Type.String(),
  revoked: Type.Integer({ description: 'How many live tokens were revoked' }),
})

export const CustomerPaymentMethodParams = Type.Object({ id: Type.String(), pm: Type.String() })

export const BalanceTransactionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('balance_transaction'),
    customer_id: Type.String(),
    type: Type.String(),
    amount: Type.String({ description: 'Signed decimal: credits positive, debits negative' }),
    currency: Type.String(),
    balance_after: Type.String(),
    source_type: Nullable(Type.String()),
    source_id: Nullable(Type.String()),
    description: Nullable(Type.String()),
    created_at: Timestamp,
  },
  { $id: 'BalanceTransaction' },
)

export const BalanceTransactionListQuery = ListQuery({
  type: Type.Optional(
    Type.Union([
      Type.Literal('top_up'),
      Type.Literal('payment'),
      Type.Literal('refund'),
      Type.Literal('adjustment'),
    ]),
  ),
  currency: Type.Optional(CurrencyCode),
})

export const AdjustBalanceBody = Type.Object({
  amount: DecimalAmount,
  currency: CurrencyCode,
  description: Type.Optional(Type.String({ maxLength: 500 })),
})

export function toBalanceTransactionResponse(transaction: BalanceTransaction) {
  return {
    id: transaction.id,
    object: 'balance_transaction' as const,
    customer_id: transaction.customer_id,
    type: transaction.type,
    amount: formatMinorUnits(transaction.amount, transaction.currency),
    currency: transaction.currency,
    balance_after: formatMinorUnits(transaction.balance_after, transaction.currency),
    source_type: transaction.source_type,
    source_id: transaction.source_id,
    description: transaction.description,
    created_at: transaction.created_at.toISOString(),
  }
}
