#!/usr/bin/env node
// Runs Payrail from its TypeScript sources with no build step. The sources are bundled
// once into node_modules/.cache/payrail (esbuild, a fraction of a second) and bundled
// again whenever a source file is newer than the bundle, so `npm start` always runs the
// code in src/. A bundle needs about 45 MB less memory than loading each file through
// tsx. Where no bundle can be made (esbuild missing, a read-only install), the sources
// run through tsx instead. The bundle is named after the checkout's path: two checkouts
// that share one node_modules (a symlink, a hoisting workspace) each run their own code.
//
// Node's default young generation (16 MB per semi-space), not a smaller one: with 4 MB
// (`--max-semi-space-size=4`, used until the ninth session) the server spent twice as
// long per request in garbage-collection pauses, on its one event loop, and the bench saw
// no lower memory for it (docs/performance.md). The old generation's growth is capped
// (bin/v8-flags.js).
import { createHash } from 'node:crypto'
import { mkdir, readdir, rename, stat } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import v8 from 'node:v8'
import { v8Flags } from './v8-flags.js'

for (const flag of v8Flags(process.execArgv, process.env.NODE_OPTIONS)) v8.setFlagsFromString(flag)

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const entry = path.join(root, 'src', 'main.ts')
const checkout = createHash('sha256').update(root).digest('hex').slice(0, 12)
const bundleFile = path.join(root, 'node_modules', '.cache', 'payrail', `payrail-${checkout}.mjs`)

/** The newest modification time among the files under `dir`. */
async function newest(dir) {
  let latest = 0
  for (const item of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, item.name)
    const time = item.isDirectory() ? await newest(file) : (await stat(file)).mtimeMs
    if (time > latest) latest = time
  }
  return latest
}

/** The bundle's path, built first when a source is newer; undefined when it cannot be built. */
async function bundled() {
  try {
    const [built, sources, manifest] = await Promise.all([
      stat(bundleFile).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
      newest(path.join(root, 'src')),
      stat(path.join(root, 'package.json')).then((s) => s.mtimeMs),
    ])
    if (built > Math.max(sources, manifest)) return bundleFile
    const { build } = await import('esbuild')
    await mkdir(path.dirname(bundleFile), { recursive: true })
    // Written aside, then renamed: processes starting together never read half a bundle.
    const partial = `${bundleFile}.${process.pid}.partial`
    await build({
      entryPoints: [entry],
      outfile: partial,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      keepNames: true,
      logLevel: 'silent',
    })
    await rename(partial, bundleFile)
    return bundleFile
  } catch {
    return undefined
  }
}

const file = await bundled()
if (file) {
  await import(pathToFileURL(file).href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import(pathToFileURL(entry).href)
}
