import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { HeldRequests } from './held-requests.ts'

export interface ListenOptions {
  /** Default `127.0.0.1`. */
  host?: string
  /** Default 0: a free port. */
  port?: number
}

export interface ServerAddress {
  host: string
  port: number
}

/** `held` is where a timeout fault parks a request; `close()` cancels its pending resets. */
export type RequestHandler = (
  request: IncomingMessage,
  response: ServerResponse,
  held: HeldRequests,
) => Promise<void>

export interface StartedServer {
  readonly address: ServerAddress
  /** Cancels held requests' resets, stops listening, ends every open connection. */
  close(): Promise<void>
}

/**
 * Starts an HTTP server on `host` and `port` (a free one by default) for an emulator named
 * `name` in errors, each request handed to `handle`.
 */
export async function startHttpServer(
  name: string,
  options: ListenOptions,
  handle: RequestHandler,
): Promise<StartedServer> {
  const held = new HeldRequests()
  const server = createServer((request, response) => {
    void handle(request, response, held)
  })
  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') {
    throw new Error(`The ${name} emulator did not get a TCP port`)
  }
  return {
    address: { host, port: address.port },
    close: () => {
      held.clear()
      return new Promise((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)))
        // Keep-alive sockets (SDK agents keep them) and held requests would stall close().
        server.closeAllConnections()
      })
    },
  }
}
