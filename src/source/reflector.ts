// The one list+watch loop (docs/decisions/0020), for every kind the controller watches: a
// Reflector in the spirit of client-go's, over a ListerWatcher (kube-http.ts). A kind is a small
// adapter (Kind: how to slim and key an object, what counts as a change, what listeners get);
// pods, namespaces and nodes are such adapters (pod-source.ts, value-source.ts).
//
// One stream per namespace (or one over all namespaces, or over a cluster-scoped kind). Each
// stream loops:
//   list (paginated, consistent read) -> diff against the cache -> watch from the list's
//   resourceVersion (bookmarks on, server timeout 5-10 min) -> ...
// - the server ending a watch normally, or the watchdog firing on a silent watch, resumes the
//   watch from the last resourceVersion (no relist);
// - any error (connection reset, 401/403, in-stream or HTTP 410, list failure, connect
//   timeout) marks the stream stale and relists after a jittered exponential backoff.
// A relist deletes only objects that the fresh list no longer contains, so a gap never deletes
// a live object, and deletes of objects that vanished during the gap are emitted once confirmed.
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from '../backoff.ts';
import type { KubeAccess } from './kube-access.ts';
import { describeError, kubeListerWatcher, type KubeContentType, type ListerWatcher, type Selection } from './kube-http.ts';
import { interruptibleRequest, interruptibleSleep, watchOnce, type Interruptible, type WatchOutcome } from './watch.ts';

/** What the reflector needs to know about one kind of object. */
export interface Kind<V, E> {
  /** Singular name for logs and errors: "pod", "namespace", "node". */
  readonly what: string;
  /** '/api/v1', '/apis/discovery.k8s.io/v1', ... */
  readonly apiPath: string;
  /** Plural resource name: "pods", "namespaces", "nodes". */
  readonly resource: string;
  /** The record kept of an object (slimmed: nothing else of it is retained); undefined = not kept. */
  valueOf(object: object): V | undefined;
  /** The cache key of a record (a pod's uid, a node's name). */
  keyOf(value: V): string;
  /** Whether a newer record is worth an event (the cache keeps the newer one either way). */
  changed(previous: V, next: V): boolean;
  /** What listeners get for a record that appeared or changed (upsert) or vanished (delete). */
  eventOf(type: 'upsert' | 'delete', value: V): E;
}

/** The loop's logger and tuning (the defaults suit production; tests shorten them). */
export interface ReflectorTuning {
  readonly logger: Logger;
  /** Restart a watch that delivered nothing (not even a bookmark) for this long. Default 5 min. */
  readonly watchdogMs?: number;
  /** Give up on a watch whose response headers did not arrive in time. Default 30 s. */
  readonly connectTimeoutMs?: number;
  /** Give up on one list page after this long. Default 60 s. */
  readonly listTimeoutMs?: number;
  /** Page size of lists. Default 500. */
  readonly pageSize?: number;
  /** Default {baseMs: 500, maxMs: 30_000}, per stream. */
  readonly backoff?: BackoffOptions;
  /** A watch that lasted this long counts as healthy and resets the backoff. Default 10 s. */
  readonly healthyAfterMs?: number;
  /** For tests: [0,1) random source of the backoff jitter and watch timeouts. */
  readonly random?: () => number;
}

/** How a source reaches its objects: the API server access (or, in tests, a transport) and a selection. */
export interface ReflectorOptions extends ReflectorTuning {
  readonly kube?: KubeAccess | undefined;
  /** How lists and watches are asked for and decoded (--kube-content-type); default protobuf, as shipped. */
  readonly contentType?: KubeContentType | undefined;
  /** For tests: replaces the API server. */
  readonly transport?: ListerWatcher | undefined;
  /** Empty or absent: one stream over every namespace; otherwise one stream per namespace. */
  readonly namespaces?: readonly string[] | undefined;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
}

const DEFAULTS = {
  watchdogMs: 5 * 60_000,
  connectTimeoutMs: 30_000,
  listTimeoutMs: 60_000,
  pageSize: 500,
  backoff: { baseMs: 500, maxMs: 30_000 },
  healthyAfterMs: 10_000,
} as const;

export interface ReflectorStats {
  /** Objects in the cache. */
  readonly objects: number;
  /** synced(): complete and not stale. */
  readonly synced: boolean;
  readonly stale: boolean;
  /** Epoch ms of the last successful (re)list of any stream; null before the first. */
  readonly lastSyncAt: number | null;
  /** Restarts after errors (watch errors, 410, connect timeouts) and watchdog restarts. */
  readonly restarts: number;
  readonly watchdogRestarts: number;
  readonly watchErrors: number;
  readonly goneRelists: number;
  /**
   * Watches the server ended cleanly (its timeoutSeconds, or an API server that drops a watcher
   * which does not read): each resumes from the last resourceVersion without a relist.
   */
  readonly serverClosures: number;
  readonly listFailures: number;
  readonly relists: number;
  /** Watch events applied (an ERROR event ends the watch instead, counted above). */
  readonly watchEvents: number;
  /** Streams that went stale (a watch or list error after their first list). */
  readonly syncLosses: number;
}

/** Thrown (rejected) by start() when stop() was called before the cache synced. */
export class SourceStoppedError extends Error {
  constructor(what: string) {
    super(`${what} source stopped before its cache synced`);
    this.name = 'SourceStoppedError';
  }
}

interface Stream<V> extends Interruptible {
  readonly namespace: string | undefined;
  /** This stream's part of the cache, by key. */
  readonly cache: Map<string, V>;
  resourceVersion: string;
  listed: boolean;
  stale: boolean;
  failures: number;
}

export class Reflector<V, E> {
  readonly #kind: Kind<V, E>;
  readonly #what: string;
  readonly #log: Logger;
  readonly #transport: ListerWatcher;
  readonly #selectors: Pick<Selection, 'labelSelector' | 'fieldSelector'>;
  readonly #t: Required<Omit<ReflectorTuning, 'logger'>>;
  readonly #streams: Stream<V>[];
  readonly #listeners = new Set<(event: E) => void>();
  #started: Promise<void> | undefined;
  #resolveSynced: (() => void) | undefined;
  #rejectSynced: ((err: Error) => void) | undefined;
  #loops: Promise<void>[] = [];
  #stopped = false;
  #lastSyncAt: number | null = null;
  readonly #counters = { restarts: 0, watchdogRestarts: 0, watchErrors: 0, goneRelists: 0, serverClosures: 0, listFailures: 0, relists: 0, watchEvents: 0, syncLosses: 0 };

  constructor(kind: Kind<V, E>, opts: ReflectorOptions) {
    this.#kind = kind;
    this.#what = kind.what;
    const { logger, kube, contentType, transport, namespaces: wanted, labelSelector, fieldSelector, ...tuning } = opts;
    this.#selectors = { labelSelector: labelSelector || undefined, fieldSelector: fieldSelector || undefined };
    this.#t = { ...DEFAULTS, random: Math.random, ...tuning };
    this.#log = logger;
    if (transport !== undefined) this.#transport = transport;
    else if (kube !== undefined) this.#transport = kubeListerWatcher(kube, kind, { watchInactivityMs: this.#t.watchdogMs + 60_000, contentType: contentType ?? 'protobuf' });
    else throw new Error(`the ${kind.what} source needs a kube access (or a transport)`);
    const namespaces = [...new Set((wanted ?? []).filter((n) => n !== ''))];
    this.#streams = (namespaces.length === 0 ? [undefined] : namespaces).map((namespace) => ({
      namespace,
      cache: new Map<string, V>(),
      resourceVersion: '',
      listed: false,
      stale: false,
      failures: 0,
      interrupt: undefined,
    }));
  }

  /** Subscribe to cache changes; returns an unsubscribe function. Errors are logged, never thrown. */
  onChange(listener: (event: E) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Starts every stream; resolves once every stream's initial list succeeded (retrying with
   * backoff until then). Rejects with SourceStoppedError if stop() comes first. Idempotent.
   */
  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    if (this.#stopped) return Promise.reject(new SourceStoppedError(this.#what));
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    this.#loops = this.#streams.map((s) => this.#run(s));
    return this.#started;
  }

  /**
   * The cache is complete and confirmed: every stream's initial list succeeded and no stream
   * is between a watch/list error and its next successful relist. Gate deletes on this.
   */
  synced(): boolean {
    return this.hasSynced() && !this.stale();
  }

  /** Every stream's initial list has succeeded at least once (what start() waits for). */
  hasSynced(): boolean {
    return this.#streams.every((s) => s.listed);
  }

  /** Some stream lost its watch and has not relisted yet: the cache may be behind. */
  stale(): boolean {
    return this.#streams.some((s) => s.stale);
  }

  get(key: string): V | undefined {
    for (const s of this.#streams) {
      const value = s.cache.get(key);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  /** Every record in the cache. */
  list(): V[] {
    return this.#streams.flatMap((s) => [...s.cache.values()]);
  }

  get size(): number {
    let n = 0;
    for (const s of this.#streams) n += s.cache.size;
    return n;
  }

  stats(): ReflectorStats {
    return { objects: this.size, synced: this.synced(), stale: this.stale(), lastSyncAt: this.#lastSyncAt, ...this.#counters };
  }

  /** Stops every stream; resolves once their loops have exited. The cache is kept. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      for (const s of this.#streams) s.interrupt?.();
      if (!this.hasSynced()) this.#rejectSynced?.(new SourceStoppedError(this.#what));
    }
    await Promise.all(this.#loops);
  }

  // ---- stream loop -------------------------------------------------------------------------

  async #run(s: Stream<V>): Promise<void> {
    let needList = true;
    while (!this.#stopped) {
      if (needList) {
        try {
          await this.#relist(s);
          needList = false;
        } catch (err) {
          if (this.#stopped) break;
          this.#counters.listFailures++;
          s.failures++;
          const delayMs = this.#backoffDelay(s);
          this.#log.warn({ namespace: s.namespace ?? '*', attempt: s.failures, delayMs, err: describeError(err) }, `${this.#what} list failed; retrying`);
          this.#markStale(s);
          await this.#sleep(s, delayMs);
          continue;
        }
      }
      if (this.#stopped) break;
      const started = Date.now();
      const outcome = await this.#watchOnce(s);
      if (this.#stopped || outcome.kind === 'stopped') break;
      needList = await this.#afterWatch(s, outcome, Date.now() - started);
    }
  }

  /** Counts, logs and waits out how a watch ended; true when the stream must relist. */
  async #afterWatch(s: Stream<V>, outcome: Exclude<WatchOutcome, { kind: 'stopped' }>, lastedMs: number): Promise<boolean> {
    if (lastedMs >= this.#t.healthyAfterMs) s.failures = 0;
    switch (outcome.kind) {
      case 'closed':
        // The server ended the watch (timeoutSeconds): resume from the last resourceVersion.
        // Routine every few minutes, so only at debug level; the count tells a watch that the
        // server dropped early apart (a stalled burst in the bench was one such suspect).
        // A watch that keeps ending at once is throttled like an error.
        this.#counters.serverClosures++;
        this.#log.debug({ namespace: s.namespace ?? '*', lastedMs, resourceVersion: s.resourceVersion }, `${this.#what} watch ended by the server; resuming`);
        if (lastedMs < this.#t.healthyAfterMs) {
          s.failures++;
          await this.#sleep(s, this.#backoffDelay(s));
        }
        return false;
      case 'watchdog':
        this.#counters.restarts++;
        this.#counters.watchdogRestarts++;
        this.#log.warn({ namespace: s.namespace ?? '*', silentMs: this.#t.watchdogMs }, `${this.#what} watch silent; restarting it`);
        return false;
      case 'gone':
      case 'error': {
        this.#counters.restarts++;
        if (outcome.kind === 'gone') this.#counters.goneRelists++;
        else this.#counters.watchErrors++;
        s.failures++;
        // A first 410 is routine (resourceVersion too old): relist at once.
        const delayMs = outcome.kind === 'gone' && s.failures === 1 ? 0 : this.#backoffDelay(s);
        this.#log.warn(
          { namespace: s.namespace ?? '*', attempt: s.failures, delayMs, err: describeError(outcome.error) },
          outcome.kind === 'gone' ? `${this.#what} watch expired (410); relisting` : `${this.#what} watch failed; relisting`,
        );
        s.resourceVersion = '';
        if (delayMs > 0) await this.#sleep(s, delayMs);
        return true;
      }
    }
  }

  async #relist(s: Stream<V>): Promise<void> {
    const seen = new Map<string, V>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      if (this.#stopped) return;
      const request = this.#transport.list({ ...this.#selection(s), limit: this.#t.pageSize, continueToken });
      const page = await interruptibleRequest(s, request, this.#t.listTimeoutMs, `${this.#what} list timed out`, () => new SourceStoppedError(this.#what));
      if (this.#stopped) return;
      for (const item of page.items) {
        const value = this.#valueOf(item);
        if (value !== undefined) seen.set(this.#kind.keyOf(value), value);
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken;
    } while (continueToken !== undefined);

    // Diff against this stream's part of the cache: cache first, then events (deletes, upserts).
    const deleted: V[] = [];
    const upserted: V[] = [];
    for (const [key, old] of s.cache) {
      if (!seen.has(key)) {
        s.cache.delete(key);
        deleted.push(old);
      }
    }
    for (const [key, value] of seen) {
      const previous = s.cache.get(key);
      s.cache.set(key, value);
      if (previous === undefined || this.#kind.changed(previous, value)) upserted.push(value);
    }
    s.resourceVersion = resourceVersion;
    const wasStale = this.stale();
    s.stale = false;
    const firstSync = !this.hasSynced();
    s.listed = true;
    this.#lastSyncAt = Date.now();
    this.#counters.relists++;
    this.#log.info(
      { namespace: s.namespace ?? '*', [`${this.#what}s`]: seen.size, deleted: deleted.length, changed: upserted.length, resourceVersion },
      `${this.#what}s listed`,
    );
    for (const value of deleted) this.#emit('delete', value);
    for (const value of upserted) this.#emit('upsert', value);
    if (firstSync && this.hasSynced()) this.#resolveSynced?.();
    if (wasStale && !this.stale()) this.#log.info(`${this.#what} cache fresh again`);
  }

  #watchOnce(s: Stream<V>): Promise<WatchOutcome> {
    // Like client-go: 5-10 min, so that watches are spread over API server instances.
    const timeoutSeconds = Math.floor(300 + this.#t.random() * 300);
    return watchOnce(s, {
      what: this.#what,
      open: (onEvent, onDone) => this.#transport.watch({ ...this.#selection(s), resourceVersion: s.resourceVersion, timeoutSeconds }, onEvent, onDone),
      connectTimeoutMs: this.#t.connectTimeoutMs,
      watchdogMs: this.#t.watchdogMs,
      onEvent: (type, object) => {
        this.#counters.watchEvents++;
        try {
          this.#applyWatchEvent(s, type, object);
        } catch (err) {
          this.#log.error({ err: describeError(err), type }, `could not apply ${this.#what} watch event`);
        }
      },
      // Stale at once, not after the loop got round to it.
      onFailed: () => this.#markStale(s),
    });
  }

  #applyWatchEvent(s: Stream<V>, type: string, object: unknown): void {
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        const value = this.#valueOf(object);
        if (value === undefined) break;
        const key = this.#kind.keyOf(value);
        const previous = s.cache.get(key);
        s.cache.set(key, value);
        if (previous === undefined || this.#kind.changed(previous, value)) this.#emit('upsert', value);
        break;
      }
      case 'DELETED': {
        const value = this.#valueOf(object);
        if (value === undefined) break;
        const key = this.#kind.keyOf(value);
        const previous = s.cache.get(key);
        // Only what the cache held is reported, with the record that was kept (and registered).
        if (previous !== undefined && s.cache.delete(key)) this.#emit('delete', previous);
        break;
      }
      case 'BOOKMARK':
        break;
      default:
        this.#log.debug({ type }, `ignoring unknown ${this.#what} watch event type`);
        return;
    }
    // Every event, bookmarks included, advances the resourceVersion.
    const rv = (object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
    if (typeof rv === 'string' && rv !== '') s.resourceVersion = rv;
  }

  #valueOf(object: unknown): V | undefined {
    return object !== null && typeof object === 'object' ? this.#kind.valueOf(object) : undefined;
  }

  #selection(s: Stream<V>): Selection {
    return { namespace: s.namespace, ...this.#selectors };
  }

  #backoffDelay(s: Stream<V>): number {
    return backoffDelay(s.failures, this.#t.backoff.baseMs, this.#t.backoff.maxMs, this.#t.random);
  }

  /** After its first list, a stream that hits an error may miss changes until it relists. */
  #markStale(s: Stream<V>): void {
    if (s.stale || !s.listed) return;
    s.stale = true;
    this.#counters.syncLosses++;
  }

  #emit(type: 'upsert' | 'delete', value: V): void {
    const event = this.#kind.eventOf(type, value);
    for (const listener of this.#listeners) {
      try {
        // An async listener's rejection is logged too, never left unhandled.
        const r: unknown = listener(event);
        if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
          (r as Promise<unknown>).then(undefined, (err: unknown) => this.#log.error({ err: describeError(err) }, `${this.#what} listener failed`));
        }
      } catch (err) {
        this.#log.error({ err: describeError(err) }, `${this.#what} listener failed`);
      }
    }
  }

  #sleep(s: Stream<V>, ms: number): Promise<void> {
    return this.#stopped ? Promise.resolve() : interruptibleSleep(s, ms);
  }
}
