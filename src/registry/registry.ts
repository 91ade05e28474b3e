// The only code in etcd-registrar that talks to etcd: reads the key space with lease ids,
// applies Changes in fenced, batched transactions, and keeps the owner's data lease. This is
// the door: its lifecycle and checks; reads.ts, writes.ts (with txn.ts and directories.ts)
// and lease.ts do the work.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Leadership } from './election.ts';
import type { ApplyOptions, ApplyResult, Change, CurrentEntry, Fence, ReadBasis } from '../types.ts';
import { createClient, explainConnectionError, type RegistryClient, type RegistryEtcd } from './client.ts';
import { DirectoryMarkers } from './directories.ts';
import { assertWritable, keyDirectory, RegistryProgrammingError, type KeySpace } from './keys.ts';
import { LeaseKeeper } from './lease.ts';
import type { LeaseChangedEvent, LeaseLostEvent, LeaseMode } from './lease-types.ts';
import { registrySettings, type RegistryOptions } from './options.ts';
import { readDirectories, readEverything, type ReadContext, type ScopedRead, type UnchangedRead } from './reads.ts';
import { errorMessage, isNoSpace, type RetryHooks, type RetryPolicy } from './retry.ts';
import { refusal, type Item, type ResultSlots } from './txn.ts';
import { applyItems, writeMarkers, type WriteContext } from './writes.ts';

export { DEFAULT_OWNER_RECORD_PREFIX, type RegistryOptions } from './options.ts';
export type { ApplyResult, Fence, ScopedRead, UnchangedRead };

export interface StartOptions {
  /** Default 'owner'. See LeaseMode: 'adopt-only' never grants, 'read-only' never writes. */
  readonly mode?: LeaseMode | undefined;
}

export type { LeaseMode } from './lease-types.ts';

export interface RegistryEvents {
  keepalive: [at: number];
  leaseChanged: [event: LeaseChangedEvent];
  leaseLost: [event: LeaseLostEvent];
  etcdError: [event: { op: string; error: string }];
}

export type { LeaseChangedEvent, LeaseLostEvent } from './lease-types.ts';

export class EtcdRegistry extends EventEmitter<RegistryEvents> {
  readonly #opts: RegistryOptions;
  readonly #log: Logger;
  readonly #space: KeySpace;
  readonly #recordKey: string;
  readonly #markers: DirectoryMarkers;
  readonly #retry: RetryPolicy;
  readonly #maxOps: number;
  readonly #inflight: number;
  readonly #pageSize: number;
  #client: RegistryEtcd | undefined;
  #connection: RegistryClient | undefined;
  #keeper: LeaseKeeper | undefined;
  #state: 'new' | 'starting' | 'started' | 'closed' = 'new';
  #mode: LeaseMode = 'owner';
  /** etcd's answer while its NOSPACE alarm rejects our writes; undefined once a write applies. */
  #outOfSpace: string | undefined;

  constructor(opts: RegistryOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.logger.child({ module: 'registry' });
    const settings = registrySettings(opts);
    this.#recordKey = settings.recordKey;
    this.#space = settings.space;
    this.#markers = new DirectoryMarkers(this.#space.root, this.#recordKey);
    this.#maxOps = settings.maxOps;
    this.#inflight = settings.inflight;
    this.#pageSize = settings.pageSize;
    this.#retry = settings.retry;
  }

  /** Connects, adopts the owner's lease if still alive (else grants one), starts keepalives. */
  async start(options: StartOptions = {}): Promise<void> {
    if (this.#state !== 'new') throw new RegistryProgrammingError(`registry: start() in state ${this.#state}`);
    this.#state = 'starting';
    this.#mode = options.mode ?? 'owner';
    let connection: RegistryClient;
    try {
      connection = await createClient({
        endpoints: this.#opts.endpoints,
        callTimeoutMs: this.#opts.callTimeoutMs,
        tls: this.#opts.tls,
        auth: this.#opts.auth,
        credentialRefreshMs: this.#opts.credentialRefreshMs,
        report: (level, message) => this.#log[level]({ event: 'credentials' }, message),
      });
    } catch (err) {
      this.#state = 'new';
      throw err;
    }
    const client = connection.etcd;
    this.#client = client;
    this.#connection = connection;
    const keeper = new LeaseKeeper({
      mode: this.#mode,
      client,
      ownerId: this.#opts.ownerId,
      recordKey: this.#recordKey,
      ttlSeconds: this.#opts.leaseTtlSeconds,
      retry: this.#retry,
      recordCheckMs: this.#opts.ownerRecordCheckMs,
      logger: this.#log,
      hooks: {
        keepalive: (at) => this.emit('keepalive', at),
        leaseChanged: (ev) => this.emit('leaseChanged', ev),
        leaseLost: (ev) => this.emit('leaseLost', ev),
        etcdError: (op, error) => this.#reportError(op, error),
      },
    });
    this.#keeper = keeper;
    try {
      await keeper.start();
    } catch (err) {
      // Back to 'new' so that the caller can retry start() (etcd may be down at boot).
      this.#state = 'new';
      this.#keeper = undefined;
      this.#client = undefined;
      this.#connection = undefined;
      const explained = await explainConnectionError(err, connection, this.#opts.endpoints, this.#opts.tls?.serverName);
      await keeper.close();
      connection.close();
      throw explained;
    }
    if (this.#state !== 'starting') {
      // close() raced with start().
      await keeper.close();
      connection.close();
      throw new Error('registry: closed while starting');
    }
    this.#state = 'started';
  }

  /**
   * The data lease every put attaches, as etcd's decimal id; '0' (etcd's "no lease", which
   * owns nothing) before start() or when adopt-only/read-only found no live lease.
   */
  leaseId(): string {
    return this.#keeper?.current ?? '0';
  }

  /** Earlier leases of this owner whose keys are still ours (repair them onto leaseId()). */
  adoptableLeases(): ReadonlySet<string> {
    return this.#keeper?.adoptable() ?? new Set();
  }

  /** True for the current lease and for adoptable ones. */
  ownsLease(lease: string): boolean {
    return this.#keeper?.owned(lease) ?? false;
  }

  lastKeepaliveAt(): number | undefined {
    return this.#keeper?.lastAck;
  }

  /** Started, and the lease was confirmed alive by etcd within the last TTL. */
  healthy(): boolean {
    return this.#state === 'started' && (this.#keeper?.healthy() ?? false);
  }

  /**
   * Why etcd rejects our writes for lack of space (its NOSPACE alarm: backend quota exceeded),
   * or undefined. Reads, deletes and lease keepalives still work then; the keys and the lease
   * survive. Cleared by the first write that applies (after an operator compacted,
   * defragmented and disarmed the alarm).
   */
  outOfSpace(): string | undefined {
    return this.#outOfSpace;
  }

  #noteWriteOutcome(error: unknown): void {
    if (error !== undefined && isNoSpace(error)) {
      if (this.#outOfSpace === undefined) {
        this.#log.error({ err: errorMessage(error) }, 'etcd is out of space (NOSPACE alarm): registrations cannot be written until an operator compacts, defragments and disarms the alarm; retrying with backoff');
      }
      this.#outOfSpace = errorMessage(error);
    } else if (error === undefined && this.#outOfSpace !== undefined) {
      this.#outOfSpace = undefined;
      this.#log.info('etcd accepts writes again (NOSPACE alarm cleared)');
    }
  }

  /**
   * Every key under the key root (owner records and reserved prefixes excluded), read in
   * pages pinned to the revision of the first page, so the result is one consistent view.
   */
  async readAll(): Promise<Map<string, CurrentEntry>> {
    return (await readDirectories(this.#reads(), () => [this.#space.root])).entries;
  }

  /**
   * The keys of the directories that can hold this owner's keys (docs/decisions/0013): the
   * directories marked in etcd (a put into a directory marks it in the same transaction, on
   * the data lease) and those of `wantedKeys` (the keys the caller wants to exist), read at one
   * revision. Keys in other directories are neither ours nor wanted. A marker on the root (a
   * layout with very many directories) makes it a full read. With `full`, every key under
   * the root is read, and the same keys and directories are returned, plus keys on our leases
   * in unmarked directories (see markDirectories). With `unchangedSince` (what the caller's
   * last read saw), a scoped read first asks etcd whether those directories changed since, and
   * answers `unchanged` instead of reading them when they did not (docs/decisions/0045).
   */
  readScoped(wantedKeys: Iterable<string>, options?: { readonly full?: boolean }): Promise<ScopedRead>;
  readScoped(wantedKeys: Iterable<string>, options: { readonly full?: boolean; readonly unchangedSince: ReadBasis | undefined }): Promise<ScopedRead | UnchangedRead>;
  async readScoped(wantedKeys: Iterable<string>, options: { readonly full?: boolean; readonly unchangedSince?: ReadBasis | undefined } = {}): Promise<ScopedRead | UnchangedRead> {
    const wanted = new Set<string>();
    for (const key of wantedKeys) {
      this.#assertReadable(key);
      wanted.add(keyDirectory(this.#space.root, key));
    }
    const ctx = this.#reads();
    if (options.full !== true) return readDirectories(ctx, (marked) => [...new Set([...marked, ...wanted])], options.unchangedSince);
    // Full: every key under the root is read (and seen), but only what a scoped read would
    // return is kept, plus keys on our leases wherever they are (markDirectories covers them).
    return readEverything(ctx, (marked) => [...new Set([...marked, ...wanted])], (lease) => this.ownsLease(lease));
  }

  /**
   * Marks the directories of the entries on our leases (a full read found them; keys written
   * before markers existed, or a marker deleted by hand), so that scoped reads see them again.
   * Entries of others are ignored. Only directories not yet marked on the current lease are
   * written; no-op without a lease.
   */
  async markDirectories(entries: Iterable<CurrentEntry>): Promise<number> {
    const client = this.#need();
    const lease = this.#keeper?.current;
    if (lease === undefined || this.#mode === 'read-only') return 0;
    const owned = [...entries].filter((entry) => this.ownsLease(entry.lease)).map((entry) => entry.key);
    const list = [...this.#markers.unmarked(owned, lease)];
    if (list.length === 0) return 0;
    await writeMarkers(this.#writes(client), list, lease);
    this.#log.info({ directories: list }, 'directory markers written for keys found by a full read');
    return list.length;
  }

  /**
   * Applies changes in transactions of at most maxOpsPerTxn changes. Each change is guarded
   * in its own transaction: register requires the key absent; repair and deletes require it
   * on `expectedLease`, which must be a lease of this owner. Puts attach the current lease.
   * When a transaction's guards fail, its failure branch reads the keys atomically, the
   * conflicting changes are reported, and the rest is re-submitted. Never throws for etcd
   * failures (those become 'error' results); throws RegistryProgrammingError for a key
   * outside the key root. With `fence`, every transaction also requires the leader's campaign
   * key; `stillPlanned` is asked before every retry (see ApplyOptions).
   */
  async apply(changes: readonly Change[], options: ApplyOptions = {}): Promise<ApplyResult[]> {
    const { fence, stillPlanned } = options;
    const client = this.#need();
    if (this.#mode === 'read-only') throw new RegistryProgrammingError('registry: apply() on a read-only registry');
    for (const c of changes) assertWritable(this.#space, c.key);
    if (fence !== undefined && (fence.key === '' || !/^[0-9]+$/.test(fence.createRevision))) {
      throw new RegistryProgrammingError('registry: fence needs a key and a decimal create revision');
    }
    const results: ResultSlots = new Array<ApplyResult | undefined>(changes.length);
    const items = this.#admit(changes, results);
    await applyItems(this.#writes(client), items, fence, results, stillPlanned);
    return results.map(
      (r, i) => r ?? { change: changes[i]!, outcome: 'error', error: 'internal: no result recorded' },
    );
  }

  /** The changes that may be tried; the refused ones get their error result at once. */
  #admit(changes: readonly Change[], results: ResultSlots): Item[] {
    const admission = {
      ownerId: this.#opts.ownerId,
      mode: this.#mode,
      hasLease: this.#keeper?.current !== undefined,
      ownsLease: (lease: string) => this.ownsLease(lease),
    };
    const items: Item[] = [];
    changes.forEach((change, index) => {
      const refused = refusal(change, admission);
      if (refused !== undefined) results[index] = { change, outcome: 'error', error: refused };
      else items.push({ index, change });
    });
    return items;
  }

  /**
   * A leader election among the replicas of this owner, on a campaign lease of `ttlSeconds`.
   * Its keys live outside the key root (etcd3's `election/` namespace), never in the registry.
   */
  leadership(identity: string, ttlSeconds: number): Leadership {
    const client = this.#client;
    if (client === undefined) throw new RegistryProgrammingError('registry: not started');
    return new Leadership(client, { name: `etcd-registrar/${this.#opts.ownerId}`, identity, ttlSeconds, logger: this.#log });
  }

  /** Stops keepalives and closes the client WITHOUT revoking: keys outlive us by the TTL. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    await this.#keeper?.close();
    this.#connection?.close();
  }

  /** Revokes the data lease (its keys are deleted at once) and closes. Tests/uninstall only. */
  async revoke(): Promise<void> {
    const keeper = this.#keeper;
    this.#state = 'closed';
    try {
      await keeper?.revokeAll();
    } finally {
      this.#connection?.close();
    }
  }

  // ---------------------------------------------------------------------------------------

  #need(): RegistryEtcd {
    if (this.#state !== 'started' || this.#client === undefined) {
      throw new RegistryProgrammingError(`registry: not started (state ${this.#state})`);
    }
    return this.#client;
  }

  #assertReadable(key: string): void {
    if (!key.startsWith(this.#space.root)) {
      throw new RegistryProgrammingError(`registry: refusing to read ${JSON.stringify(key)} outside the key root`);
    }
  }

  #reportError(op: string, error: unknown): void {
    const message = errorMessage(error);
    this.#log.debug({ op, err: message }, 'etcd call failed');
    try {
      this.emit('etcdError', { op, error: message });
    } catch (err) {
      this.#log.error({ err: errorMessage(err) }, 'etcdError listener threw');
    }
  }

  #hooks(op: string): RetryHooks {
    return { onError: (err) => this.#reportError(op, err) };
  }

  #writes(client: RegistryEtcd): WriteContext {
    return {
      client,
      markers: this.#markers,
      keeper: this.#keeper!,
      retry: this.#retry,
      hooks: (op) => this.#hooks(op),
      maxOps: this.#maxOps,
      inflight: this.#inflight,
      leaseWaitMs: Math.max(this.#opts.callTimeoutMs, 1000),
      noteWriteOutcome: (error) => this.#noteWriteOutcome(error),
    };
  }

  #reads(): ReadContext {
    return {
      client: this.#need(),
      space: this.#space,
      markers: this.#markers,
      retry: this.#retry,
      pageSize: this.#pageSize,
      hooks: (op) => this.#hooks(op),
    };
  }
}
