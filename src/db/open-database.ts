import type { Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import { createDbClient, type DbClient } from './client.ts'
import { ensureEmbeddedPostgres } from './embedded-postgres.ts'

export interface OpenDatabase extends DbClient {
  url: string
  embedded: boolean
  /** Ends the pool, then stops embedded PostgreSQL if this process started it. */
  shutdown(): Promise<void>
}

/**
 * Connects to `DATABASE_URL`, or to the embedded PostgreSQL under the data dir
 * (starting it when no other payrail process already has).
 */
export async function openDatabase(
  config: Config,
  logger: Logger,
  options: { maxConnections?: number } = {},
): Promise<OpenDatabase> {
  const embedded = config.databaseUrl
    ? undefined
    : await ensureEmbeddedPostgres({ dataDir: config.dataDir, logger })
  const url = config.databaseUrl ?? embedded?.url
  if (!url) throw new Error('No database URL')
  const client = createDbClient(url, {
    max: options.maxConnections,
    onError: (error) => logger.warn({ err: error }, 'database connection failed'),
    transactionPooler: config.databasePooler === 'transaction',
  })
  return {
    ...client,
    url,
    embedded: embedded !== undefined,
    async shutdown() {
      await client.close()
      await embedded?.stop()
    },
  }
}
