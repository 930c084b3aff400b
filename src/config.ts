import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** `PAYRAIL_DATABASE_POOLER`: none, or a pooler (PgBouncer) in session or transaction mode. */
export const DATABASE_POOLERS = ['none', 'session', 'transaction'] as const
export type DatabasePooler = (typeof DATABASE_POOLERS)[number]

export interface Config {
  port: number
  host: string
  /** External PostgreSQL; `undefined` means the embedded one under `dataDir/pg`. */
  databaseUrl: string | undefined
  /** What stands between Payrail and `databaseUrl`: `transaction` is a pooler in transaction mode. */
  databasePooler: DatabasePooler
  dataDir: string
  /** 32 bytes, or `undefined` when it is to be generated into the data dir (development only). */
  secretKey: Buffer | undefined
  publicUrl: string
  production: boolean
  logLevel: LogLevel
}

export class ConfigError extends Error {
  readonly problems: string[]

  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export interface ConfigOverrides {
  port?: number | undefined
  host?: string | undefined
}

/**
 * Reads Payrail's configuration from environment variables and fails fast,
 * listing every bad value at once.
 *
 * @example
 * const config = loadConfig(process.env, { port: 9000 })
 */
export function loadConfig(env: NodeJS.ProcessEnv, overrides: ConfigOverrides = {}): Config {
  const problems: string[] = []
  const production = env.NODE_ENV === 'production'

  const port = overrides.port ?? parsePort(env.PORT, problems)
  const host = overrides.host ?? nonEmpty(env.HOST) ?? '127.0.0.1'

  const databaseUrl = nonEmpty(env.DATABASE_URL)
  if (databaseUrl !== undefined && !isPostgresUrl(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL')
  }

  const databasePooler = nonEmpty(env.PAYRAIL_DATABASE_POOLER) ?? 'none'
  if (!isOneOf(DATABASE_POOLERS, databasePooler)) {
    problems.push(`PAYRAIL_DATABASE_POOLER must be one of ${DATABASE_POOLERS.join(', ')}`)
  } else if (databasePooler !== 'none' && databaseUrl === undefined) {
    // The embedded database is Payrail's own, reached directly: a pooler there is a mistake
    // in the environment (DATABASE_URL lost on the way, most likely), not a setting.
    problems.push(
      'PAYRAIL_DATABASE_POOLER needs DATABASE_URL: the embedded PostgreSQL has no pooler',
    )
  }

  const dataDir = path.resolve(nonEmpty(env.PAYRAIL_DATA_DIR) ?? 'data')

  let secretKey: Buffer | undefined
  const rawSecret = nonEmpty(env.PAYRAIL_SECRET_KEY)
  if (rawSecret !== undefined) {
    secretKey = parseSecretKey(rawSecret)
    if (secretKey === undefined) {
      problems.push('PAYRAIL_SECRET_KEY must be 32 bytes, as 64 hex characters or base64')
    }
  } else if (production) {
    problems.push('PAYRAIL_SECRET_KEY is required when NODE_ENV=production')
  }

  const givenPublicUrl = nonEmpty(env.PAYRAIL_PUBLIC_URL)
  const publicUrl = givenPublicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`
  // Derived from HOST when not given: a HOST that makes no URL is HOST's problem, named so.
  if (!isHttpUrl(publicUrl))
    problems.push(
      givenPublicUrl === undefined
        ? `HOST must be a host name or an IP address, got '${host}'`
        : 'PAYRAIL_PUBLIC_URL must be an http:// or https:// URL',
    )

  const logLevel = nonEmpty(env.LOG_LEVEL) ?? 'info'
  if (!isOneOf(LOG_LEVELS, logLevel))
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`)

  if (
    problems.length > 0 ||
    !isOneOf(LOG_LEVELS, logLevel) ||
    !isOneOf(DATABASE_POOLERS, databasePooler)
  )
    throw new ConfigError(problems)
  return {
    port,
    host,
    databaseUrl,
    databasePooler,
    dataDir,
    secretKey,
    publicUrl: publicUrl.replace(/\/+$/, ''),
    production,
    logLevel,
  }
}

/**
 * The public URL once the server listens: derived from `HOST` and a `PORT` of 0 (any free
 * port), it names port 0, which no link can reach, until the port the system chose is known.
 * A URL given in `PAYRAIL_PUBLIC_URL` names its own port and is kept.
 */
export function onListeningPort(publicUrl: string, port: number): string {
  const url = new URL(publicUrl)
  if (url.port !== '0') return publicUrl
  url.port = String(port)
  return url.href.replace(/\/+$/, '')
}

/**
 * The key that encrypts secrets at rest: the configured one, or in development
 * one generated once into `dataDir/secret.key` and reused after.
 */
export async function resolveSecretKey(config: Config): Promise<Buffer> {
  if (config.secretKey) return config.secretKey
  const file = path.join(config.dataDir, 'secret.key')
  try {
    const existing = parseSecretKey((await readFile(file, 'utf8')).trim())
    if (existing) return existing
    throw new ConfigError([
      `${file} does not hold a 32-byte key; remove it or set PAYRAIL_SECRET_KEY`,
    ])
  } catch (error) {
    if (!isMissingFile(error)) throw error
  }
  await mkdir(config.dataDir, { recursive: true })
  const key = randomBytes(32)
  await writeFile(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' }).catch(
    async (error) => {
      // Another process generated it first: use theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    },
  )
  await chmod(file, 0o600)
  const stored = parseSecretKey((await readFile(file, 'utf8')).trim())
  if (!stored) throw new ConfigError([`${file} does not hold a 32-byte key`])
  return stored
}

export function parseSecretKey(raw: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(raw)) return Buffer.from(raw, 'hex')
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) {
    const decoded = Buffer.from(
      raw,
      raw.includes('-') || raw.includes('_') ? 'base64url' : 'base64',
    )
    if (decoded.length === 32) return decoded
  }
  return undefined
}

function parsePort(raw: string | undefined, problems: string[]): number {
  const value = nonEmpty(raw)
  if (value === undefined) return 8080
  // Decimal digits only: Number() also reads 0x1F90, 1e3 and 0b1111 as ports.
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push(`PORT must be an integer from 0 to 65535, got '${value}'`)
    return 8080
  }
  return port
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim()
  return trimmed ? trimmed : undefined
}

function isPostgresUrl(value: string): boolean {
  try {
    const url = new URL(value)
    return url.protocol === 'postgres:' || url.protocol === 'postgresql:'
  } catch {
    return false
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value)
    return url.protocol === 'http:' || url.protocol === 'https:'
  } catch {
    return false
  }
}

/** Whether `value` is one of a setting's `values` (`LOG_LEVELS`, `DATABASE_POOLERS`). */
function isOneOf<T extends string>(values: readonly T[], value: string): value is T {
  return (values as readonly string[]).includes(value)
}

function isMissingFile(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT'
}
