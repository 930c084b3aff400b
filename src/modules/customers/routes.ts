import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { normalizeCurrency } from '../../core/money.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { ListQuery, listRequestFrom, pageInMemory } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EmptyBody, IdParams } from '../../http/schema-types.ts'
import { revokeCustomerTokens } from '../api-keys/service.ts'
import { listTransactions } from '../balances/service.ts'
import { PaymentMethodSchema, toPaymentMethodResponse } from '../payment-methods/schemas.ts'
import { paymentMethodsOf } from '../payment-methods/service.ts'
import {
  AdjustBalanceBody,
  BalanceTransactionListQuery,
  BalanceTransactionSchema,
  CreateCustomerBody,
  CreateTokenBody,
  CustomerListQuery,
  CustomerPaymentMethodParams,
  CustomerSchema,
  CustomerTokenSchema,
  RevokedTokensSchema,
  toBalanceTransactionResponse,
  UpdateCustomerBody,
} from './schemas.ts'
import {
  adjustBalance,
  createCustomer,
  createCustomerToken,
  customerResponses,
  getCustomer,
  listCustomers,
  setDefaultPaymentMethod,
  updateCustomer,
} from './service.ts'

const tags = ['Customers']
const errors = { '4xx': ErrorResponse }

export function customerRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    const one = async (customer: Parameters<typeof customerResponses>[1][number]) => {
      const [response] = await customerResponses(deps.db, [customer])
      return response!
    }

    app.post(
      '/customers',
      {
        schema: {
          tags,
          summary: 'Create a customer',
          body: CreateCustomerBody,
          response: { 201: CustomerSchema, ...errors },
        },
      },
      async (request, reply) => {
        const customer = await createCustomer(
          deps.db,
          principalOf(request),
          request.body,
          deps.clock,
        )
        return reply.code(201).send(await one(customer))
      },
    )

    app.get(
      '/customers',
      {
        schema: {
          tags,
          summary: 'List customers',
          querystring: CustomerListQuery,
          response: { 200: PaginatedSchema(CustomerSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'name', 'email'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listCustomers(
          deps.db,
          principalOf(request),
          { email: query.email, externalId: query.external_id, name: query.name },
          list,
        )
        return paginated(await customerResponses(deps.db, items), total, list.page)
      },
    )

    app.get(
      '/customers/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve a customer',
          params: IdParams,
          response: { 200: CustomerSchema, ...errors },
        },
      },
      async (request) => one(await getCustomer(deps.db, principalOf(request), request.params.id)),
    )

    app.patch(
      '/customers/:id',
      {
        schema: {
          tags,
          summary: 'Update a customer (metadata merges; a key set to "" is removed)',
          params: IdParams,
          body: UpdateCustomerBody,
          response: { 200: CustomerSchema, ...errors },
        },
      },
      async (request) =>
        one(
          await updateCustomer(
            deps.db,
            principalOf(request),
            request.params.id,
            request.body,
            deps.clock,
          ),
        ),
    )

    app.get(
      '/customers/:id/payment_methods',
      {
        schema: {
          tags,
          summary: "List a customer's saved payment methods",
          params: IdParams,
          querystring: ListQuery({}),
          response: { 200: PaginatedSchema(PaymentMethodSchema), ...errors },
        },
      },
      async (request) => {
        const scope = principalOf(request)
        const list = listRequestFrom(request.query, ['created_at'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const customer = await getCustomer(deps.db, scope, request.params.id)
        const { items, total } = pageInMemory(
          await paymentMethodsOf(deps.db, scope, customer.id),
          list,
        )
        return paginated(
          items.map((m) => toPaymentMethodResponse(m, customer.default_payment_method_id)),
          total,
          list.page,
        )
      },
    )

    app.post(
      '/customers/:id/payment_methods/:pm/default',
      {
        schema: {
          tags,
          summary: "Make a saved payment method the customer's default",
          params: CustomerPaymentMethodParams,
          body: EmptyBody,
          response: { 200: CustomerSchema, ...errors },
        },
      },
      async (request) =>
        one(
          await setDefaultPaymentMethod(
            deps.db,
            principalOf(request),
            request.params.id,
            request.params.pm,
            deps.clock,
          ),
        ),
    )

    app.get(
      '/customers/:id/balance_transactions',
      {
        schema: {
          tags,
          summary: "The customer's balance ledger, newest first",
          params: IdParams,
          querystring: BalanceTransactionListQuery,
          response: { 200: PaginatedSchema(BalanceTransactionSchema), ...errors },
        },
      },
      async (request) => {
        const scope = principalOf(request)
        const customer = await getCustomer(deps.db, scope, request.params.id)
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'amount'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const currency =
          query.currency === undefined ? undefined : normalizeCurrency(query.currency)
        const { items, total } = await listTransactions(
          deps.db,
          scope,
          customer.id,
          { type: query.type, currency },
          list,
        )
        return paginated(items.map(toBalanceTransactionResponse), total, list.page)
      },
    )

    app.post(
      '/customers/:id/balance_transactions',
      {
        schema: {
          tags,
          summary:
            'Adjust the balance (admin): a positive amount credits, a negative one debits; never below zero',
          params: IdParams,
          body: AdjustBalanceBody,
          response: { 201: BalanceTransactionSchema, ...errors },
        },
      },
      async (request, reply) => {
        const transaction = await adjustBalance(
          deps.db,
          principalOf(request),
          request.params.id,
          request.body,
          deps.clock,
        )
        return reply.code(201).send(toBalanceTransactionResponse(transaction))
      },
    )

    app.post(
      '/customers/:id/tokens',
      {
        schema: {
          tags,
          summary:
            "A token bound to this customer (role user): reads and pays only the customer's own objects",
          params: IdParams,
          body: Type.Optional(CreateTokenBody),
          response: { 201: CustomerTokenSchema, ...errors },
        },
      },
      async (request, reply) => {
        const created = await createCustomerToken(
          deps.db,
          principalOf(request),
          request.params.id,
          request.body?.expires_in,
          deps.clock,
        )
        return reply.code(201).send({
          object: 'customer_token' as const,
          token: created.token,
          customer_id: created.customerId,
          expires_at: created.expiresAt.toISOString(),
        })
      },
    )

    app.delete(
      '/customers/:id/tokens',
      {
        schema: {
          tags,
          summary:
            'Revoke every token of this customer at once (a leaked one, a customer who left): they are refused from now on, in every process',
          params: IdParams,
          body: EmptyBody,
          response: { 200: RevokedTokensSchema, ...errors },
        },
      },
      async (request) => {
        const principal = principalOf(request)
        await getCustomer(deps.db, principal, request.params.id)
        const revoked = await revokeCustomerTokens(
          deps.db,
          principal,
          request.params.id,
          deps.clock,
          deps.apiKeys,
        )
        return {
          object: 'customer_token_revocation' as const,
          customer_id: request.params.id,
          revoked,
        }
      },
    )
  }
}
