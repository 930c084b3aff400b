import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { createDbClient } from '../src/db/client.ts'
import { ensureEmbeddedPostgres } from '../src/db/embedded-postgres.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { createLogger } from '../src/logger.ts'
import {
  createEmptyDatabase,
  dropDatabases,
  newRunId,
  testDatabasePrefix,
} from './test-database.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string
    templateDatabase: string
    runId: string
  }
}

/**
 * Once per run: a PostgreSQL server (`TEST_DATABASE_URL`, or an embedded one in a
 * temp dir) and a migrated template database that each test file copies.
 */
export default async function setup(project: TestProject) {
  const logger = createLogger('warn', 'stderr')
  const runId = newRunId()
  const prefix = testDatabasePrefix(runId)
  let tempDir: string | undefined
  let stopEmbedded: (() => Promise<void>) | undefined
  let serverUrl = process.env.TEST_DATABASE_URL
  if (!serverUrl) {
    tempDir = await mkdtemp(path.join(tmpdir(), 'payrail-test-'))
    await chmod(tempDir, 0o755)
    const embedded = await ensureEmbeddedPostgres({ dataDir: tempDir, logger })
    serverUrl = embedded.serverUrl
    stopEmbedded = embedded.stop
  }

  const templateDatabase = `${prefix}template`
  const templateUrl = await createEmptyDatabase(serverUrl, templateDatabase)
  const client = createDbClient(templateUrl, { max: 2 })
  try {
    await migrateToLatest(client.db, templateUrl)
  } finally {
    await client.close()
  }

  project.provide('serverUrl', serverUrl)
  project.provide('templateDatabase', templateDatabase)
  project.provide('runId', runId)

  return async () => {
    await dropDatabases(serverUrl, prefix)
    await stopEmbedded?.()
    if (tempDir) await rm(tempDir, { recursive: true, force: true })
  }
}
