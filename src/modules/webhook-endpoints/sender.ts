import { type LookupAddress, type LookupOptions, lookup } from 'node:dns'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { BlockList, isIP } from 'node:net'

/**
 * The addresses a tenant must not reach through the worker: this host, private networks,
 * link-local (cloud metadata), the carrier-grade NAT and benchmarking ranges, the IETF's
 * protocol block, and multicast. IPv4 rules also hold for IPv4-mapped IPv6 addresses in
 * either spelling (`::ffff:127.0.0.1`, and `::ffff:7f00:1`, as a URL writes it); the IPv6
 * forms that carry an IPv4 address to a gateway (NAT64, 6to4) are judged by that address.
 */
const PRIVATE = (() => {
  const list = new BlockList()
  for (const [network, prefix] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.0.0.0', 24],
    ['192.168.0.0', 16],
    ['198.18.0.0', 15],
    ['224.0.0.0', 3],
  ] as const)
    list.addSubnet(network, prefix, 'ipv4')
  for (const [network, prefix] of [
    // Unspecified, loopback and the deprecated IPv4-compatible form (::7f00:1).
    ['::', 96],
    ['fc00::', 7],
    ['fe80::', 10],
    ['ff00::', 8],
  ] as const)
    list.addSubnet(network, prefix, 'ipv6')
  return list
})()

/** Whether an IP address is one a tenant must not reach through the worker. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  if (family === 4) return PRIVATE.check(address, 'ipv4')
  if (PRIVATE.check(address, 'ipv6')) return true
  const inner = embeddedIpv4(address)
  return inner !== null && PRIVATE.check(inner, 'ipv4')
}

/**
 * The IPv4 address an IPv6 address hands to a translating gateway: NAT64's well-known and
 * local-use prefixes (`64:ff9b::/96`, `64:ff9b:1::/48`, the last 32 bits; RFC 6052) and 6to4
 * (`2002::/16`, the 32 bits after the prefix; RFC 3056). A DNS64 resolver gives public hosts
 * such addresses, so they are judged by the IPv4 address inside, not refused as a range.
 */
function embeddedIpv4(address: string): string | null {
  const words = ipv6Words(address)
  if (!words) return null
  const [w0, w1, w2] = words
  const nat64 = w0 === 0x64 && w1 === 0xff9b && (w2 === 0 || w2 === 1)
  const at = nat64 ? 6 : w0 === 0x2002 ? 1 : -1
  if (at < 0) return null
  const high = words[at] ?? 0
  const low = words[at + 1] ?? 0
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.')
}

/** The eight 16-bit words of a valid IPv6 address (as `isIP` accepts it), without a zone. */
function ipv6Words(address: string): number[] | null {
  let text = address.replace(/%.*$/, '')
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const part = (s: string) => (s === '' ? [] : s.split(':').map((w) => Number.parseInt(w, 16)))
  const front = part(head)
  const back = tail === undefined ? [] : part(tail)
  const words = [...front, ...new Array(8 - front.length - back.length).fill(0), ...back]
  return words.length === 8 ? words : null
}

/** A delivery refused before it was sent: its host is (or resolves to) a private address. */
export class PrivateTargetError extends Error {
  constructor(host: string, address: string) {
    super(
      `Not sent: ${host} is a private address (${address}); PAYRAIL_WEBHOOK_PRIVATE_TARGETS=allow permits it`,
    )
  }
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void

/**
 * `dns.lookup` for the socket's own connection, refusing a host any of whose addresses is
 * private. The addresses checked are those the socket connects to: a name that resolves to
 * a public address for a check and to a private one a moment later (DNS rebinding) cannot
 * slip between the two.
 */
export function publicOnlyLookup(
  hostname: string,
  options: LookupOptions,
  callback: LookupCallback,
): void {
  lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, [])
    const inside = addresses.find((a) => isPrivateAddress(a.address))
    if (inside) return callback(new PrivateTargetError(hostname, inside.address), [])
    if (options.all) return callback(null, addresses)
    const [first] = addresses
    if (!first) return callback(new Error(`${hostname} has no address`), [])
    callback(null, first.address, first.family)
  })
}

export interface SendOptions {
  /** Refuse private, loopback and link-local targets (`PrivateTargetError`). */
  publicOnly: boolean
  /** The whole exchange, connection to the end of the body read. */
  timeoutMs: number
  /** Characters of the answer's body kept; the rest is not read. */
  bodyLimit: number
}

/**
 * POSTs `body` to `url` and reads the answer's status and the start of its body. Redirects
 * are not followed (a 3xx is the answer). Throws when no answer came (a refused
 * connection, a timeout, a private target).
 */
export function postJson(
  url: string,
  headers: Record<string, string>,
  body: string,
  options: SendOptions,
): Promise<{ status: number; body: string }> {
  const target = new URL(url)
  const host = target.hostname.replace(/^\[|\]$/g, '')
  // An address written in the URL is not looked up: it is checked as it is.
  if (options.publicOnly && isIP(host) !== 0 && isPrivateAddress(host)) {
    return Promise.reject(new PrivateTargetError(target.hostname, host))
  }
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const request = send(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        signal: AbortSignal.timeout(options.timeoutMs),
        // A connection of its own, looked up for this request: a pooled one would skip the lookup.
        agent: false,
        ...(options.publicOnly && { lookup: publicOnlyLookup }),
      },
      (response) => {
        readStart(response, options.bodyLimit).then(
          (text) => resolve({ status: response.statusCode ?? 0, body: text }),
          () => resolve({ status: response.statusCode ?? 0, body: '' }),
        )
      },
    )
    request.on('error', (error) => reject(error))
    request.end(body)
  })
}

/** The first `limit` characters of a body; the connection is dropped once they are read. */
function readStart(response: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      text += chunk
      if (text.length >= limit) {
        response.destroy()
        resolve(text.slice(0, limit))
      }
    })
    response.on('end', () => resolve(text.slice(0, limit)))
    response.on('error', reject)
    response.on('close', () => resolve(text.slice(0, limit)))
  })
}
