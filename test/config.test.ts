import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import {
  ConfigError,
  loadConfig,
  onListeningPort,
  parseSecretKey,
  resolveSecretKey,
} from '../src/config.ts'

const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env)
    return []
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
}

describe('loadConfig', () => {
  test('defaults', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      databaseUrl: undefined,
      databasePooler: 'none',
      dataDir: path.resolve('data'),
      secretKey: undefined,
      publicUrl: 'http://127.0.0.1:8080',
      production: false,
      logLevel: 'info',
    })
  })

  test('reads every variable', () => {
    const config = loadConfig({
      PORT: '9000',
      HOST: '0.0.0.0',
      DATABASE_URL: 'postgresql://u@db:5432/payrail',
      PAYRAIL_DATABASE_POOLER: 'transaction',
      PAYRAIL_DATA_DIR: '/var/lib/payrail',
      PAYRAIL_SECRET_KEY: '11'.repeat(32),
      PAYRAIL_PUBLIC_URL: 'https://pay.example.com/',
      LOG_LEVEL: 'debug',
    })
    expect(config).toMatchObject({
      port: 9000,
      host: '0.0.0.0',
      databaseUrl: 'postgresql://u@db:5432/payrail',
      databasePooler: 'transaction',
      dataDir: '/var/lib/payrail',
      publicUrl: 'https://pay.example.com',
      logLevel: 'debug',
    })
    expect(config.secretKey?.length).toBe(32)
  })

  test('command-line overrides win over the environment', () => {
    expect(loadConfig({ PORT: '1' }, { port: 2, host: '::' })).toMatchObject({
      port: 2,
      host: '::',
      publicUrl: 'http://[::]:2',
    })
  })

  test.each([
    [{ PORT: '-1' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ PORT: '80.5' }, /PORT/],
    // Decimal digits only: Number() would read these as 8080, 1000 and 15.
    [{ PORT: '0x1F90' }, /PORT/],
    [{ PORT: '1e3' }, /PORT/],
    [{ PORT: '0b1111' }, /PORT/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL/],
    [{ PAYRAIL_SECRET_KEY: 'short' }, /PAYRAIL_SECRET_KEY must be 32 bytes/],
    [{ PAYRAIL_PUBLIC_URL: 'ftp://x' }, /PAYRAIL_PUBLIC_URL/],
    // The public URL is derived from HOST when not given: the problem is HOST's.
    [{ HOST: '999.1.1.1' }, /^HOST must be a host name or an IP address, got '999\.1\.1\.1'$/],
    [{ HOST: 'localhost:8080' }, /^HOST must be/],
    [{ LOG_LEVEL: 'chatty' }, /LOG_LEVEL/],
    [{ PAYRAIL_DATABASE_POOLER: 'pgbouncer' }, /PAYRAIL_DATABASE_POOLER must be one of/],
    [{ PAYRAIL_DATABASE_POOLER: 'transaction' }, /PAYRAIL_DATABASE_POOLER needs DATABASE_URL/],
    [{ NODE_ENV: 'production' }, /PAYRAIL_SECRET_KEY is required/],
  ])('%j is refused', (env, message) => {
    const problems = problemsOf(env)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(message)
  })

  test('reports all problems at once', () => {
    expect(problemsOf({ PORT: 'x', LOG_LEVEL: 'y', DATABASE_URL: 'z' })).toHaveLength(3)
  })
})

describe('onListeningPort', () => {
  test('a public URL derived from PORT=0 takes the port the server got; a given one is kept', () => {
    const derived = loadConfig({ PORT: '0' }).publicUrl
    expect(onListeningPort(derived, 41234)).toBe('http://127.0.0.1:41234')
    expect(onListeningPort(loadConfig({ PORT: '0', HOST: '::1' }).publicUrl, 41234)).toBe(
      'http://[::1]:41234',
    )
    expect(onListeningPort('https://pay.example.com/base', 41234)).toBe(
      'https://pay.example.com/base',
    )
    expect(onListeningPort('http://127.0.0.1:8080', 41234)).toBe('http://127.0.0.1:8080')
  })
})

describe('secret key', () => {
  test.each([
    ['hex', 'ab'.repeat(32)],
    ['base64', Buffer.alloc(32, 1).toString('base64')],
    ['base64url', Buffer.alloc(32, 250).toString('base64url')],
  ])('parses %s', (_name, raw) => {
    expect(parseSecretKey(raw)?.length).toBe(32)
  })

  test('is generated once into the data dir in development and reused', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'payrail-config-'))
    dirs.push(dataDir)
    const config = loadConfig({ PAYRAIL_DATA_DIR: dataDir })
    const first = await resolveSecretKey(config)
    const second = await resolveSecretKey(config)
    expect(first.equals(second)).toBe(true)
    const file = path.join(dataDir, 'secret.key')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await readFile(file, 'utf8')).trim()).toBe(first.toString('hex'))
  })

  test('a corrupt key file is an error, not silently replaced', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'payrail-config-'))
    dirs.push(dataDir)
    await writeFile(path.join(dataDir, 'secret.key'), 'nope')
    await expect(resolveSecretKey(loadConfig({ PAYRAIL_DATA_DIR: dataDir }))).rejects.toThrow(
      ConfigError,
    )
  })
})
