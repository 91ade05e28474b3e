// The controller's picture of etcd: the keys under the root as last read or written by us.
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import { isOurs } from '../ownership.ts';
import type { CurrentEntry, ReadBasis } from '../types.ts';
import type { RegistryPort } from './ports.ts';

export interface EtcdMirrorDeps {
  readonly registry: RegistryPort;
  readonly metrics: Metrics | undefined;
  readonly logger: Logger;
}

export class EtcdMirror {
  readonly #deps: EtcdMirrorDeps;
  /**
   * How often a refresh reads every key under the root instead of only the directories that
   * hold our keys or wanted keys (docs/decisions/0013); 0 = every refresh. The first always does.
   */
  readonly #fullReadIntervalMs: number;
  #entries = new Map<string, CurrentEntry>();
  /** Keys written since the running read started: the read must not overwrite them. */
  #writtenDuringRead: Set<string> | undefined;
  /** performance.now() of the last full read of the key root; undefined = the next read is full. */
  #lastFullReadAt: number | undefined;
  /**
   * What the last read saw of the directories a scoped read covers (a full read reports them
   * too), the mirror holding exactly what it read: every change since shows in etcd as a later
   * revision or a different count, so the next scoped read asks etcd whether anything changed
   * instead of reading every key again.
   */
  #basis: ReadBasis | undefined;

  constructor(deps: EtcdMirrorDeps, fullReadIntervalMs: number) {
    this.#deps = deps;
    this.#fullReadIntervalMs = fullReadIntervalMs;
  }

  get entries(): ReadonlyMap<string, CurrentEntry> {
    return this.#entries;
  }

  get(key: string): CurrentEntry | undefined {
    return this.#entries.get(key);
  }

  /** A write to the key was answered: a read running meanwhile must keep what the answer says. */
  noteWrite(key: string): void {
    this.#writtenDuringRead?.add(key);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  set(key: string, entry: CurrentEntry): void {
    this.#entries.set(key, entry);
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Another writer may have written meanwhile (e.g. while we were a standby): the next read covers every key. */
  readEverythingNext(): void {
    this.#lastFullReadAt = undefined;
  }

  /** Keys ours by the one ownership rule (adoptable leases included, as the plan counts them). */
  ownedKeyCount(): number {
    const { registry } = this.#deps;
    const ownership = { leaseId: registry.leaseId(), adoptableLeases: registry.adoptableLeases() };
    let count = 0;
    for (const entry of this.#entries.values()) if (isOurs(entry.lease, ownership)) count++;
    return count;
  }

  /**
   * Replaces the mirror with a fresh read, keeping keys written while the read ran. The read
   * covers every key under the root at start-up and every fullReadIntervalMs; otherwise only the
   * directories that can hold our keys or `wantedKeys` (docs/decisions/0013), so that foreign
   * keys elsewhere under the root cost nothing.
   */
  async refresh(wantedKeys: Iterable<string>): Promise<void> {
    const full = this.#fullReadDue();
    const current = await this.#read(wantedKeys, full);
    if (full) await this.#markDirectories(current.values());
  }

  #fullReadDue(): boolean {
    const interval = this.#fullReadIntervalMs;
    return this.#lastFullReadAt === undefined || interval === 0 || performance.now() - this.#lastFullReadAt >= interval;
  }

  async #read(wantedKeys: Iterable<string>, full: boolean): Promise<Map<string, CurrentEntry>> {
    const { registry, metrics } = this.#deps;
    const written = new Set<string>();
    this.#writtenDuringRead = written;
    try {
      const startedAt = performance.now();
      const read = await registry.readScoped(wantedKeys, { full, unchangedSince: full ? undefined : this.#basis });
      if ('unchanged' in read) {
        // Nothing in our directories changed since the last read: the mirror is current.
        this.#basis = read;
        metrics?.etcdReads.inc({ scope: 'unchanged' });
        return this.#entries;
      }
      const current = read.entries;
      this.#basis = read.revision === undefined || read.directories === undefined ? undefined : { directories: read.directories, revision: read.revision, counts: read.counts };
      if (full) this.#lastFullReadAt = startedAt;
      metrics?.etcdReads.inc({ scope: full ? 'full' : 'scoped' });
      // The fresh read becomes the mirror (no merge pass over tens of thousands of keys; foreign
      // keys outside our directories are not kept); the few keys written meanwhile keep the
      // state their writes left.
      for (const key of written) {
        const entry = this.#entries.get(key);
        if (entry === undefined) current.delete(key);
        else current.set(key, entry);
      }
      this.#entries = current;
      return current;
    } finally {
      this.#writtenDuringRead = undefined;
    }
  }

  /**
   * Keys of ours in directories without a marker (written by a version before markers, or a
   * marker deleted by hand) would be invisible to scoped reads: mark them. If that fails, the
   * next read is a full one again.
   */
  async #markDirectories(entries: Iterable<CurrentEntry>): Promise<void> {
    try {
      await this.#deps.registry.markDirectories(entries);
    } catch (error) {
      this.#lastFullReadAt = undefined;
      this.#deps.metrics?.etcdErrors.inc({ op: 'mark' });
      this.#deps.logger.warn({ err: error }, 'could not mark the directories of our keys; the next reconcile reads every key again');
    }
  }
}
