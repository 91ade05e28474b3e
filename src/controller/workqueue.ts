// A keyed work queue with client-go's contract: keys, not objects; adding a queued key is a
// no-op; a key being processed is never handed out again until done(), and re-adding it
// meanwhile queues it once more for after done(); failures back off per key.

export interface BackoffOptions {
  /** Delay after the first failure. */
  readonly baseMs: number;
  /** Cap of the exponential delay. */
  readonly maxMs: number;
}

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
  // Set keeps insertion order: keys are handed out first-in, first-out.
  readonly #ready = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #readdAfterDone = new Set<string>();
  readonly #delayed = new Map<string, { at: number; handle: unknown }>();
  readonly #failures = new Map<string, number>();
  readonly #backoff: BackoffOptions;
  readonly #timers: Timers;
  readonly #now: () => number;
  #workWaiters: Array<() => void> = [];
  #idleWaiters: Array<() => void> = [];
  #shutDown = false;

  constructor(options: { backoff?: BackoffOptions; timers?: Timers; now?: () => number } = {}) {
    this.#backoff = options.backoff ?? defaultBackoff;
    this.#timers = options.timers ?? realTimers;
    this.#now = options.now ?? Date.now;
  }

  add(key: string): void {
    if (this.#shutDown) return;
    this.#cancelDelay(key);
    if (this.#processing.has(key)) {
      this.#readdAfterDone.add(key);
      return;
    }
    if (this.#ready.has(key)) return;
    this.#ready.add(key);
    this.#wakeWorkers();
  }

  addAll(keys: Iterable<string>): void {
    for (const key of keys) this.add(key);
  }

  /** Queues the key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shutDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.#now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined && pending.at <= at) return;
    if (pending !== undefined) this.#timers.clearTimeout(pending.handle);
    const handle = this.#timers.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.#delayed.set(key, { at, handle });
  }

  /** Queues the key after its exponential backoff, and counts the failure. */
  addRateLimited(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    const delay = Math.min(this.#backoff.maxMs, this.#backoff.baseMs * 2 ** failures);
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the key's backoff after a success. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Hands out up to `max` ready keys and marks them as being processed. */
  take(max: number): string[] {
    const keys: string[] = [];
    for (const key of this.#ready) {
      if (keys.length >= max) break;
      keys.push(key);
    }
    for (const key of keys) {
      this.#ready.delete(key);
      this.#processing.add(key);
    }
    return keys;
  }

  done(keys: Iterable<string>): void {
    for (const key of keys) {
      this.#processing.delete(key);
      if (this.#readdAfterDone.delete(key)) this.add(key);
    }
    this.#checkIdle();
  }

  /** Resolves when a key is ready or the queue shuts down. */
  waitForWork(): Promise<void> {
    if (this.#ready.size > 0 || this.#shutDown) return Promise.resolve();
    return new Promise((resolve) => this.#workWaiters.push(resolve));
  }

  /** Resolves when nothing is ready or processing (delayed retries do not count). */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  get readyCount(): number {
    return this.#ready.size;
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
    this.#readdAfterDone.clear();
    this.#wakeWorkers();
    this.#checkIdle();
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  #cancelDelay(key: string): void {
    const pending = this.#delayed.get(key);
    if (pending === undefined) return;
    this.#timers.clearTimeout(pending.handle);
    this.#delayed.delete(key);
  }

  #wakeWorkers(): void {
    const waiters = this.#workWaiters;
    this.#workWaiters = [];
    for (const wake of waiters) wake();
  }

  #isIdle(): boolean {
    return this.#ready.size === 0 && this.#processing.size === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
