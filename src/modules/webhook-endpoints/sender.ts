import { type LookupAddress, type LookupOptions, lookup } from 'node:dns'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'

/** Whether an IP address is one a tenant must not reach through the worker. */
export function isPrivateAddress(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  if (/^\d+\.\d+\.\d+\.\d+$/.test(v4)) {
    const [a = 0, b = 0] = v4.split('.').map(Number)
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 100 && b >= 64 && b <= 127) ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      a >= 224
    )
  }
  const v6 = address.toLowerCase()
  return v6 === '::' || v6 === '::1' || /^f[cd]/.test(v6) || /^fe[89ab]/.test(v6)
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
