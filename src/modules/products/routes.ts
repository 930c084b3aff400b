import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { IdParams } from '../../http/schema-types.ts'
import {
  CreateProductBody,
  ProductListQuery,
  ProductSchema,
  toProductResponse,
  UpdateProductBody,
} from './schemas.ts'
import { createProduct, getProduct, listProducts, updateProduct } from './service.ts'

const tags = ['Products']
const errors = { '4xx': ErrorResponse }

export function productRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.post(
      '/products',
      {
        schema: {
          tags,
          summary: 'Create a product with its prices',
          body: CreateProductBody,
          response: { 201: ProductSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { product, prices } = await createProduct(
          deps.db,
          principalOf(request),
          request.body,
          deps.clock,
        )
        return reply.code(201).send(toProductResponse(product, prices))
      },
    )
    app.get(
      '/products',
      {
        schema: {
          tags,
          summary: 'List products',
          querystring: ProductListQuery,
          response: { 200: PaginatedSchema(ProductSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'name'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listProducts(
          deps.db,
          principalOf(request),
          { type: query.type, active: query.active },
          list,
        )
        return paginated(
          items.map((p) => toProductResponse(p.product, p.prices)),
          total,
          list.page,
        )
      },
    )
    app.get(
      '/products/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve a product',
          params: IdParams,
          response: { 200: ProductSchema, ...errors },
        },
      },
      async (request) => {
        const { product, prices } = await getProduct(
          deps.db,
          principalOf(request),
          request.params.id,
        )
        return toProductResponse(product, prices)
      },
    )
    app.patch(
      '/products/:id',
      {
        schema: {
          tags,
          summary: 'Update a product; prices are immutable, so add new ones or deactivate old ones',
          params: IdParams,
          body: UpdateProductBody,
          response: { 200: ProductSchema, ...errors },
        },
      },
      async (request) => {
        const { product, prices } = await updateProduct(
          deps.db,
          principalOf(request),
          request.params.id,
          request.body,
          deps.clock,
        )
        return toProductResponse(product, prices)
      },
    )
  }
}
