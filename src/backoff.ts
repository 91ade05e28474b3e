// Retrying start-up steps that depend on other systems (etcd, the API server) until they
// succeed or shutdown begins: a controller that crash-loops on a down dependency helps
// nobody; an unready one waiting for it does.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

/** The two numbers of an exponential backoff: the delay after the first failure, and its cap. */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

export interface RetryOptions extends Partial<BackoffOptions> {
  readonly logger: Logger;
  /** What is being tried, for the log line. */
  readonly what: string;
  readonly signal?: AbortSignal;
}

/**
 * Exponential backoff with equal jitter, shared by every retry loop: attempt 1 waits between
 * baseMs/2 and baseMs, each further attempt doubles that, capped at maxMs.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/** Runs `operation` until it resolves; rejects only with the abort reason when `signal` fires. */
export async function retryUntilDone<T>(operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { logger, what, baseMs = 200, maxMs = 30_000, signal } = options;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await operation();
    } catch (error) {
      signal?.throwIfAborted();
      const delay = backoffDelay(attempt, baseMs, maxMs);
      logger.error({ err: error, retryInMs: Math.round(delay) }, `${what} failed; retrying`);
      await sleep(delay, undefined, signal === undefined ? {} : { signal });
    }
  }
}
