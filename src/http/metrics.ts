import cluster from 'node:cluster'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, collectDefaultMetrics, Histogram, Registry } from 'prom-client'

/**
 * Prometheus text at `GET /metrics`: process metrics plus a request-duration
 * histogram labelled by route pattern (not raw URL, to keep cardinality bounded).
 */
export function registerMetrics(app: FastifyInstance): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'payrail_' })
  const duration = new Histogram({
    name: 'payrail_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  })

  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    )
  })

  // An HTTP process of `serve --workers N` answers for the whole server: the primary gathers
  // every process's metrics (`clusterMetrics`). Each process's own would make the counters
  // Prometheus scrapes jump between processes and seem to reset.
  const inCluster = cluster.isWorker && process.send !== undefined
  if (inCluster) {
    AggregatorRegistry.setRegistries([registry])
    // Made once in the process, it answers the primary's requests for this registry.
    if (!answeringPrimary) {
      void new AggregatorRegistry()
      answeringPrimary = true
    }
  }
  app.get(
    '/metrics',
    { config: { auth: false }, schema: { hide: true } },
    async (request, reply) => {
      reply.type(registry.contentType)
      if (!inCluster) return registry.metrics()
      try {
        return await askPrimary()
      } catch (error) {
        request.log.warn(
          { err: error },
          "the server's metrics could not be gathered; this process's",
        )
        return registry.metrics()
      }
    },
  )
  return registry
}

/** What an HTTP process asks its primary, and the answer: the server's metrics, as text. */
export type MetricsMessage =
  | { type: 'metrics_request'; id: number }
  | { type: 'metrics'; id: number; text: string | null }

let answeringPrimary = false
const asked = new Map<number, (text: string | null) => void>()
let lastAsked = 0

function askPrimary(): Promise<string> {
  if (lastAsked === 0)
    process.on('message', (message: MetricsMessage) => {
      if (message?.type === 'metrics') asked.get(message.id)?.(message.text)
    })
  const id = ++lastAsked
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      asked.delete(id)
      reject(new Error('the primary did not answer in 5 s'))
    }, 5_000)
    asked.set(id, (text) => {
      clearTimeout(timer)
      asked.delete(id)
      if (text === null) reject(new Error('the primary could not gather them'))
      else resolve(text)
    })
    const message: MetricsMessage = { type: 'metrics_request', id }
    process.send?.(message)
  })
}

/**
 * In a `serve --workers N` primary: answers its HTTP processes' `/metrics` with every
 * process's metrics aggregated (counters summed).
 */
export function serveClusterMetrics(): (
  worker: {
    send(message: MetricsMessage): unknown
  },
  message: unknown,
) => void {
  const aggregator = new AggregatorRegistry()
  return (worker, message) => {
    const request = message as MetricsMessage | undefined
    if (request?.type !== 'metrics_request') return
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: 'metrics', id: request.id, text }),
      // The asker then answers with its own, rather than nothing.
      () => worker.send({ type: 'metrics', id: request.id, text: null }),
    )
  }
}
