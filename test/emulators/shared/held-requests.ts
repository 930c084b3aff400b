import type { IncomingMessage } from 'node:http'

/** Requests held unanswered by a timeout fault, each reset after its time; `clear` lets go. */
export class HeldRequests {
  private readonly timers = new Set<NodeJS.Timeout>()

  /** Gives `request` no answer; its connection is reset after `ms`. */
  resetAfter(request: IncomingMessage, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      request.socket.destroy()
    }, ms)
    this.timers.add(timer)
  }

  /** Cancels every pending reset (the server is closing and ends the connections itself). */
  clear(): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }
}
