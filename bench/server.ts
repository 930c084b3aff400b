import { type ChildProcess, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'

export interface BenchServer {
  url: string
  pid: number
  /** Highest resident memory seen so far (MB), sampled every 200 ms. */
  rssPeakMb(): number
  resetRssPeak(): void
  stop(): Promise<void>
}

/** Starts `payrail serve` as its own process, so the load generator and the server do not share an event loop. */
export async function startServer(
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<BenchServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, path.resolve('bin/payrail.js'), 'serve', '--port', '0', '--no-worker'],
    {
      env: { ...process.env, LOG_LEVEL: 'warn', NODE_ENV: 'production', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000)
    child.stdout?.on('data', (chunk: Buffer) => {
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
  const sampler = setInterval(async () => {
    const mb = await rssMb(pid)
    if (mb > peak) peak = mb
  }, 200)
  return {
    url,
    pid,
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

async function rssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
    return kb / 1024
  } catch {
    return 0
  }
}
