import { registerBalanceTransactionRoutes } from './resources/balance-transactions.ts'
import { registerChargeRoutes } from './resources/charges.ts'
import { registerCheckoutSessionRoutes } from './resources/checkout-sessions.ts'
import { registerCustomerRoutes } from './resources/customers.ts'
import { registerEventRoutes } from './resources/event-routes.ts'
import { registerInvoiceRoutes } from './resources/invoices.ts'
import { registerPaymentIntentRoutes } from './resources/payment-intents.ts'
import { registerPaymentMethodRoutes } from './resources/payment-methods.ts'
import { registerPriceRoutes } from './resources/prices.ts'
import { registerProductRoutes } from './resources/products.ts'
import { registerRefundRoutes } from './resources/refunds.ts'
import { registerSubscriptionScheduleRoutes } from './resources/subscription-schedules.ts'
import { registerSubscriptionRoutes } from './resources/subscriptions.ts'
import { Router } from './router.ts'

/** Every `/v1/…` endpoint the emulator answers. */
export function buildApiRouter(): Router {
  const router = new Router()
  registerCustomerRoutes(router)
  registerPaymentMethodRoutes(router)
  registerPaymentIntentRoutes(router)
  registerChargeRoutes(router)
  registerCheckoutSessionRoutes(router)
  registerRefundRoutes(router)
  registerInvoiceRoutes(router)
  registerSubscriptionRoutes(router)
  registerSubscriptionScheduleRoutes(router)
  registerProductRoutes(router)
  registerPriceRoutes(router)
  registerBalanceTransactionRoutes(router)
  registerEventRoutes(router)
  return router
}
