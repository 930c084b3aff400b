import { readdirSync, readFileSync } from 'node:fs'

const CLOCK_TICKS_PER_SECOND = 100

// Synchronous reads: /proc files are generated in memory and read in microseconds, while
// each promise-based readFile costs four thread-pool round trips. The bench samples memory
// every 200 ms during the load, and its own CPU comes out of the machine it measures.

/** CPU seconds (user + system) a process has used so far, from /proc; 0 where /proc is absent. */
export function processCpuSeconds(pid: number): number {
  try {
    return ticksToSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return 0
  }
}

/**
 * CPU seconds used so far by every PostgreSQL process of this machine (postmaster,
 * backends, WAL writer, checkpointer…), including backends that have exited: the
 * postmaster reaps them, so their time is in its children's total.
 */
export function postgresCpuSeconds(): number {
  let total = 0
  for (const { stat } of processStats()) {
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    if (name === 'postgres' || name.startsWith('postgres:'))
      total += ticksToSeconds(stat) + reapedChildrenSeconds(stat)
  }
  return total
}

/** Direct children of `pid`, from each process's parent id in /proc. */
export function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const { pid: child, stat } of processStats()) {
    if (Number(statFields(stat)[1]) === pid) out.push(child)
  }
  return out
}

/** Resident memory of a process in MB; 0 once it is gone. */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
  } catch {
    return 0
  }
}

/** Every process's /proc/<pid>/stat line; empty where /proc is absent. */
function processStats(): { pid: number; stat: string }[] {
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  const out: { pid: number; stat: string }[] = []
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      out.push({ pid: Number(entry), stat: readFileSync(`/proc/${entry}/stat`, 'utf8') })
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
