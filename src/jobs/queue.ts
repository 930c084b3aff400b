import { sql } from 'kysely'
import type { Db } from '../db/client.ts'

export interface JobOptions {
  runAt?: Date | undefined
  maxAttempts?: number | undefined
  /** A job with the same key replaces the queued one instead of adding another. */
  jobKey?: string | undefined
}

/** Adds graphile-worker jobs, optionally inside the caller's transaction (the job exists only if it commits). */
export interface JobQueue {
  add(task: string, payload: object, options?: JobOptions, db?: Db): Promise<void>
}

/**
 * graphile-worker's own `add_job` SQL function, on Payrail's pool: no second pool,
 * and a job added in a transaction is enqueued atomically with the change that caused it.
 */
export function createJobQueue(defaultDb: Db): JobQueue {
  return {
    async add(task, payload, options = {}, db = defaultDb) {
      await sql`select graphile_worker.add_job(
        ${task},
        ${JSON.stringify(payload)}::json,
        run_at => ${options.runAt ?? null}::timestamptz,
        max_attempts => ${options.maxAttempts ?? null}::int,
        job_key => ${options.jobKey ?? null}::text
      )`.execute(db)
    },
  }
}
