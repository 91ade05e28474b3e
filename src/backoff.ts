// Retrying start-up steps that depend on other systems (etcd, the API server) until they
// succeed or shutdown begins: a controller that crash-loops on a down dependency helps
// nobody; an unready one waiting for it does.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

export interface RetryOptions {
  readonly logger: Logger;
  /** What is being tried, for the log line. */
  readonly what: string;
  readonly baseMs?: number;
  readonly maxMs?: number;
  readonly signal?: AbortSignal;
}

/** Full-jitter-ish exponential delay: between half and all of base * 2^attempt, capped. */
export function jitteredDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.min(maxMs, baseMs * 2 ** attempt) * (0.5 + random() / 2);
}

/** Runs `operation` until it resolves; rejects only with the abort reason when `signal` fires. */
export async function retryUntilDone<T>(operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { logger, what, baseMs = 200, maxMs = 30_000, signal } = options;
  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await operation();
    } catch (error) {
      signal?.throwIfAborted();
      const delay = jitteredDelay(attempt, baseMs, maxMs);
      logger.error({ err: error, retryInMs: Math.round(delay) }, `${what} failed; retrying`);
      await sleep(delay, undefined, signal === undefined ? {} : { signal });
    }
  }
}
