/**
 * `npm run bench:ab -- --base <revision>`: bench:micro on two versions of the code, the
 * checkout as it is and `--base` (default `HEAD~1`), alternated: base, this, base, this,
 * … for `--pairs` pairs. On a machine whose speed drifts (a shared virtual machine can
 * move by a quarter within minutes), two full `npm run bench` runs of different code are
 * minutes apart and cannot tell a few per cent from the drift; runs alternated within
 * seconds of each other can (in turn: base first in one pair, the checkout first in the
 * next). Prints each run's warm rounds (the first round of each run
 * warms it up and is left out) and the means, with the change as a ratio.
 *
 * The base is checked out into a temporary git worktree that shares this checkout's
 * node_modules, and removed at the end. Needs `DATABASE_URL` (or embedded PostgreSQL), as
 * bench:micro does.
 *
 * @example
 * DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:ab -- --base main --only offline_pay --pairs 3
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    base: { type: 'string', default: 'HEAD~1' },
    only: { type: 'string', default: 'offline_pay' },
    pairs: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '4' },
    requests: { type: 'string', default: '2000' },
  },
})
const pairs = Number(values.pairs)
const here = process.cwd()

interface Round {
  scenario: string
  rps: number
  node: number
  postgres: number
}

/** bench:micro's lines: `<scenario> round <n>: <rps> req/s, node <ms> ms/req (user …), postgres <ms> ms/req, …`. */
function parseRounds(output: string): Round[] {
  const rounds: Round[] = []
  const line =
    /^(\w+)\s+round (\d+): (\d+) req\/s, node ([\d.]+) ms\/req .*?postgres ([\d.]+) ms\/req/gm
  for (const match of output.matchAll(line)) {
    // Round 0 warms the run up.
    if (match[2] === '0') continue
    rounds.push({
      scenario: match[1] ?? '',
      rps: Number(match[3]),
      node: Number(match[4]),
      postgres: Number(match[5]),
    })
  }
  return rounds
}

function micro(dir: string): Round[] {
  const run = spawnSync(
    'npx',
    [
      'tsx',
      'bench/micro.ts',
      '--only',
      values.only,
      '--rounds',
      values.rounds,
      '--requests',
      values.requests,
    ],
    { cwd: dir, encoding: 'utf8', env: process.env },
  )
  if (run.status !== 0) throw new Error(`bench:micro failed in ${dir}:\n${run.stderr}`)
  return parseRounds(run.stdout)
}

const mean = (xs: number[]) => xs.reduce((sum, x) => sum + x, 0) / Math.max(1, xs.length)

function main() {
  const revision = execFileSync('git', ['rev-parse', '--short', values.base], {
    encoding: 'utf8',
  }).trim()
  const parent = mkdtempSync(path.join(tmpdir(), 'payrail-ab-'))
  const base = path.join(parent, 'base')
  execFileSync('git', ['worktree', 'add', '--detach', base, revision], { stdio: 'ignore' })
  try {
    if (!existsSync(path.join(base, 'node_modules')))
      symlinkSync(path.join(here, 'node_modules'), path.join(base, 'node_modules'))
    const results: Record<'base' | 'this', Round[]> = { base: [], this: [] }
    for (let pair = 0; pair < pairs; pair++) {
      const sides = [
        ['base', base],
        ['this', here],
      ] as const
      // Base first in even pairs, the checkout first in odd ones: a drift within a pair
      // favours neither.
      for (const [side, dir] of pair % 2 === 0 ? sides : [...sides].reverse()) {
        const rounds = micro(dir)
        results[side].push(...rounds)
        for (const r of rounds) {
          process.stdout.write(
            `${side === 'base' ? revision.padEnd(9) : 'checkout '} ${r.scenario.padEnd(14)} ${String(r.rps).padStart(5)} req/s  node ${r.node.toFixed(3)}  postgres ${r.postgres.toFixed(3)} ms/req\n`,
          )
        }
      }
    }
    // One summary per scenario: their speeds differ, and a mean over several would weigh
    // each by its share of the rounds.
    const scenarios = [...new Set(results.this.map((r) => r.scenario))]
    let out = ''
    for (const scenario of scenarios) {
      const summary = (side: 'base' | 'this') => {
        const rounds = results[side].filter((r) => r.scenario === scenario)
        return {
          count: rounds.length,
          rps: mean(rounds.map((r) => r.rps)),
          node: mean(rounds.map((r) => r.node)),
          postgres: mean(rounds.map((r) => r.postgres)),
        }
      }
      const [b, t] = [summary('base'), summary('this')]
      if (b.count === 0) {
        out += `\n${scenario}: ${revision} has no such scenario\n`
        continue
      }
      out +=
        `\n${scenario}, mean of ${b.count} warm rounds (${revision}) and ${t.count} (checkout):\n` +
        `  ${revision.padEnd(9)} ${b.rps.toFixed(0)} req/s, node ${b.node.toFixed(3)}, postgres ${b.postgres.toFixed(3)} ms/req\n` +
        `  checkout  ${t.rps.toFixed(0)} req/s, node ${t.node.toFixed(3)}, postgres ${t.postgres.toFixed(3)} ms/req\n` +
        `  checkout / ${revision}: req/s ×${(t.rps / b.rps).toFixed(3)}, node CPU ×${(t.node / b.node).toFixed(3)}, postgres CPU ×${(t.postgres / b.postgres).toFixed(3)}\n`
    }
    process.stdout.write(out)
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', base], { stdio: 'ignore' })
    rmSync(parent, { recursive: true, force: true })
  }
}

main()
