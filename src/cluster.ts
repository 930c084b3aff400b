import cluster, { type Worker } from 'node:cluster'
import { type Config, onListeningPort } from './config.ts'
import { openDatabase } from './db/open-database.ts'
import { serveClusterMetrics } from './http/metrics.ts'
import { type RunningWorker, startWorker } from './jobs/worker.ts'
import type { Logger } from './logger.ts'
import { migrateAndBootstrap, processDeps, type RunningServer, startServer } from './server.ts'

/** Messages between the primary and its HTTP processes. */
type ClusterMessage = { type: 'listening'; url: string } | { type: 'shutdown' }

const STOP_TIMEOUT_MS = 15_000

export interface RunningCluster extends Pick<RunningServer, 'url' | 'close'> {}

/**
 * `payrail serve --workers N`: N HTTP processes sharing one port (node:cluster), so
 * one box's cores all serve requests. This primary process opens the database,
 * migrates and bootstraps it, and runs the background jobs; each HTTP process is a
 * stateless `serve --no-worker` that connects to the same database. An HTTP process
 * that dies is replaced. Shutdown: HTTP processes, jobs, pools, embedded PostgreSQL.
 */
export async function startCluster(
  config: Config,
  logger: Logger,
  options: { workers: number; worker: boolean; onBootstrap?: (key: string) => void },
): Promise<RunningCluster> {
  const database = await openDatabase(config, logger)
  let runner: RunningWorker | undefined
  let stopping = false
  const workers = new Set<Worker>()
  // Ctrl-C reaches every process of the group: HTTP processes that exit now are not replaced.
  const onSignal = () => {
    stopping = true
  }
  process.prependListener('SIGINT', onSignal)
  process.prependListener('SIGTERM', onSignal)
  const stopWorkers = async () => {
    stopping = true
    await Promise.all([...workers].map((w) => stopWorker(w)))
  }
  const close = async () => {
    await stopWorkers()
    await runner?.stop()
    await database.shutdown()
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
  const answerMetrics = serveClusterMetrics()
  try {
    const { after: bootstrap } = await migrateAndBootstrap(database, logger)
    if (bootstrap) options.onBootstrap?.(bootstrap.key.key)
    const env = { DATABASE_URL: database.url, PAYRAIL_CLUSTER_WORKER: '1' }
    const fork = (): Promise<string> => {
      const worker = cluster.fork(env)
      workers.add(worker)
      let listening = false
      worker.on('exit', (code, signal) => {
        workers.delete(worker)
        // One that never started (bad config, port in use) fails the start instead.
        if (stopping || !listening) return
        logger.error(
          { code, signal, pid: worker.process.pid },
          'HTTP process died; starting another',
        )
        fork().catch((error: unknown) => logger.error({ err: error }, 'could not replace it'))
      })
      worker.on('message', (message: unknown) => answerMetrics(worker, message))
      return new Promise((resolve, reject) => {
        worker.on('message', (message: ClusterMessage) => {
          if (message.type !== 'listening') return
          listening = true
          resolve(message.url)
        })
        worker.once('exit', (code) => reject(new Error(`HTTP process exited with ${code}`)))
      })
    }
    const urls = await Promise.all(Array.from({ length: options.workers }, fork))
    // This process runs the jobs, whose links and sandbox notifications take the public URL:
    // on port 0, the one its HTTP processes share.
    const port = urls[0] ? Number(new URL(urls[0]).port) : 0
    if (port > 0) config.publicUrl = onListeningPort(config.publicUrl, port)
    // The jobs start once the public URL names the port the HTTP processes listen on.
    if (options.worker) {
      const deps = await processDeps(config, database, logger)
      runner = await startWorker(deps, { connectionString: database.url })
    }
    return { url: urls[0] ?? '', close }
  } catch (error) {
    await close().catch((closeError) =>
      logger.error({ err: closeError }, 'shutdown after a failed start failed'),
    )
    throw error
  }
}

async function stopWorker(worker: Worker): Promise<void> {
  if (worker.isDead()) return
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  const message: ClusterMessage = { type: 'shutdown' }
  if (worker.isConnected()) worker.send(message)
  else worker.process.kill('SIGTERM')
  const timer = setTimeout(() => worker.process.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

/** True in an HTTP process that a `serve --workers N` primary started. */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env.PAYRAIL_CLUSTER_WORKER === '1'
}

/**
 * The body of one HTTP process: serves on the shared port (migrations and jobs are
 * the primary's), tells the primary it listens, and stops when told or signalled.
 */
export async function runClusterWorker(config: Config, logger: Logger): Promise<number> {
  // Listened for before the start, so that a stop during it ends the process once started.
  const stop = new Promise<void>((resolve) => {
    process.on('message', (message: ClusterMessage) => {
      if (message.type === 'shutdown') resolve()
    })
    // Ctrl-C reaches the whole process group; the primary stops the rest in order.
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
    process.once('disconnect', () => resolve())
  })
  const server = await startServer(config, logger, { worker: false, migrate: false })
  const listening: ClusterMessage = { type: 'listening', url: server.url }
  process.send?.(listening)
  await stop
  await server.close()
  return 0
}
