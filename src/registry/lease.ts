// The owner's data lease: adopt it from the owner record or grant a new one, keep it alive
// over etcd's raw LeaseKeepAlive stream, and replace it when etcd says it is gone.
//
// etcd3's Lease class always grants a fresh lease and cannot adopt an existing id, so this
// talks to the lease RPCs directly. One stream, one write per TTL/3 whatever the key count.
import { KeepAliveSession, type KeepAlivePeer, type KeepAliveStream, type StreamEnd } from './keepalive-stream.ts';
import { OwnerLeases } from './owner-leases.ts';
import { newOwnerRecord, readOwnerRecord, replaceOwnerRecord, type OwnerRecord } from './owner-record.ts';
import type { Logger } from 'pino';
import type { LeaseKeeperHooks, LeaseKeeperOptions } from './lease-types.ts';
import { backoffDelay, errorMessage, isLeaseNotFound, isTransient, withRetry } from './retry.ts';

interface AcquireOptions {
  /** At start: a few retries only, and a lease granted with another TTL is replaced. */
  readonly initial: boolean;
  /** The lease just lost: never adopted again. */
  readonly lost?: string;
}

/** An acquisition attempt that must be tried anew (a race, or a wait for the owner). */
const AGAIN = Symbol('again');

export class LeaseKeeper {
  readonly #o: LeaseKeeperOptions;
  readonly #log: Logger;
  readonly #leases: OwnerLeases;
  #lastAck: number | undefined;
  #alive = false;
  #closed = false;
  #stop = new AbortController();
  #loopDone: Promise<void> | undefined;
  #kickStream: (() => void) | undefined;
  #lostReason: string | undefined;
  #waiters = new Set<() => void>();
  #recordTimer: NodeJS.Timeout | undefined;
  #checking: Promise<unknown> | undefined;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#leases = new OwnerLeases(o.ttlSeconds);
  }

  get current(): string | undefined {
    return this.#leases.current;
  }

  get lastAck(): number | undefined {
    return this.#lastAck;
  }

  adoptable(): ReadonlySet<string> {
    return this.#leases.adoptable();
  }

  /**
   * Leases whose keys are ours, by the one ownership rule: the current one and the adoptable
   * ones (a lease kept alive in grace after a switch is always among the adoptable ones).
   */
  owned(lease: string): boolean {
    return this.#leases.owned(lease);
  }

  healthy(now = Date.now()): boolean {
    return (
      !this.#closed &&
      this.#alive &&
      this.#lastAck !== undefined &&
      now - this.#lastAck <= this.#leases.effectiveTtlMs()
    );
  }

  /** Adopts or grants the lease (bounded retries), then keeps it alive in the background. */
  async start(): Promise<void> {
    await this.#acquire({ initial: true });
    if (this.#leases.current === undefined || this.#o.mode === 'read-only') {
      this.#log.info({ mode: this.#o.mode, lease: this.#leases.current ?? 'none' }, 'data lease known; not keeping it alive');
      return;
    }
    // The grant/adoption itself proves the lease alive right now.
    this.#lastAck = Date.now();
    this.#alive = true;
    this.#loopDone = this.#loop().catch((err: unknown) => {
      this.#log.error({ err: errorMessage(err) }, 'lease keeper stopped unexpectedly');
    });
    const every = this.#o.recordCheckMs ?? Math.max(10_000, 2 * this.#o.ttlSeconds * 1000);
    this.#recordTimer = setInterval(() => {
      if (this.#checking) return;
      this.#checking = this.#checkRecord()
        .catch((err: unknown) => this.#emit('etcdError', 'owner-record', err))
        .finally(() => (this.#checking = undefined));
    }, every);
    this.#recordTimer.unref();
  }

  /** Sends a keepalive now (e.g. after a write failed with "lease not found"). */
  kick(): void {
    this.#kickStream?.();
  }

  /** Resolves with the current lease once it differs from `lease`, or undefined on timeout. */
  async waitForLeaseOtherThan(lease: string, timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed && this.#leases.current === lease && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.max(1, deadline - Date.now()));
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
    return this.#leases.current !== lease ? this.#leases.current : undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#recordTimer);
    this.#stop.abort();
    await this.#checking;
    this.#wakeWaiters();
    await this.#loopDone;
  }

  /** Revokes the current lease (its keys go at once) and those in grace. For tests/uninstall. */
  async revokeAll(): Promise<void> {
    const ids = this.#leases.keptAlive();
    await this.close();
    for (const ID of ids) {
      try {
        await this.#o.client.leaseClient.leaseRevoke({ ID });
      } catch (err) {
        if (!/lease not found|expired or revoked/.test(errorMessage(err))) throw err;
      }
    }
  }

  #wakeWaiters(): void {
    for (const w of [...this.#waiters]) w();
    this.#waiters.clear();
  }

  #emit<K extends keyof LeaseKeeperHooks>(name: K, ...args: Parameters<LeaseKeeperHooks[K]>): void {
    try {
      (this.#o.hooks[name] as (...a: unknown[]) => void)(...args);
    } catch (err) {
      this.#log.error({ err: errorMessage(err), event: name }, 'registry event listener threw');
    }
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      const signal = this.#stop.signal;
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done);
    });
  }

  async #readRecord(): Promise<{ record: OwnerRecord | undefined; modRevision: string }> {
    return readOwnerRecord(this.#o.client, this.#o.recordKey, this.#o.ownerId, () => {
      this.#log.warn({ key: this.#o.recordKey }, 'owner record is not valid JSON; replacing it');
    });
  }

  /** Remaining TTL in seconds (<= 0: gone) and the TTL it was granted with. */
  async #timeToLive(id: string): Promise<{ ttl: number; granted: number }> {
    const res = await this.#o.client.leaseClient.leaseTimeToLive({ ID: id });
    return { ttl: Number(res.TTL), granted: Number(res.grantedTTL) };
  }

  /**
   * Adopt the recorded lease when it is alive, else grant one and record it with a
   * compare-and-swap on the owner record (a peer replica may be doing the same: the loser
   * revokes its fresh, key-less lease and adopts the winner's).
   */
  async #acquire(opts: AcquireOptions): Promise<{ reason: string } | undefined> {
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) return undefined;
      try {
        const acquired = await this.#tryAcquire(opts);
        if (acquired !== AGAIN) return acquired;
      } catch (err) {
        const retry = isTransient(err) && (!opts.initial || attempt < this.#o.retry.attempts);
        this.#emit('etcdError', opts.initial ? 'lease-acquire' : 'lease-reacquire', err);
        if (!retry) throw err;
        await this.#sleep(backoffDelay(attempt, this.#o.retry.baseDelayMs, Math.min(this.#o.retry.maxDelayMs, 2_000)));
      }
    }
  }

  /** One attempt: adopt the recorded lease, run without one, or grant one (AGAIN: try anew). */
  async #tryAcquire(opts: AcquireOptions): Promise<{ reason: string } | typeof AGAIN> {
    const { record, modRevision } = await this.#readRecord();
    const previous = record !== undefined ? [record.leaseId, ...(record.previousLeaseIds ?? [])] : [];
    const mayGrant = this.#o.mode === 'owner';
    let graceLease: string | undefined;
    if (record !== undefined && record.leaseId !== opts.lost) {
      const t = await this.#timeToLive(record.leaseId);
      if (t.ttl > 0) {
        if (!opts.initial || !mayGrant || t.granted === this.#o.ttlSeconds) return this.#adopt(record, t.ttl, t.granted, opts.initial);
        // Configured TTL changed: new lease, old one kept alive until keys moved.
        graceLease = record.leaseId;
      }
    }
    if (!mayGrant) return this.#withoutLease(previous, opts.initial);
    return this.#grant(record?.leaseId, modRevision, previous, graceLease, opts);
  }

  async #adopt(record: OwnerRecord, remainingTtl: number, granted: number, initial: boolean): Promise<{ reason: string }> {
    this.#leases.switchTo(record.leaseId);
    this.#leases.noteGranted(record.leaseId, granted);
    await this.#setAdoptable(record.previousLeaseIds ?? [], initial);
    this.#log.info(
      { lease: record.leaseId, remainingTtl, ownerId: this.#o.ownerId },
      initial ? 'adopted the data lease from the owner record' : 'adopted the lease a peer recorded',
    );
    return { reason: initial ? 'adopted' : 'replaced-by-peer' };
  }

  /** No live lease to adopt and none to grant (adopt-only, read-only). */
  async #withoutLease(previous: readonly string[], initial: boolean): Promise<{ reason: string } | typeof AGAIN> {
    if (initial) {
      // Run without one: puts are refused, deletes of keys on recorded earlier leases still work.
      await this.#setAdoptable(previous, true);
      this.#log.info({ mode: this.#o.mode, ownerId: this.#o.ownerId }, 'no live data lease recorded for this owner');
      return { reason: 'none' };
    }
    // adopt-only after a loss: wait for the owner (the running controller) to record a new one.
    await this.#sleep(Math.max(250, (this.#o.ttlSeconds * 1000) / 3));
    return AGAIN;
  }

  /** Grants a lease and records it, unless the record changed since it was read (AGAIN). */
  async #grant(
    recorded: string | undefined,
    modRevision: string,
    previous: readonly string[],
    graceLease: string | undefined,
    opts: AcquireOptions,
  ): Promise<{ reason: string } | typeof AGAIN> {
    const { ttlSeconds } = this.#o;
    const granted = await this.#o.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    const id = String(granted.ID);
    const next = newOwnerRecord(this.#o.ownerId, id, ttlSeconds, previous);
    if (!(await replaceOwnerRecord(this.#o.client, this.#o.recordKey, modRevision, next))) {
      this.#log.info({ lease: id }, 'owner record changed concurrently; revoking the fresh lease and re-reading');
      await this.#o.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
      return AGAIN;
    }
    this.#leases.switchTo(id);
    await this.#setAdoptable(previous, opts.initial);
    if (graceLease !== undefined) this.#leases.startGrace(graceLease);
    this.#log.info({ lease: id, ttl: ttlSeconds, previous: recorded, ownerId: this.#o.ownerId }, 'granted a new data lease and recorded it');
    return { reason: graceLease !== undefined ? 'ttl-changed' : opts.lost !== undefined ? 'expired' : 'granted' };
  }

  /**
   * The owner record is the source of truth for which lease the owner uses. Re-read it now
   * and then: rewrite it if it vanished (or names a dead lease); if it names another live
   * lease (a peer replaced ours, e.g. a replica with a new TTL during a rolling upgrade),
   * switch to that one, keeping ours alive for a grace period so keys can move.
   */
  async #checkRecord(): Promise<void> {
    const current = this.#leases.current;
    if (this.#closed || current === undefined || this.#lostReason !== undefined) return;
    const { record, modRevision } = await this.#readRecord();
    if (this.#closed || this.#leases.current !== current || this.#lostReason !== undefined) return;
    if (record?.leaseId === current) return;
    const peer = record !== undefined ? await this.#timeToLive(record.leaseId) : undefined;
    if (record !== undefined && peer !== undefined && peer.ttl > 0) {
      if (this.#closed || this.#leases.current !== current) return;
      this.#leases.switchTo(record.leaseId);
      this.#leases.noteGranted(record.leaseId, peer.granted);
      this.#leases.addAdoptable([current]);
      this.#leases.startGrace(current);
      this.#log.warn({ previous: current, current: record.leaseId }, 'the owner record names another live lease; switching to it');
      this.#kickStream?.();
      this.#emit('leaseChanged', { previous: current, current: record.leaseId, reason: 'replaced-by-peer' });
      this.#wakeWaiters();
      return;
    }
    if (this.#o.mode !== 'owner') return;
    const next = newOwnerRecord(this.#o.ownerId, current, this.#o.ttlSeconds, this.#leases.adoptableNewestFirst());
    if (await replaceOwnerRecord(this.#o.client, this.#o.recordKey, modRevision, next)) {
      this.#log.warn({ lease: current, found: record?.leaseId ?? 'nothing' }, 'owner record was missing or stale; rewrote it');
    }
  }

  async #setAdoptable(ids: readonly string[], initial: boolean): Promise<void> {
    const candidates = ids.filter((id) => id !== this.#leases.current);
    if (!initial) {
      this.#leases.addAdoptable([...candidates].reverse());
      return;
    }
    // At start-up only leases that still exist can still hold keys.
    const alive = await Promise.all(
      candidates.map(async (id) => {
        try {
          return (await withRetry(this.#o.retry, () => this.#timeToLive(id))).value.ttl > 0;
        } catch {
          return true; // unknown: keep, it is harmless
        }
      }),
    );
    this.#leases.resetAdoptable(candidates.filter((_, i) => alive[i] === true).reverse());
  }

  /** Keeps the lease alive, stream after stream, and replaces it when it is lost, until close(). */
  async #loop(): Promise<void> {
    let failures = 0;
    let warnedAtRisk = false;
    while (!this.#closed) {
      if (this.#lostReason !== undefined) {
        const replaced = await this.#replaceLost(failures + 1);
        if (replaced === 'closed') break;
        if (replaced === 'failed') {
          failures++;
          continue;
        }
        failures = 0;
      }
      if (failures > 0) {
        const probe = await this.#probe();
        if (probe === 'gone') {
          this.#lostReason = 'expired';
          continue;
        }
        if (probe === 'unknown') {
          failures++;
          await this.#sleep(backoffDelay(failures, 100, this.#reconnectCapMs()));
          continue;
        }
      }
      const end = await this.#runStream(() => {
        failures = 0;
        warnedAtRisk = false;
      });
      if (end === 'closed' || this.#closed) break;
      if (end === 'lost') continue;
      failures++;
      const sinceAck = this.#lastAck === undefined ? Infinity : Date.now() - this.#lastAck;
      if (sinceAck > this.#leases.effectiveTtlMs() && !warnedAtRisk) {
        warnedAtRisk = true;
        this.#log.warn(
          { lease: this.#leases.current, sinceAckMs: sinceAck },
          'no keepalive ack for longer than the TTL: the lease may have expired; etcd will tell on reconnect',
        );
      }
      await this.#sleep(backoffDelay(failures, 100, this.#reconnectCapMs()));
    }
    this.#alive = false;
  }

  /**
   * The lease is lost: acquires another and reports the change. 'failed' after a backoff of
   * `attempt` when acquiring failed for good (e.g. permission denied): the loop never gives up.
   */
  async #replaceLost(attempt: number): Promise<'replaced' | 'failed' | 'closed'> {
    const previous = this.#leases.current ?? '';
    const reason = this.#lostReason ?? '';
    this.#alive = false;
    this.#emit('leaseLost', { lease: previous, reason });
    this.#log.warn({ lease: previous, reason }, 'data lease lost; acquiring a new one');
    let acquired: { reason: string } | undefined;
    try {
      acquired = await this.#acquire({ initial: false, lost: previous });
    } catch (err) {
      this.#log.error({ err: errorMessage(err) }, 'could not acquire a new data lease');
      await this.#sleep(backoffDelay(attempt, 500, 5_000));
      return 'failed';
    }
    if (acquired === undefined) return 'closed';
    this.#lostReason = undefined;
    this.#lastAck = Date.now();
    this.#alive = true;
    this.#leases.addAdoptable([previous]);
    const current = this.#leases.current ?? '';
    this.#emit('leaseChanged', { previous, current, reason: acquired.reason });
    this.#wakeWaiters();
    return 'replaced';
  }

  /**
   * Before reconnecting, asks with a unary call whether the lease still lives. It is a cheap
   * liveness check that tells "lease gone" at once, and unary calls refresh an expired auth
   * token, which a stream never does (etcd3 only renews tokens on unary calls).
   */
  async #probe(): Promise<'alive' | 'gone' | 'unknown'> {
    try {
      return (await this.#timeToLive(this.#leases.current ?? '')).ttl <= 0 ? 'gone' : 'alive';
    } catch (err) {
      if (isLeaseNotFound(err)) return 'gone';
      this.#emit('etcdError', 'lease-ttl', err);
      return 'unknown';
    }
  }

  /** Reconnect often enough to renew the lease well within its TTL once etcd is back. */
  #reconnectCapMs(): number {
    return Math.min(2_000, Math.max(200, this.#leases.effectiveTtlMs() / 4));
  }

  /** One keepalive stream until it breaks, etcd reports the lease gone, or close(). */
  async #runStream(onAck: () => void): Promise<StreamEnd> {
    let stream: KeepAliveStream;
    try {
      stream = (await this.#o.client.leaseClient.leaseKeepAlive()) as unknown as KeepAliveStream;
    } catch (err) {
      this.#emit('etcdError', 'keepalive', err);
      return 'broken';
    }
    const session = new KeepAliveSession(stream, this.#keepAlivePeer(onAck));
    if (!session.finished) this.#kickStream = () => session.send();
    const end = await session.ended;
    this.#kickStream = undefined;
    return end;
  }

  #keepAlivePeer(onAck: () => void): KeepAlivePeer {
    return {
      signal: this.#stop.signal,
      intervalMs: () => Math.max(100, Math.floor(this.#leases.effectiveTtlMs() / 3)),
      leasesToRenew: (now) => this.#leases.toRenew(now),
      isCurrent: (id) => id === this.#leases.current,
      onAck: (at) => {
        this.#lastAck = at;
        this.#alive = true;
        onAck();
        this.#emit('keepalive', at);
      },
      onLost: () => (this.#lostReason = 'expired'),
      onGone: (id) => this.#leases.endGrace(id),
      onError: (err) => this.#emit('etcdError', 'keepalive', err),
    };
  }
}
