import type { FastifyPluginAsync } from 'fastify'
import { page, sendHtml } from './html.ts'

/**
 * Where a hosted checkout sends the customer back when the payment set no
 * `success_url` / `cancel_url` of its own. They show no payment data: the outcome
 * is what the gateway's webhook reports, not what a browser's redirect claims.
 */
export const paymentPages: FastifyPluginAsync = async (app) => {
  const config = { auth: false as const }
  app.get(
    '/pay/:payment_id/complete',
    { config, schema: { hide: true } },
    async (_request, reply) =>
      sendHtml(
        reply,
        200,
        page(
          'Thank you',
          '<div class="ok"><strong>Thank you.</strong> Your payment is being confirmed; you can close this page.</div>',
        ),
      ),
  )
  app.get(
    '/pay/:payment_id/cancelled',
    { config, schema: { hide: true } },
    async (_request, reply) =>
      sendHtml(
        reply,
        200,
        page(
          'Cancelled',
          '<h1>Payment cancelled</h1><p>No money was taken. You can close this page.</p>',
        ),
      ),
  )
}
