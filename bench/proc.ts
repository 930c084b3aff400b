import { readdir, readFile } from 'node:fs/promises'

const CLOCK_TICKS_PER_SECOND = 100

/** CPU seconds (user + system) a process has used so far, from /proc; 0 where /proc is absent. */
export async function processCpuSeconds(pid: number): Promise<number> {
  try {
    return ticksToSeconds(await readFile(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return 0
  }
}

/**
 * CPU seconds used so far by every PostgreSQL process of this machine (postmaster,
 * backends, WAL writer, checkpointer…), including backends that have exited: the
 * postmaster reaps them, so their time is in its children's total.
 */
export async function postgresCpuSeconds(): Promise<number> {
  let total = 0
  for (const { stat } of await processStats()) {
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    if (name === 'postgres' || name.startsWith('postgres:'))
      total += ticksToSeconds(stat) + reapedChildrenSeconds(stat)
  }
  return total
}

/** Direct children of `pid`, from each process's parent id in /proc. */
export async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = []
  for (const { pid: child, stat } of await processStats()) {
    if (Number(statFields(stat)[1]) === pid) out.push(child)
  }
  return out
}

/** Resident memory of a process in MB; 0 once it is gone. */
export async function rssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
  } catch {
    return 0
  }
}

/** Every process's /proc/<pid>/stat line; empty where /proc is absent. */
async function processStats(): Promise<{ pid: number; stat: string }[]> {
  let entries: string[]
  try {
    entries = await readdir('/proc')
  } catch {
    return []
  }
  const out: { pid: number; stat: string }[] = []
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      out.push({ pid: Number(entry), stat: await readFile(`/proc/${entry}/stat`, 'utf8') })
    } catch {
      // The process ended while we looked.
    }
  }
  return out
}

function statFields(stat: string): string[] {
  // The fields after the command name, starting with the state (field 3, 1-based).
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

function ticksToSeconds(stat: string): number {
  const fields = statFields(stat)
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND // utime, stime
}

function reapedChildrenSeconds(stat: string): number {
  const fields = statFields(stat)
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND // cutime, cstime
}
