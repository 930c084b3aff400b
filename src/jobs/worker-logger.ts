import { Logger as WorkerLogger } from 'graphile-worker'
import type { Logger } from '../logger.ts'

/** graphile-worker's logger, written through pino so worker and HTTP logs share one stream. */
export function workerLoggerFrom(logger: Logger): WorkerLogger {
  const log = logger.child({ component: 'worker' })
  return new WorkerLogger((scope) => (level, message, meta) => {
    const fields = { ...scope, ...meta }
    switch (String(level)) {
      case 'error':
        log.error(fields, message)
        break
      case 'warning':
        log.warn(fields, message)
        break
      case 'info':
        log.info(fields, message)
        break
      default:
        log.debug(fields, message)
    }
  })
}
