import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { accessOf } from '../../core/principal.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { IdParams } from '../../http/schema-types.ts'
import { InvoiceSchema, toInvoiceResponse } from '../invoices/schemas.ts'
import { CreateOrderBody, OrderListQuery, OrderSchema, toOrderResponse } from './schemas.ts'
import { createOrder, getOrder, listOrders } from './service.ts'

const tags = ['Orders']
const errors = { '4xx': ErrorResponse }

const CreatedOrderSchema = Type.Object({ ...OrderSchema.properties, invoice: InvoiceSchema })

export function orderRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.post(
      '/orders',
      {
        schema: {
          tags,
          summary:
            'Create an order (SUBSCRIPTION, CREDIT_TOP_UP or ONE_TIME_PRODUCT) and its finalized invoice',
          body: CreateOrderBody,
          response: { 201: CreatedOrderSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { order, invoice } = await createOrder(
          deps.db,
          principalOf(request),
          request.body,
          deps.clock,
        )
        return reply.code(201).send({
          ...toOrderResponse(order),
          invoice: toInvoiceResponse(invoice.invoice, invoice.lines),
        })
      },
    )
    app.get(
      '/orders',
      {
        config: { roles: ['admin', 'user'] },
        schema: {
          tags,
          summary: "List orders (a customer token sees only its customer's)",
          querystring: OrderListQuery,
          response: { 200: PaginatedSchema(OrderSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'amount'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listOrders(
          deps.db,
          accessOf(principalOf(request)),
          { status: query.status, type: query.type, customerId: query.customer_id },
          list,
        )
        return paginated(items.map(toOrderResponse), total, list.page)
      },
    )
    app.get(
      '/orders/:id',
      {
        config: { roles: ['admin', 'user'] },
        schema: {
          tags,
          summary: 'Retrieve an order',
          params: IdParams,
          response: { 200: OrderSchema, ...errors },
        },
      },
      async (request) =>
        toOrderResponse(await getOrder(deps.db, accessOf(principalOf(request)), request.params.id)),
    )
  }
}
