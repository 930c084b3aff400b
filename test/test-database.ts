import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** Names every database this test run creates, so teardown can find them all. */
export function testDatabasePrefix(runId: string): string {
  return `payrail_t_${runId}_`
}

export function newRunId(): string {
  return `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`
}

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl)
  url.pathname = `/${database}`
  return url.toString()
}

export async function withServer<T>(
  serverUrl: string,
  run: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return await run(client)
  } finally {
    await client.end()
  }
}

/**
 * A new database copied from the migrated template: each test file gets its own,
 * so files run in parallel without seeing each other's rows.
 */
export async function createDatabaseFromTemplate(
  serverUrl: string,
  template: string,
  name: string,
): Promise<string> {
  await withServer(serverUrl, async (client) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(
          `create database ${client.escapeIdentifier(name)} template ${client.escapeIdentifier(template)}`,
        )
        return
      } catch (error) {
        // 55006: the template is briefly in use by another CREATE DATABASE; wait and retry.
        if ((error as { code?: string }).code !== '55006' || attempt > 50) throw error
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100))
      }
    }
  })
  return databaseUrl(serverUrl, name)
}

export async function createEmptyDatabase(serverUrl: string, name: string): Promise<string> {
  await withServer(serverUrl, (client) =>
    client.query(`create database ${client.escapeIdentifier(name)}`),
  )
  return databaseUrl(serverUrl, name)
}

export async function dropDatabases(serverUrl: string, namePrefix: string): Promise<void> {
  await withServer(serverUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      'select datname from pg_database where datname like $1',
      [`${namePrefix}%`],
    )
    for (const { datname } of rows) {
      await client.query(`drop database if exists ${client.escapeIdentifier(datname)} with (force)`)
    }
  })
}
