import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A request a merchant's endpoint received. */
export interface ReceivedRequest {
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A merchant's webhook endpoint on this machine: what it received, and what it answers next. */
export interface MerchantReceiver {
  /** `http://127.0.0.1:<port>/hooks` */
  url: string
  port: number
  received: ReceivedRequest[]
  /** Its next answers: the status, after how long, with what body (`ok`, or `try later` for an error). */
  answer: { status: number; delayMs: number; body: string | undefined }
  /** Forgets what it received and answers 200 at once again. */
  reset(): void
  close(): Promise<void>
}

export async function startMerchantReceiver(): Promise<MerchantReceiver> {
  const received: ReceivedRequest[] = []
  const answer: MerchantReceiver['answer'] = { status: 200, delayMs: 0, body: undefined }
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString() })
      setTimeout(() => {
        response.statusCode = answer.status
        response.end(answer.body ?? (answer.status < 300 ? 'ok' : 'try later'))
      }, answer.delayMs)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    received,
    answer,
    reset() {
      received.length = 0
      Object.assign(answer, { status: 200, delayMs: 0, body: undefined })
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
