import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import autocannon from 'autocannon'

const run = promisify(execFile)

export interface LoadRequest {
  method: 'GET' | 'POST'
  path: string
  headers: Record<string, string>
  body?: string
}

export interface LoadOptions {
  url: string
  connections: number
  /** Seconds to run. */
  duration: number
  /** Called for each distinct request: the next one (distinct invoices, distinct payments, …). */
  next: () => LoadRequest
  /**
   * How many distinct requests to draw from `next` before the run: wrk cycles
   * through them. 1 for a request that is the same every time.
   */
  distinct: number
}

export interface LoadStats {
  requests: number
  rps: number
  p50_ms: number
  p95_ms: number
  p99_ms: number
  errors: number
  non_2xx: number
  /** The load generator that sent the requests. */
  generator: 'wrk' | 'autocannon'
}

const WRK_SCRIPT = path.resolve(import.meta.dirname, 'wrk-requests.lua')

/**
 * Runs one load from a separate process: wrk when it is installed (C, one thread, so it
 * takes little of the CPU the server and PostgreSQL share), else autocannon in this
 * process. Latency percentiles are exact over every response of the run.
 */
export async function runLoad(options: LoadOptions): Promise<LoadStats> {
  return (await hasWrk()) ? runWrk(options) : runAutocannon(options)
}

let wrkInstalled: Promise<boolean> | undefined
function hasWrk(): Promise<boolean> {
  wrkInstalled ??= run('wrk', ['--version']).then(
    () => true,
    // wrk prints its usage and exits 1 for --version; only a missing binary is ENOENT.
    (error: NodeJS.ErrnoException) => error.code !== 'ENOENT',
  )
  return wrkInstalled
}

async function runWrk(options: LoadOptions): Promise<LoadStats> {
  const dir = await mkdtemp(path.join(tmpdir(), 'payrail-load-'))
  try {
    const file = path.join(dir, 'requests.tsv')
    const lines: string[] = []
    for (let i = 0; i < options.distinct; i++) lines.push(requestLine(options.next()))
    await writeFile(file, `${lines.join('\n')}\n`)
    const threads = 1
    const { stdout } = await run(
      'wrk',
      [
        `-t${threads}`,
        `-c${options.connections}`,
        `-d${options.duration}s`,
        '--timeout',
        '10s',
        '-s',
        WRK_SCRIPT,
        options.url,
        '--',
        file,
        String(threads),
      ],
      { maxBuffer: 1 << 24 },
    )
    const json = stdout.split('\n').find((line) => line.startsWith('{"requests"'))
    if (!json) throw new Error(`wrk printed no result:\n${stdout}`)
    const r = JSON.parse(json) as Record<string, number>
    const value = (key: string) => r[key] ?? 0
    const seconds = value('duration_us') / 1e6 || 1
    return {
      requests: value('requests'),
      rps: round(value('requests') / seconds),
      p50_ms: round(value('p50_us') / 1000),
      p95_ms: round(value('p95_us') / 1000),
      p99_ms: round(value('p99_us') / 1000),
      errors: value('connect') + value('read') + value('write') + value('timeout'),
      non_2xx: value('non_2xx'),
      generator: 'wrk',
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function requestLine(request: LoadRequest): string {
  const headers = Object.entries(request.headers)
    .map(([name, value]) => `${name}: ${value}`)
    .join('\x1f')
  const body = request.body ?? ''
  if (/[\t\n]/.test(body) || /[\t\n]/.test(request.path))
    throw new Error('a load request may not contain tabs or newlines')
  return `${request.method}\t${request.path}\t${headers}\t${body}`
}

function runAutocannon(options: LoadOptions): Promise<LoadStats> {
  const latencies: number[] = []
  const prepared = Array.from({ length: options.distinct }, () => options.next())
  let index = 0
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        pipelining: 1,
        duration: options.duration,
        requests: [
          {
            setupRequest: (request) => {
              const next = prepared[index++ % prepared.length] ?? options.next()
              return { ...request, ...next }
            },
          },
        ],
      },
      (error, result) => {
        if (error) return reject(error)
        const sorted = latencies.sort((a, b) => a - b)
        const seconds = result.duration > 0 ? result.duration : 1
        resolve({
          requests: sorted.length,
          rps: round(sorted.length / seconds),
          p50_ms: percentile(sorted, 50),
          p95_ms: percentile(sorted, 95),
          p99_ms: percentile(sorted, 99),
          errors: result.errors + result.timeouts,
          non_2xx: result.non2xx,
          generator: 'autocannon',
        })
      },
    )
    instance.on('response', (_client, _statusCode, _bytes, responseTime) => {
      latencies.push(responseTime)
    })
  })
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  return round(sorted[Math.max(0, index)] ?? 0)
}

export function round(value: number): number {
  return Math.round(value * 100) / 100
}
