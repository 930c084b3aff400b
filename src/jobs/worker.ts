import { parseCronItems, type Runner, run, type TaskList } from 'graphile-worker'
import pg from 'pg'
import { endIncompleteAtPeriodEnd } from '../modules/payments/flows.ts'
import { ASK_REFUND_AGAIN, askRefundAgain } from '../modules/payments/refunds.ts'
import type { PaymentDeps } from '../modules/payments/service.ts'
import { renewDueSubscriptions } from '../modules/subscriptions/service.ts'
import { CHARGE_DUE_INVOICES, chargeDueInvoices } from './tasks/charge-due-invoices.ts'
import { deliverMerchantWebhook, MERCHANT_WEBHOOK_TASK } from './tasks/deliver-merchant-webhook.ts'
import { deliverSandboxWebhook, SANDBOX_DELIVERY_TASK } from './tasks/deliver-sandbox-webhook.ts'
import { PRUNE_IDEMPOTENCY_KEYS, pruneIdempotencyKeys } from './tasks/prune-idempotency-keys.ts'
import { RESOLVE_LOST_CHARGES, resolveLostCharges } from './tasks/resolve-lost-charges.ts'
import { markStripeInvoicePaid, STRIPE_PAID_OUT_OF_BAND } from './tasks/stripe-paid-out-of-band.ts'
import {
  SYNC_DEFAULT_PAYMENT_METHOD,
  syncDefaultPaymentMethod,
} from './tasks/sync-default-payment-method.ts'
import {
  WITHDRAW_OVERTAKEN_PAGES,
  withdrawOvertakenPages,
} from './tasks/withdraw-overtaken-pages.ts'
import { workerLoggerFrom } from './worker-logger.ts'

export const RENEW_SUBSCRIPTIONS = 'renew_subscriptions'

export type WorkerDeps = PaymentDeps

/** Every job Payrail runs, by graphile-worker task identifier. */
export function createTaskList(deps: WorkerDeps): TaskList {
  return {
    [PRUNE_IDEMPOTENCY_KEYS]: async (_payload, helpers) => {
      const deleted = await pruneIdempotencyKeys(deps.db, deps.clock)
      helpers.logger.info(`pruned ${deleted} expired idempotency records`)
    },
    [CHARGE_DUE_INVOICES]: async (_payload, helpers) => {
      const { charged, failed } = await chargeDueInvoices(deps)
      if (charged + failed > 0)
        helpers.logger.info(`automatic charges: ${charged} succeeded, ${failed} did not`)
    },
    [RESOLVE_LOST_CHARGES]: async (_payload, helpers) => {
      const { resolved, left } = await resolveLostCharges(deps)
      if (resolved + left > 0)
        helpers.logger.info(`lost card charges: ${resolved} settled, ${left} left for later`)
    },
    [WITHDRAW_OVERTAKEN_PAGES]: async (_payload, helpers) => {
      const { withdrawn, left } = await withdrawOvertakenPages(deps)
      if (withdrawn + left > 0)
        helpers.logger.info(
          `pages of invoices paid another way: ${withdrawn} withdrawn, ${left} left`,
        )
    },
    [SANDBOX_DELIVERY_TASK]: async (payload) => deliverSandboxWebhook(deps, payload),
    [MERCHANT_WEBHOOK_TASK]: async (payload, helpers) => {
      const outcome = await deliverMerchantWebhook(deps, payload, helpers.job)
      helpers.logger.info(`merchant webhook: ${outcome}`)
    },
    [STRIPE_PAID_OUT_OF_BAND]: async (payload, helpers) => {
      helpers.logger.info(`stripe invoice: ${await markStripeInvoicePaid(deps, payload)}`)
    },
    [SYNC_DEFAULT_PAYMENT_METHOD]: async (payload, helpers) => {
      helpers.logger.info(
        `default payment method: ${await syncDefaultPaymentMethod(deps, payload)}`,
      )
    },
    [ASK_REFUND_AGAIN]: async (payload, helpers) => {
      helpers.logger.info(`refund asked again: ${await askRefundAgain(deps, payload)}`)
    },
    [RENEW_SUBSCRIPTIONS]: async (_payload, helpers) => {
      const renewed = await renewDueSubscriptions(deps)
      if (renewed > 0) helpers.logger.info(`renewed or ended ${renewed} subscription periods`)
      const ended = await endIncompleteAtPeriodEnd(deps)
      if (ended > 0) helpers.logger.info(`ended ${ended} incomplete subscriptions at period end`)
    },
  }
}

export const CRON_ITEMS = parseCronItems([
  // Hourly; backfill one run so a worker that was down catches up on start.
  {
    task: PRUNE_IDEMPOTENCY_KEYS,
    match: '17 * * * *',
    options: { backfillPeriod: 60 * 60 * 1000 },
    identifier: PRUNE_IDEMPOTENCY_KEYS,
  },
  {
    task: RESOLVE_LOST_CHARGES,
    match: '41 * * * *',
    options: { backfillPeriod: 60 * 60 * 1000 },
    identifier: RESOLVE_LOST_CHARGES,
  },
  // Every minute; each run takes everything due, so a missed minute needs no backfill.
  { task: RENEW_SUBSCRIPTIONS, match: '* * * * *', identifier: RENEW_SUBSCRIPTIONS },
  { task: CHARGE_DUE_INVOICES, match: '* * * * *', identifier: CHARGE_DUE_INVOICES },
  // One run at a time, and one waiting at most: a run slowed by a provider is not overlapped.
  {
    task: WITHDRAW_OVERTAKEN_PAGES,
    match: '* * * * *',
    identifier: WITHDRAW_OVERTAKEN_PAGES,
    options: { queueName: WITHDRAW_OVERTAKEN_PAGES, jobKey: WITHDRAW_OVERTAKEN_PAGES },
  },
])

export interface StartWorkerOptions {
  connectionString: string
  concurrency?: number
}

export interface RunningWorker {
  runner: Runner
  /** Stops taking jobs, waits for running ones, then ends the worker's own pool. */
  stop(): Promise<void>
}

/**
 * Starts graphile-worker on Payrail's database: in-process with `serve`, alone
 * with `payrail worker`. The worker gets a pool of its own with `error` listeners on
 * the pool and on each connection: when PostgreSQL goes away first (embedded
 * shutdown, failover), a dead connection, idle or busy, is logged instead of
 * crashing the process. Stop it before
 * ending Payrail's pools.
 */
export async function startWorker(
  deps: WorkerDeps,
  options: StartWorkerOptions,
): Promise<RunningWorker> {
  const concurrency = options.concurrency ?? 4
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: concurrency + 2,
    application_name: 'payrail-worker',
  })
  pool.on('error', (error) =>
    deps.logger.warn({ err: error, component: 'worker' }, 'idle worker connection failed'),
  )
  // A connection that fails while checked out fails its query; without a listener, its
  // client's 'error' event would also crash the process.
  pool.on('connect', (client) => {
    client.on('error', (error) =>
      deps.logger.warn({ err: error, component: 'worker' }, 'worker connection failed'),
    )
  })
  const runner = await run({
    pgPool: pool,
    concurrency,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: workerLoggerFrom(deps.logger),
    taskList: createTaskList(deps),
    parsedCronItems: CRON_ITEMS,
  })
  let stopped: Promise<void> | undefined
  return {
    runner,
    stop() {
      stopped ??= runner.stop().then(() => pool.end())
      return stopped
    },
  }
}
