import { type ChildProcess, spawn } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import path from 'node:path'
import { childrenOf, rssMb } from './proc.ts'

export interface BenchServer {
  url: string
  pid: number
  /** The server's processes: `payrail serve` and, with `--workers N`, its HTTP processes. */
  pids(): number[]
  /** Highest resident memory of all its processes together seen so far (MB), sampled every 200 ms. */
  rssPeakMb(): number
  resetRssPeak(): void
  stop(): Promise<void>
}

/** Starts `payrail serve` as its own process, so the load generator and the server do not share an event loop. */
export async function startServer(
  env: Record<string, string>,
  options: { workers?: number; nodeArgs?: string[]; log?: string | undefined } = {},
): Promise<BenchServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      // As `npm start` and the bin's shebang run it (Node's defaults), plus `--profile`'s and `--node-args`'s.
      ...(options.nodeArgs ?? []),
      path.resolve('bin/payrail.js'),
      'serve',
      '--port',
      '0',
      '--no-worker',
      '--workers',
      String(options.workers ?? 1),
    ],
    {
      env: { ...process.env, LOG_LEVEL: 'warn', NODE_ENV: 'production', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      if (options.log) appendFileSync(options.log, chunk)
      output += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(output)
      if (match?.[1]) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${output}`)))
  })
  const pid = child.pid ?? 0
  let peak = 0
  // Its HTTP processes are all up once it listens (one that dies is replaced, and fails the run).
  const processes = [pid, ...childrenOf(pid)]
  const pids = () => processes
  const sampler = setInterval(() => {
    let mb = 0
    for (const p of processes) mb += rssMb(p)
    if (mb > peak) peak = mb
  }, 200)
  return {
    url,
    pid,
    pids,
    rssPeakMb: () => Math.round(peak),
    resetRssPeak: () => {
      peak = 0
    },
    async stop() {
      clearInterval(sampler)
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    },
  }
}
