// The only code in etcd-registrar that talks to etcd: reads the key space with lease ids,
// applies Changes in fenced, batched transactions, and keeps the owner's data lease.
import { EventEmitter } from 'node:events';
import type { Etcd3, ICompare, IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';
import type { Logger } from 'pino';
import { Leadership } from './election.ts';
import type { ApplyResult, Change, CurrentEntry, Fence } from '../types.ts';
import { createClient, explainConnectionError, type AuthOptions, type RegistryClient, type TlsOptions } from './client.ts';
import {
  assertWritable,
  hasControl,
  isReserved,
  keyDirectory,
  keySuccessor,
  normaliseRoot,
  prefixEnd,
  RegistryProgrammingError,
  type KeySpace,
} from './keys.ts';
import { LeaseKeeper, type LeaseChangedEvent, type LeaseLostEvent, type LeaseMode } from './lease.ts';
import {
  DEFAULT_RETRY,
  errorMessage,
  isCompacted,
  isLeaseNotFound,
  isNoSpace,
  isTransient,
  withRetry,
  type RetryPolicy,
} from './retry.ts';

export interface RegistryOptions {
  readonly endpoints: readonly string[];
  /** Identity of this installation; one data lease per owner id. */
  readonly ownerId: string;
  /** Every key written or deleted lives under this prefix (normalised to end with '/'). */
  readonly keyRoot: string;
  /** Default '/etcd-registrar/owners/'. Never returned by readAll, never written by apply. */
  readonly ownerRecordPrefix?: string | undefined;
  readonly leaseTtlSeconds: number;
  /** Deadline of every unary etcd call. */
  readonly callTimeoutMs: number;
  /** Changes per transaction; default 100, at most 128 (etcd's --max-txn-ops default). */
  readonly maxOpsPerTxn?: number | undefined;
  /** Transactions in flight at once in one apply(); default 4. */
  readonly maxInflightTxns?: number | undefined;
  /** Keys per page in readAll; default 5000. */
  readonly pageSize?: number | undefined;
  /** More prefixes that readAll hides and apply refuses (e.g. a leader-election prefix). */
  readonly reservedPrefixes?: readonly string[] | undefined;
  readonly retry?: Partial<RetryPolicy> | undefined;
  /** How often the owner record is re-checked while running; default max(10 s, 2×TTL). */
  readonly ownerRecordCheckMs?: number | undefined;
  readonly tls?: TlsOptions | undefined;
  readonly auth?: AuthOptions | undefined;
  readonly logger: Logger;
  /** How often TLS/password files are re-read so rotations apply without a restart (default 10 s). */
  readonly credentialRefreshMs?: number | undefined;
}

export type { ApplyResult, Fence };

/** What a scoped read returned: the keys of `directories`, read at `revision`. */
export interface ScopedRead {
  readonly entries: Map<string, CurrentEntry>;
  /** The directories read ([root] for a full read). */
  readonly directories: readonly string[];
  readonly revision: string;
}

export interface StartOptions {
  /** Default 'owner'. See LeaseMode: 'adopt-only' never grants, 'read-only' never writes. */
  readonly mode?: LeaseMode | undefined;
}

export type { LeaseMode } from './lease.ts';

export interface RegistryEvents {
  keepalive: [at: number];
  leaseChanged: [event: LeaseChangedEvent];
  leaseLost: [event: LeaseLostEvent];
  etcdError: [event: { op: string; error: string }];
}

export type { LeaseChangedEvent, LeaseLostEvent } from './lease.ts';

export const DEFAULT_OWNER_RECORD_PREFIX = '/etcd-registrar/owners/';
const ETCD_MAX_TXN_OPS = 128;
/** Beyond this many marked directories a scoped read would be a full read in many pieces. */
const MAX_MARKED_DIRECTORIES = 256;
/** Keep each txn well under etcd's 1.5 MiB request limit. */
const MAX_TXN_BYTES = 1024 * 1024;

interface BatchContext {
  /** Set once the call cannot succeed (fence lost, etcd unavailable): later batches fail fast. */
  abort: string | undefined;
}

interface Item {
  readonly index: number;
  readonly change: Change;
}

export class EtcdRegistry extends EventEmitter<RegistryEvents> {
  readonly #opts: RegistryOptions;
  readonly #log: Logger;
  readonly #space: KeySpace;
  readonly #recordKey: string;
  /** Directory markers (docs/decisions/0013): `${recordKey}/dirs` + directory, on the data lease. */
  readonly #markerPrefix: string;
  /** Directories whose marker is known to be in etcd, with the lease it is attached to. */
  readonly #markedDirs = new Map<string, string>();
  /** Every directory handed out for a marker so far (bounded by MAX_MARKED_DIRECTORIES). */
  readonly #directories = new Set<string>();
  readonly #retry: RetryPolicy;
  readonly #maxOps: number;
  readonly #inflight: number;
  readonly #pageSize: number;
  #client: Etcd3 | undefined;
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
    const ownerId = opts.ownerId;
    if (ownerId === '' || ownerId.includes('/') || hasControl(ownerId)) {
      throw new RegistryProgrammingError(`registry: owner id ${JSON.stringify(ownerId)} must be non-empty, without '/' or control characters`);
    }
    const recordPrefix = normaliseRoot(opts.ownerRecordPrefix ?? DEFAULT_OWNER_RECORD_PREFIX, 'owner record prefix');
    this.#recordKey = `${recordPrefix}${ownerId}`;
    this.#markerPrefix = `${this.#recordKey}/dirs/`;
    this.#space = {
      root: normaliseRoot(opts.keyRoot, 'key root'),
      reserved: [recordPrefix, ...(opts.reservedPrefixes ?? [])],
    };
    this.#maxOps = opts.maxOpsPerTxn ?? 100;
    if (!Number.isInteger(this.#maxOps) || this.#maxOps < 2 || this.#maxOps > ETCD_MAX_TXN_OPS) {
      throw new RegistryProgrammingError(`registry: maxOpsPerTxn must be an integer in 2..${ETCD_MAX_TXN_OPS}`);
    }
    this.#inflight = Math.max(1, Math.floor(opts.maxInflightTxns ?? 4));
    this.#pageSize = Math.max(1, Math.floor(opts.pageSize ?? 5_000));
    if (!Number.isInteger(opts.leaseTtlSeconds) || opts.leaseTtlSeconds < 2) {
      throw new RegistryProgrammingError('registry: leaseTtlSeconds must be an integer >= 2');
    }
    if (!(opts.callTimeoutMs > 0)) throw new RegistryProgrammingError('registry: callTimeoutMs must be > 0');
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
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
    return (await this.#readDirectories(() => [this.#space.root])).entries;
  }

  /**
   * The keys of the directories that can hold this owner's keys (docs/decisions/0013): the
   * directories marked in etcd (a put into a directory marks it in the same transaction, on
   * the data lease) and those of `wantedKeys` (the keys the caller wants to exist), read at one
   * revision. Keys in other directories are neither ours nor wanted. A marker on the root (a
   * layout with very many directories) makes it a full read. With `full`, every key under
   * the root is read, and the same keys are returned, plus keys on our leases in unmarked
   * directories (see markDirectories).
   */
  async readScoped(wantedKeys: Iterable<string>, options: { readonly full?: boolean } = {}): Promise<ScopedRead> {
    const wanted = new Set<string>();
    for (const key of wantedKeys) {
      this.#assertReadable(key);
      wanted.add(keyDirectory(this.#space.root, key));
    }
    if (options.full !== true) return this.#readDirectories((marked) => [...new Set([...marked, ...wanted])]);
    // Full: every key under the root is read (and seen), but only what a scoped read would
    // return is kept, plus keys on our leases wherever they are (markDirectories covers them).
    let relevant = new Set<string>();
    const read = await this.#readDirectories((marked) => {
      relevant = new Set([...marked, ...wanted]);
      return [this.#space.root];
    });
    if (relevant.has(this.#space.root)) return read;
    const kept = new Map<string, CurrentEntry>();
    for (const [key, entry] of read.entries) {
      if (this.ownsLease(entry.lease) || relevant.has(keyDirectory(this.#space.root, key))) kept.set(key, entry);
    }
    return { ...read, entries: kept };
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
    const dirs = new Set<string>();
    for (const entry of entries) {
      if (!this.ownsLease(entry.lease)) continue;
      const dir = this.#directoryOf(entry.key);
      if (this.#markedDirs.get(dir) !== lease) dirs.add(dir);
    }
    if (dirs.size === 0) return 0;
    const list = [...dirs];
    for (let i = 0; i < list.length; i += this.#maxOps) {
      const chunk = list.slice(i, i + this.#maxOps);
      const req = { compare: [], success: chunk.map((dir) => this.#markerOp(dir, lease)), failure: [] };
      await withRetry(this.#retry, () => client.kv.txn(req), this.#hooks('mark'));
      for (const dir of chunk) this.#markedDirs.set(dir, lease);
    }
    this.#log.info({ directories: list }, 'directory markers written for keys found by a full read');
    return list.length;
  }

  /** Reads the markers, then every directory `pick` chooses, all at the markers' revision. */
  async #readDirectories(pick: (marked: readonly string[]) => string[]): Promise<ScopedRead> {
    const client = this.#need();
    const root = this.#space.root;
    for (let restart = 0; ; restart++) {
      try {
        const markerStart = Buffer.from(this.#markerPrefix);
        const { value: markers } = await withRetry(
          this.#retry,
          () => client.kv.range({ key: markerStart, range_end: prefixEnd(markerStart) }),
          this.#hooks('readMarkers'),
        );
        const revision = markers.header.revision;
        const marked: string[] = [];
        this.#markedDirs.clear();
        for (const kv of markers.kvs) {
          const dir = kv.key.toString('utf8').slice(this.#markerPrefix.length - 1);
          // A marker of an earlier key root is not ours to follow.
          if (!dir.startsWith(root)) continue;
          marked.push(dir);
          this.#directories.add(dir);
          this.#markedDirs.set(dir, typeof kv.lease === 'string' ? kv.lease : String(kv.lease ?? '0'));
        }
        const picked = pick(marked);
        const dirs = picked.includes(root) ? [root] : picked.sort();
        const out = new Map<string, CurrentEntry>();
        // A few directories at a time: etcd serves one while we decode another.
        let next = 0;
        const worker = async (): Promise<void> => {
          for (let i = next++; i < dirs.length; i = next++) await this.#readPrefix(client, dirs[i]!, revision, out);
        };
        await Promise.all(Array.from({ length: Math.min(4, dirs.length) }, worker));
        return { entries: out, directories: dirs, revision };
      } catch (err) {
        // Compaction overtook the pinned revision: read again from the current one.
        if (isCompacted(err) && restart < 3) continue;
        throw err;
      }
    }
  }

  async #readPrefix(client: Etcd3, prefix: string, revision: string, out: Map<string, CurrentEntry>): Promise<void> {
    const first = Buffer.from(prefix);
    const end = prefixEnd(first);
    let start: Buffer = first;
    for (;;) {
      const req = { key: start, range_end: end, limit: this.#pageSize, revision };
      const { value: res } = await withRetry(this.#retry, () => client.kv.range(req), this.#hooks('readAll'));
      for (const kv of res.kvs) {
        const entry = toEntry(kv);
        if (!isReserved(this.#space, entry.key)) out.set(entry.key, entry);
      }
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || last === undefined) return;
      start = keySuccessor(last.key);
    }
  }

  #directoryOf(key: string): string {
    const dir = keyDirectory(this.#space.root, key);
    if (this.#directories.has(dir)) return dir;
    // Past MAX_MARKED_DIRECTORIES the key layout is not one a scoped read helps: mark the root.
    if (this.#directories.size >= MAX_MARKED_DIRECTORIES) return this.#space.root;
    this.#directories.add(dir);
    return dir;
  }

  #markerOp(dir: string, lease: string): IRequestOp {
    return { request_put: { key: Buffer.from(`${this.#markerPrefix.slice(0, -1)}${dir}`), value: Buffer.from(dir), lease } };
  }

  /**
   * Applies changes in transactions of at most maxOpsPerTxn changes. Each change is guarded
   * in its own transaction: register requires the key absent; repair and deletes require it
   * on `expectedLease`, which must be a lease of this owner. Puts attach the current lease.
   * When a transaction's guards fail, its failure branch reads the keys atomically, the
   * conflicting changes are reported, and the rest is re-submitted. Never throws for etcd
   * failures (those become 'error' results); throws RegistryProgrammingError for a key
   * outside the key root.
   */
  async apply(changes: readonly Change[], fence?: Fence): Promise<ApplyResult[]> {
    const client = this.#need();
    if (this.#mode === 'read-only') throw new RegistryProgrammingError('registry: apply() on a read-only registry');
    for (const c of changes) assertWritable(this.#space, c.key);
    const hasLease = this.#keeper?.current !== undefined;
    if (fence !== undefined && (fence.key === '' || !/^[0-9]+$/.test(fence.createRevision))) {
      throw new RegistryProgrammingError('registry: fence needs a key and a decimal create revision');
    }
    const results: (ApplyResult | undefined)[] = new Array<ApplyResult | undefined>(changes.length);
    const items: Item[] = [];
    changes.forEach((change, index) => {
      if (!hasLease && isPut(change)) {
        results[index] = { change, outcome: 'error', error: `refused: no live data lease for owner ${this.#opts.ownerId} (mode ${this.#mode})` };
      } else if (change.action !== 'register' && !this.ownsLease(change.expectedLease)) {
        results[index] = {
          change,
          outcome: 'error',
          error: `refused: expected lease ${change.expectedLease} is not a lease of owner ${this.#opts.ownerId}`,
        };
      } else {
        items.push({ index, change });
      }
    });
    const batches = this.#batches(items, fence !== undefined ? 1 : 0);
    const sequential = new Set(items.map((i) => i.change.key)).size !== items.length;
    const ctx: BatchContext = { abort: undefined };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        if (ctx.abort !== undefined) {
          for (const it of batch) results[it.index] = { change: it.change, outcome: 'error', error: ctx.abort };
          continue;
        }
        await this.#applyBatch(client, batch, fence, results, ctx);
      }
    };
    const workers = sequential ? 1 : Math.min(this.#inflight, batches.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return results.map(
      (r, i) => r ?? { change: changes[i]!, outcome: 'error', error: 'internal: no result recorded' },
    );
  }

  /** Stops keepalives and closes the client WITHOUT revoking: keys outlive us by the TTL. */
  /**
   * A leader election among the replicas of this owner, on a campaign lease of `ttlSeconds`.
   * Its keys live outside the key root (etcd3's `election/` namespace), never in the registry.
   */
  leadership(identity: string, ttlSeconds: number): Leadership {
    const client = this.#client;
    if (client === undefined) throw new RegistryProgrammingError('registry: not started');
    return new Leadership(client, { name: `etcd-registrar/${this.#opts.ownerId}`, identity, ttlSeconds, logger: this.#log });
  }

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

  #need(): Etcd3 {
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

  #hooks(op: string): { onError: (err: unknown) => void } {
    return { onError: (err) => this.#reportError(op, err) };
  }

  /**
   * Splits into transactions: ≤ maxOps compares (fence included) and ≤ maxOps operations (a
   * directory marker may join each put's directory), no key twice, bounded bytes.
   */
  #batches(items: readonly Item[], reservedOps: number): Item[][] {
    const limit = this.#maxOps - reservedOps;
    const out: Item[][] = [];
    let cur: Item[] = [];
    let keys = new Set<string>();
    let dirs = new Set<string>();
    let bytes = 0;
    for (const it of items) {
      const size = Buffer.byteLength(it.change.key) * 3 + Buffer.byteLength(it.change.value) + 64;
      const dir = isPut(it.change) ? this.#directoryOf(it.change.key) : undefined;
      const ops = cur.length + 1 + dirs.size + (dir === undefined || dirs.has(dir) ? 0 : 1);
      if (cur.length > 0 && (ops > limit || keys.has(it.change.key) || bytes + size > MAX_TXN_BYTES)) {
        out.push(cur);
        cur = [];
        keys = new Set();
        dirs = new Set();
        bytes = 0;
      }
      cur.push(it);
      keys.add(it.change.key);
      if (dir !== undefined) dirs.add(dir);
      bytes += size;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  async #applyBatch(
    client: Etcd3,
    batch: readonly Item[],
    fence: Fence | undefined,
    results: (ApplyResult | undefined)[],
    ctx: BatchContext,
  ): Promise<void> {
    const keeper = this.#keeper!;
    let pending = batch;
    let ambiguous = false;
    let leaseWaits = 0;
    const fail = (items: readonly Item[], error: string): void => {
      for (const it of items) results[it.index] = { change: it.change, outcome: 'error', error };
    };
    for (let round = 0; pending.length > 0; round++) {
      // Without a lease only deletes got this far; '0' is never attached to anything.
      const lease = keeper.current ?? '0';
      if (round > batch.length + 2) {
        fail(pending, 'internal: conflict resolution did not converge');
        return;
      }
      // A put into a directory not yet marked on this lease marks it in the same transaction,
      // so no key of ours is ever outside the directories a scoped read covers.
      const markers = new Set<string>();
      if (lease !== '0') {
        for (const it of pending) {
          if (!isPut(it.change)) continue;
          const dir = this.#directoryOf(it.change.key);
          if (this.#markedDirs.get(dir) !== lease) markers.add(dir);
        }
      }
      const req = buildTxn(pending, lease, fence);
      for (const dir of markers) req.success.push(this.#markerOp(dir, lease));
      let res: ITxnResponse;
      try {
        const out = await withRetry(this.#retry, () => client.kv.txn(req), this.#hooks('apply'));
        res = out.value;
        ambiguous ||= out.ambiguous;
        this.#noteWriteOutcome(undefined);
      } catch (err) {
        this.#noteWriteOutcome(err);
        if (isLeaseNotFound(err) && leaseWaits < 2 && pending.some((it) => isPut(it.change))) {
          // Our lease is gone; the keeper will replace it. Wait for that, then retry.
          leaseWaits++;
          keeper.kick();
          await keeper.waitForLeaseOtherThan(lease, Math.max(this.#opts.callTimeoutMs, 1000));
          continue;
        }
        fail(pending, errorMessage(err));
        // etcd is unreachable even after retries: fail the remaining batches at once
        // instead of spending the retry budget again on each of them.
        if (isTransient(err)) ctx.abort ??= `not attempted: etcd unavailable (${errorMessage(err)})`;
        return;
      }
      const revision = res.header.revision;
      if (res.succeeded) {
        for (const dir of markers) this.#markedDirs.set(dir, lease);
        for (const it of pending) {
          results[it.index] = {
            change: it.change,
            outcome: 'ok',
            revision,
            current: isPut(it.change)
              ? { key: it.change.key, value: it.change.value, lease, modRevision: revision }
              : undefined,
          };
        }
        return;
      }
      // The failure branch read every key (and the fence) atomically with the compares.
      let offset = 0;
      if (fence !== undefined) {
        offset = 1;
        const fkv = res.responses[0]?.response_range.kvs[0];
        if (fkv === undefined || fkv.create_revision !== fence.createRevision) {
          const msg = `fence lost: ${fence.key} create revision is ${fkv?.create_revision ?? 'absent'}, expected ${fence.createRevision}`;
          ctx.abort = msg;
          fail(pending, msg);
          return;
        }
      }
      const still: Item[] = [];
      pending.forEach((it, j) => {
        const kv = res.responses[offset + j]?.response_range.kvs[0];
        const current = kv !== undefined ? toEntry(kv) : undefined;
        if (guardHolds(it.change, current)) {
          still.push(it);
        } else if (ambiguous && satisfied(it.change, current, lease)) {
          // An earlier attempt timed out but had in fact been applied.
          results[it.index] = {
            change: it.change,
            outcome: 'ok',
            current,
            ...(current !== undefined ? { revision: current.modRevision } : {}),
          };
        } else {
          results[it.index] = { change: it.change, outcome: 'conflict', current };
        }
      });
      if (still.length === pending.length) {
        fail(pending, 'internal: transaction failed but every guard holds');
        return;
      }
      pending = still;
    }
  }
}

function isPut(c: Change): boolean {
  return c.action === 'register' || c.action === 'repair';
}

function rangeOp(key: string): IRequestOp {
  return { request_range: { key: Buffer.from(key) } };
}

function guardOf(c: Change): ICompare {
  const key = Buffer.from(c.key);
  if (c.action === 'register') return { key, target: 'Create', result: 'Equal', create_revision: 0 };
  return { key, target: 'Lease', result: 'Equal', lease: c.expectedLease };
}

function opOf(c: Change, lease: string): IRequestOp {
  const key = Buffer.from(c.key);
  if (isPut(c)) return { request_put: { key, value: Buffer.from(c.value), lease } };
  return { request_delete_range: { key } };
}

function buildTxn(items: readonly Item[], lease: string, fence: Fence | undefined) {
  const compare: ICompare[] = [];
  const failure: IRequestOp[] = [];
  if (fence !== undefined) {
    compare.push({ key: Buffer.from(fence.key), target: 'Create', result: 'Equal', create_revision: fence.createRevision });
    failure.push(rangeOp(fence.key));
  }
  for (const it of items) {
    compare.push(guardOf(it.change));
    failure.push(rangeOp(it.change.key));
  }
  return { compare, success: items.map((it) => opOf(it.change, lease)), failure };
}

/** Local evaluation of the guard against the state the failure branch read. */
function guardHolds(c: Change, current: CurrentEntry | undefined): boolean {
  if (c.action === 'register') return current === undefined;
  return (current?.lease ?? '0') === c.expectedLease;
}

/** The key already is what the change wanted (used only after an ambiguous attempt). */
function satisfied(c: Change, current: CurrentEntry | undefined, lease: string): boolean {
  if (isPut(c)) return current !== undefined && current.value === c.value && current.lease === lease;
  return current === undefined;
}

function toEntry(kv: IKeyValue): CurrentEntry {
  // etcd3 decodes int64 fields as decimal strings already; String() only guards the typings.
  const lease = kv.lease;
  const modRevision = kv.mod_revision;
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    lease: typeof lease === 'string' ? lease : String(lease ?? '0'),
    modRevision: typeof modRevision === 'string' ? modRevision : String(modRevision),
  };
}
