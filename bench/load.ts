import autocannon from 'autocannon'

export interface LoadRequest {
  method: 'GET' | 'POST'
  path: string
  headers: Record<string, string>
  body?: string
}

export interface LoadOptions {
  url: string
  connections: number
  /** Seconds to run, or a fixed number of requests with `amount`. */
  duration?: number
  amount?: number
  /** Called for every request: return the next one (distinct invoices, distinct payments, …). */
  next: () => LoadRequest
}

export interface LoadStats {
  requests: number
  rps: number
  p50_ms: number
  p95_ms: number
  p99_ms: number
  errors: number
  non_2xx: number
  statuses: Record<string, number>
}

/**
 * Runs one load with autocannon and measures every response time itself, so
 * p50/p95/p99 are exact percentiles of this run (autocannon's own summary has no p95).
 */
export function runLoad(options: LoadOptions): Promise<LoadStats> {
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        pipelining: 1,
        ...(options.amount ? { amount: options.amount } : { duration: options.duration ?? 10 }),
        requests: [
          {
            setupRequest: (request) => {
              const next = options.next()
              return {
                ...request,
                method: next.method,
                path: next.path,
                headers: next.headers,
                body: next.body,
              }
            },
          },
        ],
      },
      (error, result) => {
        if (error) return reject(error)
        const sorted = latencies.sort((a, b) => a - b)
        const seconds = result.duration > 0 ? result.duration : 1
        const total = sorted.length
        resolve({
          requests: total,
          rps: round(total / seconds),
          p50_ms: percentile(sorted, 50),
          p95_ms: percentile(sorted, 95),
          p99_ms: percentile(sorted, 99),
          errors: result.errors + result.timeouts,
          non_2xx: result.non2xx,
          statuses,
        })
      },
    )
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      latencies.push(responseTime)
      statuses[String(statusCode)] = (statuses[String(statusCode)] ?? 0) + 1
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
