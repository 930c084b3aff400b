// The V8 flags every Payrail process sets for itself as it starts (bin/payrail.js), before
// its heap has grown: the old generation may grow to 2.5 times what survived its last full
// collection before the next (`--heap-growing-percent=150`), not up to the four times V8
// allows while collecting is cheap. Under the bench's write scenarios the server's RSS then
// peaked at 182-198 MB instead of 207-257, with the same requests per second and garbage-
// collection pauses per request (at 100, 166-180 MB, but the collections' background marking
// may cost a few per cent of throughput: docs/performance.md). A flag the operator chose (on
// Node's command line or in NODE_OPTIONS) wins over ours.

const DEFAULTS = [['heap-growing-percent', '150']]

/** The flags to set: Payrail's defaults that `execArgv` and `nodeOptions` do not already choose. */
export function v8Flags(execArgv, nodeOptions = '') {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)]
    .filter((arg) => arg.startsWith('--'))
    .map((arg) => arg.slice(2).split('=')[0].replaceAll('_', '-'))
  return DEFAULTS.filter(([name]) => !given.includes(name)).map(
    ([name, value]) => `--${name}=${value}`,
  )
}
