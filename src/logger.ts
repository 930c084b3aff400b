import { type Logger, pino, destination as pinoDestination } from 'pino'
import type { LogLevel } from './config.ts'

export type { Logger }

/** The process's root logger: JSON lines on stdout, one child per component. */
export function createLogger(level: LogLevel, destination: 'stdout' | 'stderr' = 'stdout'): Logger {
  return pino(
    {
      level,
      base: { service: 'payrail' },
      redact: ['req.headers.authorization', 'req.headers["x-api-key"]'],
    },
    pinoDestination({ fd: destination === 'stdout' ? 1 : 2, sync: destination === 'stderr' }),
  )
}
