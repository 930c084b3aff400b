import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { handleCheckoutReturn } from './service.ts'

const Query = Type.Object({
  payment_id: Type.Optional(Type.String({ maxLength: 100 })),
  'cko-payment-id': Type.Optional(Type.String({ maxLength: 100 })),
  'cko-session-id': Type.Optional(Type.String({ maxLength: 100 })),
  'cko-payment-session-id': Type.Optional(Type.String({ maxLength: 100 })),
})

/** `GET /v1/checkout/success` and `/failure`: verify with Checkout.com, then send the customer on. */
export function checkoutRedirectRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    for (const outcome of ['success', 'failure'] as const) {
      app.get(
        `/checkout/${outcome}`,
        {
          config: { auth: false },
          schema: {
            tags: ['Checkout.com'],
            summary: `Return from Checkout.com's hosted page (${outcome})`,
            querystring: Query,
            // A redirect to the payment's own page (or Payrail's neutral one), never a body.
            response: {
              303: Type.Null({ description: "Redirect (Location) to the payment's page" }),
            },
          },
        },
        async (request, reply) => {
          const target = await handleCheckoutReturn(deps, outcome, {
            paymentId: request.query.payment_id,
            ckoPaymentId: request.query['cko-payment-id'],
            ckoSessionId: request.query['cko-session-id'],
            ckoPaymentSessionId: request.query['cko-payment-session-id'],
          })
          return reply.redirect(target, 303)
        },
      )
    }
  }
}
