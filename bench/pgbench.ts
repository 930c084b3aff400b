import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface PgbenchResult {
  tps: number
  latency_avg_ms: number
  clients: number
}

/**
 * The database's own ceiling on this machine: pgbench's TPC-B-like transaction
 * (5 statements, 3 updates) with the same client count as the HTTP load, on the
 * same server. The scale factor equals the client count, as pgbench's manual
 * asks: at scale 1 every client updates the one branch row and they queue on its
 * lock, which would understate the ceiling. `undefined` when pgbench is not installed.
 */
export async function runPgbench(
  url: string,
  clients: number,
  seconds: number,
): Promise<PgbenchResult | undefined> {
  try {
    await run('pgbench', ['-i', '-s', String(clients), '-q', url], { maxBuffer: 1 << 24 })
    const { stdout } = await run(
      'pgbench',
      ['-c', String(clients), '-j', '2', '-T', String(seconds), '-n', url],
      {
        maxBuffer: 1 << 24,
      },
    )
    const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0)
    const latency = Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1] ?? 0)
    return { tps: Math.round(tps), latency_avg_ms: latency, clients }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
