// A keyed work queue with client-go's contract: keys, not objects; adding a queued key is a
// no-op; a key being processed is never handed out again until done(), and re-adding it
// meanwhile queues it once more for after done(); failures back off per key.
// Urgent keys (a pod stopped being Ready or is terminating: its key must go) are handed out
// before any other ready key, and never in the same batch as them.

import type { BackoffOptions } from '../backoff.ts';

export type { BackoffOptions };

export const defaultBackoff: BackoffOptions = { baseMs: 5, maxMs: 1_000_000 };

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export class KeyedWorkQueue {
  // Sets keep insertion order: keys are handed out first-in, first-out within each class.
  readonly #ready = new Set<string>();
  readonly #urgent = new Set<string>();
  readonly #processing = new Set<string>();
  /** Keys re-added while processing, and whether any of those adds was urgent. */
  readonly #readdAfterDone = new Map<string, boolean>();
  readonly #delayed = new Map<string, { at: number; handle: unknown; urgent: boolean }>();
  readonly #failures = new Map<string, number>();
  readonly #backoff: BackoffOptions;
  readonly #timers: Timers;
  readonly #now: () => number;
  #workWaiters: Array<() => void> = [];
  #urgentWaiters: Array<() => void> = [];
  #idleWaiters: Array<() => void> = [];
  #shutDown = false;

  constructor(options: { backoff?: BackoffOptions; timers?: Timers; now?: () => number } = {}) {
    this.#backoff = options.backoff ?? defaultBackoff;
    this.#timers = options.timers ?? realTimers;
    this.#now = options.now ?? Date.now;
  }

  /** Queues the key; `urgent` puts it (or moves it) ahead of every non-urgent key. */
  add(key: string, urgent = false): void {
    if (this.#shutDown) return;
    urgent ||= this.#cancelDelay(key);
    if (this.#processing.has(key)) {
      this.#readdAfterDone.set(key, urgent || this.#readdAfterDone.get(key) === true);
      return;
    }
    if (this.#urgent.has(key)) return;
    if (urgent) {
      this.#ready.delete(key);
      this.#urgent.add(key);
      this.#wakeUrgentWaiters();
    } else {
      if (this.#ready.has(key)) return;
      this.#ready.add(key);
    }
    this.#wakeWorkers();
  }

  addAll(keys: Iterable<string>, urgent = false): void {
    for (const key of keys) this.add(key, urgent);
  }

  /** Queues the key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number, urgent = false): void {
    if (this.#shutDown) return;
    if (delayMs <= 0) {
      this.add(key, urgent);
      return;
    }
    const at = this.#now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined && pending.at <= at) {
      pending.urgent ||= urgent;
      return;
    }
    if (pending !== undefined) this.#timers.clearTimeout(pending.handle);
    const handle = this.#timers.setTimeout(() => {
      const delayed = this.#delayed.get(key);
      this.#delayed.delete(key);
      this.add(key, delayed?.urgent === true);
    }, delayMs);
    this.#delayed.set(key, { at, handle, urgent: urgent || pending?.urgent === true });
  }

  /** Queues the key after its exponential backoff, and counts the failure. */
  addRateLimited(key: string, urgent = false): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    const delay = Math.min(this.#backoff.maxMs, this.#backoff.baseMs * 2 ** failures);
    this.addAfter(key, delay, urgent);
    return delay;
  }

  /** Resets the key's backoff after a success. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /**
   * Hands out up to `max` ready keys and marks them as being processed: the urgent keys alone
   * while there are any (so that their batch carries nothing else), else the others.
   */
  take(max: number): string[] {
    const from = this.#urgent.size > 0 ? this.#urgent : this.#ready;
    const keys: string[] = [];
    for (const key of from) {
      if (keys.length >= max) break;
      keys.push(key);
    }
    for (const key of keys) {
      from.delete(key);
      this.#processing.add(key);
    }
    return keys;
  }

  done(keys: Iterable<string>): void {
    for (const key of keys) {
      this.#processing.delete(key);
      const readd = this.#readdAfterDone.get(key);
      if (readd !== undefined) {
        this.#readdAfterDone.delete(key);
        this.add(key, readd);
      }
    }
    this.#checkIdle();
  }

  /** Resolves when a key is ready or the queue shuts down. */
  waitForWork(): Promise<void> {
    if (this.readyCount > 0 || this.#shutDown) return Promise.resolve();
    return new Promise((resolve) => this.#workWaiters.push(resolve));
  }

  /** Resolves when an urgent key is ready or the queue shuts down. */
  waitForUrgent(): Promise<void> {
    if (this.#urgent.size > 0 || this.#shutDown) return Promise.resolve();
    return new Promise((resolve) => this.#urgentWaiters.push(resolve));
  }

  /** Resolves when nothing is ready or processing (delayed retries do not count). */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  get readyCount(): number {
    return this.#ready.size + this.#urgent.size;
  }

  /** Ready keys marked urgent (handed out before the others). */
  get urgentCount(): number {
    return this.#urgent.size;
  }

  get processingCount(): number {
    return this.#processing.size;
  }

  get delayedCount(): number {
    return this.#delayed.size;
  }

  /** Stops accepting keys; waiters wake so workers can exit; processing keys may finish. */
  shutDown(): void {
    this.#shutDown = true;
    for (const { handle } of this.#delayed.values()) this.#timers.clearTimeout(handle);
    this.#delayed.clear();
    this.#ready.clear();
    this.#urgent.clear();
    this.#readdAfterDone.clear();
    this.#wakeWorkers();
    this.#wakeUrgentWaiters();
    this.#checkIdle();
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  /** Cancels a pending delayed add; returns whether it was urgent (the add inherits that). */
  #cancelDelay(key: string): boolean {
    const pending = this.#delayed.get(key);
    if (pending === undefined) return false;
    this.#timers.clearTimeout(pending.handle);
    this.#delayed.delete(key);
    return pending.urgent;
  }

  #wakeWorkers(): void {
    const waiters = this.#workWaiters;
    this.#workWaiters = [];
    for (const wake of waiters) wake();
  }

  #wakeUrgentWaiters(): void {
    const waiters = this.#urgentWaiters;
    this.#urgentWaiters = [];
    for (const wake of waiters) wake();
  }

  #isIdle(): boolean {
    return this.readyCount === 0 && this.#processing.size === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
