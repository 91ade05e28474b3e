// Namespace source: list + watch over Namespaces, keeping only one annotation per namespace
// (the service grants, docs/decisions/0009). Same loop as the pod source (decision 0020),
// smaller: one cluster-wide stream, paginated list, watch from the list's resourceVersion
// with bookmarks, jittered backoff and relist after any error, a watchdog for silence.
// A relist only reports namespaces whose annotation changed, appeared or vanished.
// The loop itself is generic (MetadataValueSource: one string per named object, read from
// its metadata); the node source (node -> zone label) reuses it.
import type { KubeConfig, V1Namespace, V1ObjectMeta } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay } from '../backoff.ts';
import { listPage, watchStream } from './kube-http.ts';
import { statusCodeOf } from './pod-source.ts';

/** An object appeared or its value changed (value undefined = absent), or it was deleted. */
export type ValueEvent =
  | { readonly type: 'upsert'; readonly name: string; readonly value: string | undefined }
  | { readonly type: 'delete'; readonly name: string };

/** A namespace appeared or its annotation changed (value undefined = absent), or it was deleted. */
export type NamespaceEvent = ValueEvent;

/** Any Kubernetes object: only its metadata is read. */
export interface MetadataObject {
  readonly metadata?: V1ObjectMeta | undefined;
}

export interface ObjectListPage {
  readonly items: readonly MetadataObject[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

export interface NamespaceListPage extends ObjectListPage {
  readonly items: readonly V1Namespace[];
}

export interface ObjectTransport {
  list(req: { readonly limit: number; readonly continueToken: string | undefined }): Promise<ObjectListPage>;
  /** Opens a watch; resolves once the response headers arrived. onDone(null) = closed normally. */
  watch(
    req: { readonly resourceVersion: string; readonly timeoutSeconds: number },
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<{ abort(): void }>;
}

export interface NamespaceTransport extends ObjectTransport {
  list(req: { readonly limit: number; readonly continueToken: string | undefined }): Promise<NamespaceListPage>;
}

/** Loop tuning shared by every metadata value source (defaults suit production). */
export interface SourceTuning {
  readonly logger: Logger;
  readonly watchdogMs?: number;
  readonly connectTimeoutMs?: number;
  readonly pageSize?: number;
  readonly listTimeoutMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly healthyAfterMs?: number;
  readonly random?: () => number;
}

export interface NamespaceSourceOptions extends SourceTuning {
  readonly kubeConfig?: KubeConfig;
  /** The full annotation name kept per namespace, e.g. "etcd-registrar.io/allowed-services". */
  readonly annotation: string;
  readonly transport?: NamespaceTransport;
}

export interface MetadataValueSourceOptions extends SourceTuning {
  /** Singular resource name for logs and errors: "namespace", "node". */
  readonly what: string;
  readonly transport: ObjectTransport;
  /** The one string kept per object (undefined = absent). */
  readonly valueOf: (metadata: V1ObjectMeta) => string | undefined;
}

/** List + watch of a cluster-scoped resource at `path` (e.g. /api/v1/nodes), as plain JSON. */
export function kubeClusterScopedTransport(kc: KubeConfig, opts: { watchInactivityMs: number }, path: string): ObjectTransport {
  return {
    async list(req) {
      const page = await listPage(kc, path, req);
      return { ...page, items: page.items as readonly MetadataObject[] };
    },
    watch(req, onEvent, onDone) {
      // See pod-source: our watchdog detects silence; this inactivity timer is only a backstop.
      return watchStream(kc, path, { ...req, inactivityMs: opts.watchInactivityMs }, onEvent, onDone);
    },
  };
}

/**
 * The transport a source was given, or the real one on its kubeConfig; the client-side
 * inactivity timer sits a minute beyond the source's own watchdog.
 */
export function transportOf(
  opts: { readonly transport?: ObjectTransport | undefined; readonly kubeConfig?: KubeConfig | undefined; readonly watchdogMs?: number | undefined },
  what: string,
  make: (kc: KubeConfig, o: { watchInactivityMs: number }) => ObjectTransport,
): ObjectTransport {
  if (opts.transport !== undefined) return opts.transport;
  if (opts.kubeConfig === undefined) throw new Error(`${what} needs a kubeConfig (or a transport)`);
  return make(opts.kubeConfig, { watchInactivityMs: (opts.watchdogMs ?? 5 * 60_000) + 60_000 });
}

export function kubeNamespaceTransport(kc: KubeConfig, opts: { watchInactivityMs: number }): ObjectTransport {
  return kubeClusterScopedTransport(kc, opts, '/api/v1/namespaces');
}

type WatchOutcome =
  | { readonly kind: 'closed' }
  | { readonly kind: 'watchdog' }
  | { readonly kind: 'stopped' }
  | { readonly kind: 'error'; readonly gone: boolean; readonly error: unknown };

export class MetadataValueSource {
  readonly #log: Logger;
  readonly #what: string;
  readonly #valueOfMeta: (metadata: V1ObjectMeta) => string | undefined;
  readonly #transport: ObjectTransport;
  readonly #watchdogMs: number;
  readonly #connectTimeoutMs: number;
  readonly #pageSize: number;
  readonly #listTimeoutMs: number;
  readonly #backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly #healthyAfterMs: number;
  readonly #random: () => number;
  /** name -> value ('' is a value; undefined = absent). */
  readonly #values = new Map<string, string | undefined>();
  readonly #listeners = new Set<(event: ValueEvent) => void>();
  #resourceVersion = '';
  #listed = false;
  #stale = false;
  #stopped = false;
  #failures = 0;
  #interrupt: (() => void) | undefined;
  #started: Promise<void> | undefined;
  #resolveSynced: (() => void) | undefined;
  #rejectSynced: ((err: Error) => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #counters = { relists: 0, restarts: 0, listFailures: 0 };

  constructor(opts: MetadataValueSourceOptions) {
    this.#log = opts.logger;
    this.#what = opts.what;
    this.#valueOfMeta = opts.valueOf;
    this.#transport = opts.transport;
    this.#watchdogMs = opts.watchdogMs ?? 5 * 60_000;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    this.#pageSize = opts.pageSize ?? 500;
    this.#listTimeoutMs = opts.listTimeoutMs ?? 60_000;
    this.#backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.#healthyAfterMs = opts.healthyAfterMs ?? 10_000;
    this.#random = opts.random ?? Math.random;
  }

  onChange(listener: (event: ValueEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once the first list succeeded (retrying with backoff until then). Idempotent. */
  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    if (this.#stopped) this.#rejectSynced?.(new Error(`${this.#what} source stopped before its cache synced`));
    else this.#loop = this.#run();
    return this.#started;
  }

  /** Listed at least once and not between a watch error and its relist. */
  synced(): boolean {
    return this.#listed && !this.#stale;
  }

  hasSynced(): boolean {
    return this.#listed;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  /** The value kept for an object (undefined = unknown object or absent value). */
  value(name: string): string | undefined {
    return this.#values.get(name);
  }

  get size(): number {
    return this.#values.size;
  }

  stats(): { objects: number; synced: boolean; relists: number; restarts: number; listFailures: number } {
    return { objects: this.#values.size, synced: this.synced(), ...this.#counters };
  }

  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#interrupt?.();
      if (!this.#listed) this.#rejectSynced?.(new Error(`${this.#what} source stopped before its cache synced`));
    }
    await this.#loop;
  }

  async #run(): Promise<void> {
    let needList = true;
    while (!this.#stopped) {
      if (needList) {
        try {
          await this.#relist();
          needList = false;
        } catch (err) {
          if (this.#stopped) break;
          this.#counters.listFailures++;
          this.#failures++;
          const delayMs = backoffDelay(this.#failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random);
          this.#log.warn({ attempt: this.#failures, delayMs, err: describe(err) }, `${this.#what} list failed; retrying`);
          if (this.#listed) this.#stale = true;
          await this.#sleep(delayMs);
          continue;
        }
      }
      if (this.#stopped) break;
      const started = Date.now();
      const outcome = await this.#watchOnce();
      if (this.#stopped || outcome.kind === 'stopped') break;
      const lastedMs = Date.now() - started;
      if (lastedMs >= this.#healthyAfterMs) this.#failures = 0;
      if (outcome.kind === 'closed') {
        if (lastedMs < this.#healthyAfterMs) {
          this.#failures++;
          await this.#sleep(backoffDelay(this.#failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random));
        }
        continue;
      }
      this.#counters.restarts++;
      if (outcome.kind === 'watchdog') {
        this.#log.warn({ silentMs: this.#watchdogMs }, `${this.#what} watch silent; restarting it`);
        continue;
      }
      this.#failures++;
      const delayMs = outcome.gone && this.#failures === 1 ? 0 : backoffDelay(this.#failures, this.#backoff.initialMs, this.#backoff.maxMs, this.#random);
      this.#log.warn({ attempt: this.#failures, delayMs, err: describe(outcome.error) }, outcome.gone ? `${this.#what} watch expired (410); relisting` : `${this.#what} watch failed; relisting`);
      // Stale: the last known grants keep applying (nothing is revoked by a gap) until the relist.
      this.#stale = true;
      this.#resourceVersion = '';
      needList = true;
      if (delayMs > 0) await this.#sleep(delayMs);
    }
  }

  async #relist(): Promise<void> {
    const seen = new Map<string, string | undefined>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.#interruptible(this.#transport.list({ limit: this.#pageSize, continueToken }), this.#listTimeoutMs);
      if (this.#stopped) return;
      for (const item of page.items) {
        const name = item.metadata?.name;
        if (name !== undefined) seen.set(name, this.#valueOf(item));
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken;
    } while (continueToken !== undefined);
    const events: ValueEvent[] = [];
    for (const name of this.#values.keys()) {
      if (!seen.has(name)) {
        this.#values.delete(name);
        events.push({ type: 'delete', name });
      }
    }
    for (const [name, value] of seen) {
      const known = this.#values.has(name);
      if (!known || this.#values.get(name) !== value) events.push({ type: 'upsert', name, value });
      this.#values.set(name, value);
    }
    this.#resourceVersion = resourceVersion;
    const first = !this.#listed;
    this.#listed = true;
    this.#stale = false;
    this.#counters.relists++;
    this.#log.info({ [`${this.#what}s`]: seen.size, changed: events.length, resourceVersion }, `${this.#what}s listed`);
    for (const event of events) this.#emit(event);
    if (first) this.#resolveSynced?.();
  }

  #valueOf(item: MetadataObject): string | undefined {
    return item.metadata === undefined ? undefined : this.#valueOfMeta(item.metadata);
  }

  #watchOnce(): Promise<WatchOutcome> {
    type Outcome = WatchOutcome;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let handle: { abort(): void } | undefined;
      let connected = false;
      let lastActivity = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (outcome: Outcome): void => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (this.#interrupt === interrupt) this.#interrupt = undefined;
        handle?.abort();
        if (outcome.kind === 'error') this.#stale = true;
        resolve(outcome);
      };
      const interrupt = (): void => finish({ kind: 'stopped' });
      this.#interrupt = interrupt;
      const check = (): void => {
        if (!connected) {
          finish({ kind: 'error', gone: false, error: new Error(`${this.#what} watch connect timed out`) });
          return;
        }
        const idle = Date.now() - lastActivity;
        if (idle >= this.#watchdogMs) finish({ kind: 'watchdog' });
        else timer = setTimeout(check, this.#watchdogMs - idle);
      };
      timer = setTimeout(check, this.#connectTimeoutMs);
      const onEvent = (type: string, object: unknown): void => {
        if (settled) return;
        lastActivity = Date.now();
        if (type === 'ERROR') {
          const code = (object as { code?: unknown } | null)?.code;
          finish({ kind: 'error', gone: code === 410, error: object });
          return;
        }
        this.#applyWatchEvent(type, object as MetadataObject | null);
      };
      const onDone = (err: unknown): void => {
        if (err === null || err === undefined) finish({ kind: 'closed' });
        else if (err instanceof Error && err.name === 'TimeoutError') finish({ kind: 'watchdog' });
        else finish({ kind: 'error', gone: statusCodeOf(err) === 410, error: err });
      };
      let promise: Promise<{ abort(): void }>;
      try {
        promise = this.#transport.watch({ resourceVersion: this.#resourceVersion, timeoutSeconds: Math.floor(300 + this.#random() * 300) }, onEvent, onDone);
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
        (err: unknown) => onDone(err ?? new Error(`${this.#what} watch failed`)),
      );
    });
  }

  #applyWatchEvent(type: string, item: MetadataObject | null): void {
    const name = item?.metadata?.name;
    const rv = item?.metadata?.resourceVersion;
    if (item !== null && name !== undefined) {
      if (type === 'ADDED' || type === 'MODIFIED') {
        const value = this.#valueOf(item);
        const changed = !this.#values.has(name) || this.#values.get(name) !== value;
        this.#values.set(name, value);
        if (changed) this.#emit({ type: 'upsert', name, value });
      } else if (type === 'DELETED') {
        if (this.#values.delete(name)) this.#emit({ type: 'delete', name });
      }
    }
    if (typeof rv === 'string' && rv !== '') this.#resourceVersion = rv;
  }

  #emit(event: ValueEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#log.error({ err: describe(err) }, `${this.#what} listener failed`);
      }
    }
  }

  /** Races a request against a timeout and against stop(). */
  #interruptible<T>(promise: Promise<T>, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const end = (): void => {
        clearTimeout(timer);
        if (this.#interrupt === interrupt) this.#interrupt = undefined;
      };
      const interrupt = (): void => {
        end();
        reject(new Error(`${this.#what} source stopped`));
      };
      const timer = setTimeout(() => {
        end();
        reject(new Error(`${this.#what} list timed out`));
      }, ms);
      this.#interrupt = interrupt;
      promise.then(
        (value) => {
          end();
          resolve(value);
        },
        (err: unknown) => {
          end();
          reject(err instanceof Error ? err : new Error(describe(err)));
        },
      );
    });
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.#interrupt === done) this.#interrupt = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#interrupt = done;
    });
  }
}

/** Namespaces, keeping one annotation each (the service grants). */
export class NamespaceSource extends MetadataValueSource {
  constructor(opts: NamespaceSourceOptions) {
    const { annotation } = opts;
    const transport = transportOf(opts, 'NamespaceSource', kubeNamespaceTransport);
    super({ ...opts, what: 'namespace', transport, valueOf: (metadata) => ownString(metadata.annotations, annotation) });
  }

  annotation(name: string): string | undefined {
    return this.value(name);
  }
}

/** record[key] when it is an own string property (never '__proto__' and friends). */
export function ownString(record: Readonly<Record<string, string>> | undefined, key: string): string | undefined {
  if (record === undefined || !Object.hasOwn(record, key)) return undefined;
  const value = record[key];
  return typeof value === 'string' ? value : undefined;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = statusCodeOf(err);
    return code === undefined ? `${err.name}: ${err.message}` : `HTTP ${String(code)}: ${err.message}`;
  }
  if (err !== null && typeof err === 'object') {
    const s = err as { code?: unknown; message?: unknown };
    return `status ${String(s.code)}: ${String(s.message ?? '')}`;
  }
  return String(err);
}
