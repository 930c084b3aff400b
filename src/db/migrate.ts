import { runMigrations as runWorkerMigrations, type Logger as WorkerLogger } from 'graphile-worker'
import { type Migration, type MigrationProvider, Migrator } from 'kysely'
import pg from 'pg'
import type { Db } from './client.ts'
import * as m0001 from './migrations/0001-foundation.ts'
import * as m0002 from './migrations/0002-billing.ts'
import * as m0003 from './migrations/0003-payments.ts'
import * as m0004 from './migrations/0004-stripe-replicas.ts'
import * as m0005 from './migrations/0005-payment-invoice-ids.ts'
import * as m0006 from './migrations/0006-payment-daily-counts.ts'
import * as m0007 from './migrations/0007-api-key-notify.ts'
import * as m0008 from './migrations/0008-append-only-foreign-keys.ts'
import * as m0009 from './migrations/0009-invoice-fillfactor.ts'
import * as m0010 from './migrations/0010-idempotency-key-environment.ts'
import * as m0011 from './migrations/0011-idempotency-applied.ts'
import * as m0012 from './migrations/0012-require-row.ts'
import * as m0013 from './migrations/0013-merchant-webhooks.ts'
import * as m0014 from './migrations/0014-webhook-deliveries-no-endpoint-key.ts'
import * as m0015 from './migrations/0015-schedule-quantity-only.ts'
import * as m0016 from './migrations/0016-webhook-secret-rotation.ts'
import * as m0017 from './migrations/0017-stripe-replica-event-time.ts'
import * as m0018 from './migrations/0018-dashboard-signouts.ts'
import * as m0019 from './migrations/0019-webhook-deliveries-enqueue-once.ts'
import * as m0020 from './migrations/0020-schedule-quantity-only-price-of-its-day.ts'

/** Every migration, in order. Imported statically so the list is the same under tsx and bundlers. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-foundation': m0001,
  '0002-billing': m0002,
  '0003-payments': m0003,
  '0004-stripe-replicas': m0004,
  '0005-payment-invoice-ids': m0005,
  '0006-payment-daily-counts': m0006,
  '0007-api-key-notify': m0007,
  '0008-append-only-foreign-keys': m0008,
  '0009-invoice-fillfactor': m0009,
  '0010-idempotency-key-environment': m0010,
  '0011-idempotency-applied': m0011,
  '0012-require-row': m0012,
  '0013-merchant-webhooks': m0013,
  '0014-webhook-deliveries-no-endpoint-key': m0014,
  '0015-schedule-quantity-only': m0015,
  '0016-webhook-secret-rotation': m0016,
  '0017-stripe-replica-event-time': m0017,
  '0018-dashboard-signouts': m0018,
  '0019-webhook-deliveries-enqueue-once': m0019,
  '0020-schedule-quantity-only-price-of-its-day': m0020,
}

const migrationProvider: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
}

/** Arbitrary but fixed: the session advisory lock that serialises migrations across processes. */
const MIGRATION_LOCK_ID = 727_245_001

export interface MigrateResult {
  applied: string[]
}

/**
 * Brings the database schema up to date: Payrail's tables, then graphile-worker's.
 * Two processes starting at once queue on one advisory lock, so the second finds
 * nothing left to do. `afterMigrate` runs under the same lock (bootstrap of the
 * default tenant).
 */
export async function migrateToLatest<T>(
  db: Db,
  connectionString: string,
  options: { workerLogger?: WorkerLogger; afterMigrate?: () => Promise<T> } = {},
): Promise<MigrateResult & { after: T | undefined }> {
  const lock = new pg.Client({ connectionString, application_name: 'payrail-migrate' })
  lock.on('error', () => undefined)
  await lock.connect()
  try {
    await lock.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID])
    const migrator = new Migrator({ db, provider: migrationProvider })
    const { error, results } = await migrator.migrateToLatest()
    if (error) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName
      throw new Error(`Migration ${failed ?? '(unknown)'} failed: ${String(error)}`, {
        cause: error,
      })
    }
    await runWorkerMigrations({ connectionString, logger: options.workerLogger })
    const after = options.afterMigrate ? await options.afterMigrate() : undefined
    return { applied: (results ?? []).map((r) => r.migrationName), after }
  } finally {
    await lock.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined)
    await lock.end().catch(() => undefined)
  }
}
