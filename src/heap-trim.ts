// Gives the memory of a transient peak back to the system. V8 keeps the pages its heap grew into
// (the start's list and first read of every key, a relist, a full read) for as long as the process
// lives: its memory reducer runs on allocation, so an idle controller never triggers it, and a
// regular full collection frees objects but keeps their pages pooled. The memory-reducing
// collection V8 runs before it gives up on an allocation ("last resort") also shrinks the young
// generation and releases the pooled pages: at rest with 10,000 pods 170 -> 128 MB as shipped,
// 277 -> ~137 MB with Node's defaults on a large host (docs/decisions/0044). It stops the event
// loop (~100 ms at 10,000 pods), so it runs only after a reconcile, with nothing queued, when the
// resident memory grew well beyond what the last trim left, and not more often than every few
// minutes.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';

type Collect = (options: { readonly type: 'major'; readonly execution: 'sync'; readonly flavor: 'last-resort' }) => void;

/**
 * V8's gc() with its options, without --expose-gc on the command line: the flag applies to
 * contexts created after it is set, so a new context carries the function. Undefined where the
 * runtime refuses (the trimmer then does nothing).
 */
export function lastResortCollector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    setFlagsFromString('--no-expose-gc');
    if (typeof gc !== 'function') return undefined;
    const collect = gc as Collect;
    return () => collect({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } catch {
    return undefined;
  }
}

export interface HeapTrimOptions {
  /** Trim when the RSS grew by this share of what the last trim left (and by minGrowthBytes). */
  readonly growthShare: number;
  readonly minGrowthBytes: number;
  /** Fewest milliseconds between two trims (the first is not held back). */
  readonly minIntervalMs: number;
}

export const HEAP_TRIM_DEFAULTS: HeapTrimOptions = { growthShare: 0.2, minGrowthBytes: 16 * 1024 * 1024, minIntervalMs: 5 * 60_000 };

export interface HeapTrimDeps {
  readonly logger: Logger;
  readonly rss?: () => number;
  readonly collect?: (() => void) | undefined;
  readonly now?: () => number;
}

export class HeapTrimmer {
  readonly #logger: Logger;
  readonly #rss: () => number;
  readonly #collect: (() => void) | undefined;
  readonly #now: () => number;
  readonly #options: HeapTrimOptions;
  /** RSS right after the last trim; undefined before the first. */
  #baseline: number | undefined;
  #lastAt = -Infinity;
  #trims = 0;

  constructor(deps: HeapTrimDeps, options: HeapTrimOptions = HEAP_TRIM_DEFAULTS) {
    this.#logger = deps.logger;
    this.#rss = deps.rss ?? (() => process.memoryUsage.rss());
    this.#collect = 'collect' in deps ? deps.collect : lastResortCollector();
    this.#now = deps.now ?? (() => performance.now());
    this.#options = options;
  }

  get trims(): number {
    return this.#trims;
  }

  /** Whether the memory now warrants a trim (a pure decision on the figures it is given). */
  due(rss: number, now: number): boolean {
    if (this.#baseline === undefined) return true;
    if (now - this.#lastAt < this.#options.minIntervalMs) return false;
    const growth = rss - this.#baseline;
    return growth >= this.#options.minGrowthBytes && growth >= this.#baseline * this.#options.growthShare;
  }

  /** After a reconcile, with no work queued: trims when due; returns whether it did. */
  afterPeak(reason: string): boolean {
    if (this.#collect === undefined) return false;
    const before = this.#rss();
    const now = this.#now();
    if (!this.due(before, now)) return false;
    const started = performance.now();
    this.#collect();
    const ms = performance.now() - started;
    const after = this.#rss();
    this.#baseline = after;
    this.#lastAt = now;
    this.#trims++;
    const mb = (bytes: number): number => Math.round(bytes / 104857.6) / 10;
    this.#logger.info({ reason, rssBeforeMb: mb(before), rssAfterMb: mb(after), pauseMs: Math.round(ms * 10) / 10 }, 'memory of a peak returned to the system (memory-reducing garbage collection)');
    return true;
  }
}
