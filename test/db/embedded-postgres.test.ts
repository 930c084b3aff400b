import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { afterAll, describe, expect, test } from 'vitest'
import { ensureEmbeddedPostgres } from '../../src/db/embedded-postgres.ts'
import { createLogger } from '../../src/logger.ts'

const logger = createLogger('silent')
const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

async function query(url: string, text: string) {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

/** A connection held open, as another process's pool holds one. */
/**
 * A connection as another process's: the URL names this process (`application_name`), and a
 * stop does not count its own process's connections as another user's.
 */
async function connected(url: string) {
  const client = new pg.Client({
    connectionString: url.replace(/application_name=[^&]*/, 'application_name=another-process'),
  })
  client.on('error', () => undefined)
  await client.connect()
  return client
}

describe('embedded PostgreSQL', () => {
  test('one server per data dir: the second caller connects to it, the last one out stops it, data persists', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'payrail-embedded-'))
    dirs.push(dataDir)

    const first = await ensureEmbeddedPostgres({ dataDir, logger })
    expect(first.startedHere).toBe(true)
    await query(first.url, 'create table kept (v int); insert into kept values (42)')

    // The second caller ends while the first still uses the server: it is kept.
    const second = await ensureEmbeddedPostgres({ dataDir, logger })
    expect(second.startedHere).toBe(false)
    expect(second.url).toBe(first.url)
    const inUse = await connected(first.url)
    await second.stop()
    expect(await query(first.url, 'select v from kept')).toEqual([{ v: 42 }])
    await inUse.end()

    // The starter ends while a later caller uses it (`npm start` beside a one-shot command
    // that started it): kept for that caller, which stops it as the last one out.
    const third = await ensureEmbeddedPostgres({ dataDir, logger })
    expect(third.startedHere).toBe(false)
    const thirdInUse = await connected(third.url)
    await first.stop()
    expect(await query(third.url, 'select v from kept')).toEqual([{ v: 42 }])
    await thirdInUse.end()
    await third.stop()
    await expect(query(first.url, 'select 1')).rejects.toThrow()

    const again = await ensureEmbeddedPostgres({ dataDir, logger })
    try {
      expect(again.startedHere).toBe(true)
      expect(await query(again.url, 'select v from kept')).toEqual([{ v: 42 }])
    } finally {
      await again.stop()
    }
  }, 120_000)
  test("this process's own connections still open (a command stopped mid-query) do not keep the server it started", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'payrail-embedded-'))
    dirs.push(dataDir)
    const started = await ensureEmbeddedPostgres({ dataDir, logger })
    expect(started.startedHere).toBe(true)
    const own = new pg.Client({ connectionString: started.url })
    own.on('error', () => undefined)
    await own.connect()
    await started.stop()
    await expect(query(started.url, 'select 1')).rejects.toThrow()
    await own.end().catch(() => undefined)
  }, 120_000)
})
