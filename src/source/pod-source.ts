// Pod source: list + watch over pods, keeping only slim records (docs/decisions/0020).
//
// One stream per namespace (or one over all namespaces). Each stream loops:
//   list (paginated, consistent read) -> diff against the cache -> watch from the list's
//   resourceVersion (bookmarks on, server timeout 5-10 min) -> ...
// - the server ending a watch normally, or the watchdog firing on a silent watch, resumes the
//   watch from the last resourceVersion (no relist);
// - any error (connection reset, 401/403, in-stream or HTTP 410, list failure, connect
//   timeout) marks the stream stale and relists after a jittered exponential backoff.
// A relist deletes only pods that the fresh list no longer contains, so a gap never deletes a
// live pod, and deletes of pods that vanished during the gap are emitted once confirmed.
import { backoffDelay } from '../backoff.ts';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SlimPod } from '../types.ts';
import { listPage, watchStream } from './kube-http.ts';
import { slimChanged, toSlimPod } from './slim.ts';

export type PodEvent =
  | { readonly type: 'upsert'; readonly pod: SlimPod }
  | { readonly type: 'delete'; readonly pod: SlimPod };

export type PodListener = (event: PodEvent) => void;

export interface SyncLostInfo {
  /** The namespace of the stream that lost sync; undefined for the all-namespaces stream. */
  readonly namespace: string | undefined;
  readonly error: unknown;
}

export interface PodSourceStats {
  /** Pods in the slim cache. */
  readonly pods: number;
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
  readonly listFailures: number;
  readonly relists: number;
  readonly watchEvents: number;
}

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
}

/** One page of a pod list. */
export interface PodListPage {
  readonly items: readonly V1Pod[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

export interface WatchHandle {
  abort(): void;
}

/** The two API calls the source makes; the default (kubeTransport) talks to the API server. */
export interface PodTransport {
  list(req: {
    readonly namespace: string | undefined;
    readonly labelSelector: string | undefined;
    readonly limit: number;
    readonly continueToken: string | undefined;
  }): Promise<PodListPage>;
  /**
   * Opens a watch. `onEvent` gets each decoded event (type, object); `onDone` is called once when
   * the stream ends (null = closed normally). Resolves once the response headers arrived.
   */
  watch(
    req: {
      readonly namespace: string | undefined;
      readonly labelSelector: string | undefined;
      readonly resourceVersion: string;
      readonly timeoutSeconds: number;
    },
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<WatchHandle>;
}

export interface PodSourceOptions {
  readonly kubeConfig?: KubeConfig;
  /** Empty = all namespaces (one stream); otherwise one stream per namespace. */
  readonly namespaces: readonly string[];
  readonly labelSelector?: string | undefined;
  readonly logger: Logger;
  /** Restart a watch that delivered nothing (not even a bookmark) for this long. Default 5 min. */
  readonly watchdogMs?: number;
  /** Give up on a watch whose response headers did not arrive in time. Default 30 s. */
  readonly connectTimeoutMs?: number;
  /** Give up on one list page after this long. Default 60 s. */
  readonly listTimeoutMs?: number;
  /** Page size of lists. Default 500. */
  readonly pageSize?: number;
  /** Default {initialMs: 500, maxMs: 30_000}. */
  readonly backoff?: BackoffOptions;
  /** A watch that lasted this long counts as healthy and resets the backoff. Default 10 s. */
  readonly healthyAfterMs?: number;
  /** For tests: replaces the API server. */
  readonly transport?: PodTransport;
  /** For tests: [0,1) random source of the backoff jitter and watch timeouts. */
  readonly random?: () => number;
}

/** Thrown (rejected) by start() when stop() was called before the cache synced. */
export class PodSourceStoppedError extends Error {
  constructor() {
    super('pod source stopped before its cache synced');
    this.name = 'PodSourceStoppedError';
  }
}

/** HTTP status of an error (KubeHttpError.statusCode; client-node's ApiException.code). */
export function statusCodeOf(err: unknown): number | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.code === 'number') return e.code;
  return undefined;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = statusCodeOf(err);
    const text = code === undefined ? `${err.name}: ${err.message}` : `HTTP ${code}: ${err.message}`;
    // undici's "fetch failed" keeps the reason (ECONNREFUSED, certificate errors) in `cause`.
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${text} (${cause.message})` : text;
  }
  if (err !== null && typeof err === 'object') {
    const s = err as { code?: unknown; message?: unknown; reason?: unknown };
    return `status ${String(s.code)} ${String(s.reason ?? '')}: ${String(s.message ?? '')}`;
  }
  return String(err);
}

function podsPath(namespace: string | undefined): string {
  return namespace === undefined
    ? '/api/v1/pods'
    : `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`;
}

/**
 * The real transport: raw list pages and watch streams (kube-http.ts), parsed as plain JSON.
 * Items are not client-node's typed models: timestamps stay RFC 3339 strings, which toSlimPod
 * reads like the typed Dates.
 */
export function kubeTransport(kc: KubeConfig, opts: { watchInactivityMs: number }): PodTransport {
  return {
    async list(req) {
      const page = await listPage(kc, podsPath(req.namespace), req);
      return { ...page, items: page.items as readonly V1Pod[] };
    },
    watch(req, onEvent, onDone) {
      // inactivityMs: our watchdog detects silence; this is only a backstop, a minute beyond it
      // (bookmarks come about once a minute).
      return watchStream(kc, podsPath(req.namespace), { ...req, inactivityMs: opts.watchInactivityMs }, onEvent, onDone);
    },
  };
}

interface Stream {
  readonly namespace: string | undefined;
  resourceVersion: string;
  listed: boolean;
  stale: boolean;
  failures: number;
  /** Ends the current watch or sleep early (stop()). */
  interrupt: (() => void) | undefined;
}

type WatchOutcome =
  | { readonly kind: 'closed' }
  | { readonly kind: 'watchdog' }
  | { readonly kind: 'stopped' }
  | { readonly kind: 'gone'; readonly error: unknown }
  | { readonly kind: 'error'; readonly error: unknown };

export class PodSource {
  readonly #log: Logger;
  readonly #transport: PodTransport;
  readonly #labelSelector: string | undefined;
  readonly #watchdogMs: number;
  readonly #connectTimeoutMs: number;
  readonly #listTimeoutMs: number;
  readonly #pageSize: number;
  readonly #backoff: BackoffOptions;
  readonly #healthyAfterMs: number;
  readonly #random: () => number;
  readonly #streams: Stream[];
  readonly #pods = new Map<string, SlimPod>();
  readonly #listeners = new Set<PodListener>();
  readonly #syncLost = new Set<(info: SyncLostInfo) => void>();
  readonly #syncRestored = new Set<() => void>();
  #started: Promise<void> | undefined;
  #resolveSynced: (() => void) | undefined;
  #rejectSynced: ((err: Error) => void) | undefined;
  #loops: Promise<void>[] = [];
  #stopped = false;
  #lastSyncAt: number | null = null;
  #counters = {
    restarts: 0,
    watchdogRestarts: 0,
    watchErrors: 0,
    goneRelists: 0,
    listFailures: 0,
    relists: 0,
    watchEvents: 0,
  };

  constructor(opts: PodSourceOptions) {
    this.#log = opts.logger;
    this.#labelSelector = opts.labelSelector === '' ? undefined : opts.labelSelector;
    this.#watchdogMs = opts.watchdogMs ?? 5 * 60_000;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    this.#listTimeoutMs = opts.listTimeoutMs ?? 60_000;
    this.#pageSize = opts.pageSize ?? 500;
    this.#backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.#healthyAfterMs = opts.healthyAfterMs ?? 10_000;
    this.#random = opts.random ?? Math.random;
    if (opts.transport !== undefined) {
      this.#transport = opts.transport;
    } else if (opts.kubeConfig !== undefined) {
      this.#transport = kubeTransport(opts.kubeConfig, {
        watchInactivityMs: this.#watchdogMs + 60_000,
      });
    } else {
      throw new Error('PodSource needs a kubeConfig (or a transport)');
    }
    const namespaces = [...new Set(opts.namespaces.filter((n) => n !== ''))];
    this.#streams = (namespaces.length === 0 ? [undefined] : namespaces).map((namespace) => ({
      namespace,
      resourceVersion: '',
      listed: false,
      stale: false,
      failures: 0,
      interrupt: undefined,
    }));
  }

  /** Subscribe to cache changes; returns an unsubscribe function. Errors are logged, never thrown. */
  onChange(listener: PodListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when a stream hits an error: until the next successful relist the cache may miss
   * changes. Nothing is deleted from the cache until a fresh list confirms it. */
  onSyncLost(listener: (info: SyncLostInfo) => void): () => void {
    this.#syncLost.add(listener);
    return () => this.#syncLost.delete(listener);
  }

  /** Called when every stream is fresh again after a sync loss. */
  onSyncRestored(listener: () => void): () => void {
    this.#syncRestored.add(listener);
    return () => this.#syncRestored.delete(listener);
  }

  /**
   * Starts every stream; resolves once every stream's initial list succeeded (retrying with
   * backoff until then). Rejects with PodSourceStoppedError if stop() comes first. Idempotent.
   */
  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    if (this.#stopped) return Promise.reject(new PodSourceStoppedError());
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    this.#loops = this.#streams.map((s) => this.#run(s));
    return this.#started;
  }

  /**
   * The cache is complete and confirmed: every stream's initial list succeeded and no stream
   * is between a watch/list error and its next successful relist. Goes false during a gap
   * (onSyncLost) and true again after the relist (onSyncRestored). Gate deletes on this.
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

  get(uid: string): SlimPod | undefined {
    return this.#pods.get(uid);
  }

  list(): SlimPod[] {
    return [...this.#pods.values()];
  }

  get size(): number {
    return this.#pods.size;
  }

  stats(): PodSourceStats {
    return {
      pods: this.#pods.size,
      synced: this.synced(),
      stale: this.stale(),
      lastSyncAt: this.#lastSyncAt,
      ...this.#counters,
    };
  }

  /** Stops every stream; resolves once their loops have exited. The cache is kept. */
  async stop(): Promise<void> {
    if (this.#stopped) {
      await Promise.all(this.#loops);
      return;
    }
    this.#stopped = true;
    for (const s of this.#streams) s.interrupt?.();
    if (!this.hasSynced()) this.#rejectSynced?.(new PodSourceStoppedError());
    await Promise.all(this.#loops);
  }

  // ---- stream loop -------------------------------------------------------------------------

  async #run(s: Stream): Promise<void> {
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
          const delayMs = backoffDelay(s.failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random);
          this.#log.warn(
            { namespace: s.namespace ?? '*', attempt: s.failures, delayMs, err: describe(err) },
            'pod list failed; retrying',
          );
          if (s.listed) this.#markStale(s, err);
          await this.#sleep(s, delayMs);
          continue;
        }
      }
      if (this.#stopped) break;
      const started = Date.now();
      const outcome = await this.#watchOnce(s);
      if (this.#stopped || outcome.kind === 'stopped') break;
      const lastedMs = Date.now() - started;
      if (lastedMs >= this.#healthyAfterMs) s.failures = 0;
      switch (outcome.kind) {
        case 'closed':
          // The server ended the watch (timeoutSeconds): resume from the last resourceVersion.
          // A watch that keeps ending at once is throttled like an error.
          if (lastedMs < this.#healthyAfterMs) {
            s.failures++;
            await this.#sleep(s, backoffDelay(s.failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random));
          }
          break;
        case 'watchdog':
          this.#counters.restarts++;
          this.#counters.watchdogRestarts++;
          this.#log.warn(
            { namespace: s.namespace ?? '*', silentMs: this.#watchdogMs },
            'pod watch silent; restarting it',
          );
          break;
        case 'gone':
        case 'error': {
          this.#counters.restarts++;
          if (outcome.kind === 'gone') this.#counters.goneRelists++;
          else this.#counters.watchErrors++;
          s.failures++;
          // A first 410 is routine (resourceVersion too old): relist at once.
          const delayMs =
            outcome.kind === 'gone' && s.failures === 1
              ? 0
              : backoffDelay(s.failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random);
          this.#log.warn(
            { namespace: s.namespace ?? '*', attempt: s.failures, delayMs, err: describe(outcome.error) },
            outcome.kind === 'gone' ? 'pod watch expired (410); relisting' : 'pod watch failed; relisting',
          );
          this.#markStale(s, outcome.error);
          needList = true;
          s.resourceVersion = '';
          if (delayMs > 0) await this.#sleep(s, delayMs);
          break;
        }
      }
    }
  }

  async #relist(s: Stream): Promise<void> {
    const seen = new Map<string, SlimPod>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.#withTimeout(
        s,
        this.#transport.list({
          namespace: s.namespace,
          labelSelector: this.#labelSelector,
          limit: this.#pageSize,
          continueToken,
        }),
        this.#listTimeoutMs,
        'pod list timed out',
      );
      if (this.#stopped) return;
      for (const item of page.items) {
        const slim = toSlimPod(item);
        if (slim !== undefined) seen.set(slim.uid, slim);
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken;
    } while (continueToken !== undefined);

    // Diff against the cache: deletes only for pods of this stream the fresh list lacks.
    const deleted: SlimPod[] = [];
    const upserted: SlimPod[] = [];
    for (const [uid, old] of this.#pods) {
      if (s.namespace !== undefined && old.namespace !== s.namespace) continue;
      if (!seen.has(uid)) {
        this.#pods.delete(uid);
        deleted.push(old);
      }
    }
    for (const [uid, slim] of seen) {
      const prev = this.#pods.get(uid);
      this.#pods.set(uid, slim);
      if (prev === undefined || slimChanged(prev, slim)) upserted.push(slim);
    }
    s.resourceVersion = resourceVersion;
    const wasStale = this.stale();
    s.stale = false;
    const firstSync = !this.hasSynced();
    s.listed = true;
    this.#lastSyncAt = Date.now();
    this.#counters.relists++;
    this.#log.info(
      {
        namespace: s.namespace ?? '*',
        pods: seen.size,
        deleted: deleted.length,
        changed: upserted.length,
        resourceVersion,
      },
      'pods listed',
    );
    for (const pod of deleted) this.#emit({ type: 'delete', pod });
    for (const pod of upserted) this.#emit({ type: 'upsert', pod });
    if (firstSync && this.hasSynced()) this.#resolveSynced?.();
    if (wasStale && !this.stale()) {
      this.#log.info('pod cache fresh again');
      for (const l of this.#syncRestored) this.#safeCall(() => l(), 'sync-restored listener');
    }
  }

  #watchOnce(s: Stream): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolve) => {
      let settled = false;
      let handle: WatchHandle | undefined;
      let connected = false;
      let lastActivity = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (outcome: WatchOutcome): void => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (s.interrupt === interrupt) s.interrupt = undefined;
        handle?.abort();
        // Tell the controller at once, not after the loop got round to it.
        if (outcome.kind === 'gone' || outcome.kind === 'error') this.#markStale(s, outcome.error);
        resolve(outcome);
      };
      const interrupt = (): void => finish({ kind: 'stopped' });
      s.interrupt = interrupt;
      const check = (): void => {
        const now = Date.now();
        if (!connected) {
          finish({ kind: 'error', error: new Error('pod watch connect timed out') });
          return;
        }
        const idle = now - lastActivity;
        if (idle >= this.#watchdogMs) finish({ kind: 'watchdog' });
        else timer = setTimeout(check, this.#watchdogMs - idle);
      };
      timer = setTimeout(check, this.#connectTimeoutMs);

      const onEvent = (type: string, object: unknown): void => {
        if (settled) return;
        lastActivity = Date.now();
        this.#counters.watchEvents++;
        if (type === 'ERROR') {
          const status = object as { code?: unknown } | null;
          finish(
            status?.code === 410 ? { kind: 'gone', error: object } : { kind: 'error', error: object },
          );
          return;
        }
        try {
          this.#applyWatchEvent(s, type, object);
        } catch (err) {
          this.#log.error({ err: describe(err), type }, 'could not apply pod watch event');
        }
      };
      const onDone = (err: unknown): void => {
        if (err === null || err === undefined) finish({ kind: 'closed' });
        else if (err instanceof Error && err.name === 'TimeoutError') finish({ kind: 'watchdog' });
        else if (statusCodeOf(err) === 410) finish({ kind: 'gone', error: err });
        else finish({ kind: 'error', error: err });
      };
      let promise: Promise<WatchHandle>;
      try {
        promise = this.#transport.watch(
          {
            namespace: s.namespace,
            labelSelector: this.#labelSelector,
            resourceVersion: s.resourceVersion,
            // Like client-go: 5-10 min, so that watches are spread over API server instances.
            timeoutSeconds: Math.floor(300 + this.#random() * 300),
          },
          onEvent,
          onDone,
        );
      } catch (err) {
        promise = Promise.reject(err);
      }
      promise.then(
        (h) => {
          handle = h;
          if (settled) {
            h.abort();
            return;
          }
          connected = true;
          lastActivity = Date.now();
          if (timer !== undefined) clearTimeout(timer);
          timer = setTimeout(check, this.#watchdogMs);
        },
        (err: unknown) => onDone(err ?? new Error('pod watch failed')),
      );
    });
  }

  #applyWatchEvent(s: Stream, type: string, object: unknown): void {
    const obj = object as V1Pod | null;
    const rv = obj?.metadata?.resourceVersion;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        const slim = obj === null ? undefined : toSlimPod(obj);
        if (slim !== undefined) {
          const prev = this.#pods.get(slim.uid);
          this.#pods.set(slim.uid, slim);
          if (prev === undefined || slimChanged(prev, slim)) this.#emit({ type: 'upsert', pod: slim });
        }
        break;
      }
      case 'DELETED': {
        const slim = obj === null ? undefined : toSlimPod(obj);
        if (slim !== undefined) {
          const prev = this.#pods.get(slim.uid);
          this.#pods.delete(slim.uid);
          this.#emit({ type: 'delete', pod: prev ?? slim });
        }
        break;
      }
      case 'BOOKMARK':
        break;
      default:
        this.#log.debug({ type }, 'ignoring unknown pod watch event type');
        return;
    }
    if (typeof rv === 'string' && rv !== '') s.resourceVersion = rv;
  }

  #markStale(s: Stream, error: unknown): void {
    if (s.stale || !s.listed) return;
    s.stale = true;
    const info: SyncLostInfo = { namespace: s.namespace, error };
    for (const l of this.#syncLost) this.#safeCall(() => l(info), 'sync-lost listener');
  }

  #emit(event: PodEvent): void {
    for (const l of this.#listeners) this.#safeCall(() => l(event), 'pod listener');
  }

  #safeCall(fn: () => unknown, what: string): void {
    try {
      const r = fn();
      if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
        (r as Promise<unknown>).then(undefined, (err: unknown) =>
          this.#log.error({ err: describe(err) }, `${what} failed`),
        );
      }
    } catch (err) {
      this.#log.error({ err: describe(err) }, `${what} failed`);
    }
  }

  #sleep(s: Stream, ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        if (s.interrupt === done) s.interrupt = undefined;
        resolve();
      }
      s.interrupt = done;
    });
  }

  /** Races a request against a timeout and against stop(). */
  #withTimeout<T>(s: Stream, promise: Promise<T>, ms: number, message: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#stopped) {
        promise.catch(() => {});
        reject(new PodSourceStoppedError());
        return;
      }
      const interrupt = (): void => {
        end();
        reject(new PodSourceStoppedError());
      };
      const end = (): void => {
        clearTimeout(timer);
        if (s.interrupt === interrupt) s.interrupt = undefined;
      };
      const timer = setTimeout(() => {
        end();
        reject(new Error(message));
      }, ms);
      s.interrupt = interrupt;
      promise.then(
        (v) => {
          end();
          resolve(v);
        },
        (err: unknown) => {
          end();
          reject(err instanceof Error ? err : new Error(describe(err)));
        },
      );
    });
  }
}
