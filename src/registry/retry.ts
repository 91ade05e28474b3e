// Exponential backoff with jitter and the classification of etcd errors.
import { setTimeout as delay } from 'node:timers/promises';
import { EtcdLeaseInvalidError, isRecoverableError } from 'etcd3';
import { backoffDelay } from '../backoff.ts';

// The one backoff formula of the project, re-exported for the registry's modules.
export { backoffDelay };

export interface RetryPolicy {
  /** Attempts in total, including the first. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** No retry starts later than this after the first attempt (the last one still gets its deadline). */
  readonly budgetMs: number;
}

/** Up to ~5 s of backoff, 10 s in all: enough to ride out an etcd leader election. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseDelayMs: 100, maxDelayMs: 2_000, budgetMs: 10_000 };

/** Errors worth another attempt: unavailable, deadline exceeded, leader changed, ... */
export function isTransient(err: unknown): boolean {
  return err instanceof Error && isRecoverableError(err);
}

export function isLeaseNotFound(err: unknown): boolean {
  return err instanceof EtcdLeaseInvalidError;
}

/** etcd's NOSPACE alarm is raised (backend quota exceeded): it rejects puts and lease grants until disarmed. */
export function isNoSpace(err: unknown): boolean {
  return err instanceof Error && /database space exceeded|NOSPACE/.test(err.message);
}

/** etcd compacted the revision a paginated read was pinned to. */
export function isCompacted(err: unknown): boolean {
  return err instanceof Error && /required revision has been compacted/.test(err.message);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

export interface RetryHooks {
  /** Called for every failed attempt (before deciding to retry). */
  onError?: (err: unknown, attempt: number, willRetry: boolean) => void;
  signal?: AbortSignal | undefined;
}

export interface RetryOutcome<T> {
  readonly value: T;
  /** Some earlier attempt failed in a way that may have applied the request anyway. */
  readonly ambiguous: boolean;
}

/**
 * Runs `fn` until it succeeds, fails with a non-transient error, or the attempts run out.
 * A deadline or an unavailable error after the request was sent is ambiguous: the write may
 * have been applied; callers of non-idempotent operations look at `ambiguous`.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  fn: (attempt: number) => Promise<T>,
  hooks: RetryHooks = {},
): Promise<RetryOutcome<T>> {
  let ambiguous = false;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return { value: await fn(attempt), ambiguous };
    } catch (err) {
      const wait = backoffDelay(attempt, policy.baseDelayMs, policy.maxDelayMs);
      const willRetry =
        isTransient(err) &&
        attempt < policy.attempts &&
        Date.now() - started + wait <= policy.budgetMs &&
        hooks.signal?.aborted !== true;
      hooks.onError?.(err, attempt, willRetry);
      if (!willRetry) throw err;
      ambiguous = true;
      await delay(wait, undefined, {
        ...(hooks.signal !== undefined ? { signal: hooks.signal } : {}),
      }).catch(() => undefined);
    }
  }
}
