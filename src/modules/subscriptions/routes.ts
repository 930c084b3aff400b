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
import { cancelSubscriptionNow, changeSubscription } from '../payments/flows.ts'
import { causeOf } from '../payments/routes.ts'
import {
  CancelSubscriptionBody,
  SubscriptionListQuery,
  SubscriptionSchema,
  toSubscriptionResponse,
  UpdateSubscriptionBody,
} from './schemas.ts'
import { getSubscription, listSubscriptions } from './service.ts'

const tags = ['Subscriptions']
const errors = { '4xx': ErrorResponse }

export function subscriptionRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    app.get(
      '/subscriptions',
      {
        schema: {
          tags,
          summary: 'List subscriptions',
          querystring: SubscriptionListQuery,
          response: { 200: PaginatedSchema(SubscriptionSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'current_period_end'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listSubscriptions(
          deps.db,
          accessOf(principalOf(request)),
          { status: query.status, customerId: query.customer_id },
          list,
        )
        return paginated(
          items.map((s) => toSubscriptionResponse(s.subscription, s.schedules)),
          total,
          list.page,
        )
      },
    )
    app.get(
      '/subscriptions/:id',
      {
        schema: {
          tags,
          summary: 'Retrieve a subscription',
          params: IdParams,
          response: { 200: SubscriptionSchema, ...errors },
        },
      },
      async (request) => {
        const { subscription, schedules } = await getSubscription(
          deps.db,
          accessOf(principalOf(request)),
          request.params.id,
        )
        return toSubscriptionResponse(subscription, schedules)
      },
    )
    app.patch(
      '/subscriptions/:id',
      {
        schema: {
          tags,
          summary:
            'Update a subscription; a price or quantity change is scheduled for the period end or change_at',
          params: IdParams,
          body: UpdateSubscriptionBody,
          response: { 200: SubscriptionSchema, ...errors },
        },
      },
      async (request) => {
        const { subscription, schedules } = await changeSubscription(
          deps,
          accessOf(principalOf(request)),
          request.params.id,
          request.body,
          causeOf(request),
        )
        return toSubscriptionResponse(subscription, schedules)
      },
    )
    app.post(
      '/subscriptions/:id/cancel',
      {
        schema: {
          tags,
          summary: 'Cancel now, or at the end of the current period with at_period_end',
          params: IdParams,
          body: Type.Optional(CancelSubscriptionBody),
          response: { 200: SubscriptionSchema, ...errors },
        },
      },
      async (request) => {
        const { subscription, schedules } = await cancelSubscriptionNow(
          deps,
          accessOf(principalOf(request)),
          request.params.id,
          request.body?.at_period_end ?? false,
          causeOf(request),
        )
        return toSubscriptionResponse(subscription, schedules)
      },
    )
  }
}
