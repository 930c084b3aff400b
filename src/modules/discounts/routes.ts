import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { IdParams } from '../../http/schema-types.ts'
import {
  CreateDiscountBody,
  DiscountListQuery,
  DiscountSchema,
  toDiscountResponse,
  UpdateDiscountBody,
} from './schemas.ts'
import { createDiscount, getDiscount, listDiscounts, updateDiscount } from './service.ts'

const tags = ['Discounts']
const errors = { '4xx': ErrorResponse }

export function discountRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    const show = (discount: Parameters<typeof toDiscountResponse>[0]) =>
      toDiscountResponse(discount, deps.clock.now())
    app.post(
      '/discounts',
      {
        schema: {
          tags,
          summary: 'Create a discount code',
          body: CreateDiscountBody,
          response: { 201: DiscountSchema, ...errors },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(
            show(await createDiscount(deps.db, principalOf(request), request.body, deps.clock)),
          ),
    )
    app.get(
      '/discounts',
      {
        schema: {
          tags,
          summary: 'List discount codes',
          querystring: DiscountListQuery,
          response: { 200: PaginatedSchema(DiscountSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'code'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listDiscounts(
          deps.db,
          principalOf(request),
          { active: query.active, code: query.code },
          list,
        )
        return paginated(items.map(show), total, list.page)
      },
    )
    app.get(
      '/discounts/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve a discount code',
          params: IdParams,
          response: { 200: DiscountSchema, ...errors },
        },
      },
      async (request) => show(await getDiscount(deps.db, principalOf(request), request.params.id)),
    )
    app.patch(
      '/discounts/:id',
      {
        schema: {
          tags,
          summary:
            'Update a discount code (activity, limits, expiry, metadata; the code and its value are fixed)',
          params: IdParams,
          body: UpdateDiscountBody,
          response: { 200: DiscountSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await updateDiscount(
            deps.db,
            principalOf(request),
            request.params.id,
            request.body,
            deps.clock,
          ),
        ),
    )
  }
}
