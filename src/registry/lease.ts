// The owner's data lease: adopt it from the owner record or grant a new one, keep it alive
// over etcd's raw LeaseKeepAlive stream, and replace it when etcd says it is gone.
//
// etcd3's Lease class always grants a fresh lease and cannot adopt an existing id, so this
// talks to the lease RPCs directly. One stream, one write per TTL/3 whatever the key count.
import type { Etcd3, ILeaseKeepAliveResponse, IRequestStream, IResponseStream } from 'etcd3';
import type { Logger } from 'pino';
import { isOurs, NO_LEASE } from '../ownership.ts';
import { backoffDelay, errorMessage, isLeaseNotFound, isTransient, withRetry, type RetryPolicy } from './retry.ts';

/** JSON stored (without a lease) at `${ownerRecordPrefix}${ownerId}`. */
export interface OwnerRecord {
  readonly ownerId: string;
  /** Current data lease, decimal string. */
  readonly leaseId: string;
  readonly ttl: number;
  readonly updatedAt: string;
  /** Earlier leases of this owner, newest first (bounded); keys on them are still ours. */
  readonly previousLeaseIds?: readonly string[];
}

export interface LeaseChangedEvent {
  readonly previous: string;
  readonly current: string;
  /** 'expired' (etcd reported it gone), 'replaced-by-peer', 'ttl-changed'. */
  readonly reason: string;
}

export interface LeaseLostEvent {
  readonly lease: string;
  readonly reason: string;
}

export interface LeaseKeeperHooks {
  keepalive(at: number): void;
  leaseChanged(ev: LeaseChangedEvent): void;
  leaseLost(ev: LeaseLostEvent): void;
  etcdError(op: string, error: unknown): void;
}

/**
 * owner: adopt or grant, keep alive, replace when lost (the controller).
 * adopt-only: adopt the recorded lease if it is alive and keep it alive, never grant one
 *   (a one-off `reconcile --once` must not leave a lease behind that nobody keeps alive).
 * read-only: learn the recorded lease id, no keepalive, no writes (list, dry runs).
 */
export type LeaseMode = 'owner' | 'adopt-only' | 'read-only';

export interface LeaseKeeperOptions {
  readonly mode: LeaseMode;
  readonly client: Etcd3;
  readonly ownerId: string;
  readonly recordKey: string;
  readonly ttlSeconds: number;
  readonly retry: RetryPolicy;
  readonly logger: Logger;
  readonly hooks: LeaseKeeperHooks;
  /** How often the owner record is re-read while running; default max(10 s, 2×TTL). */
  readonly recordCheckMs?: number | undefined;
}

type KeepAliveStream = IRequestStream<{ ID: string }> & IResponseStream<ILeaseKeepAliveResponse>;
type StreamEnd = 'lost' | 'broken' | 'closed';

const MAX_PREVIOUS = 8;
const MAX_ADOPTABLE = 16;

export class LeaseKeeper {
  readonly #o: LeaseKeeperOptions;
  readonly #log: Logger;
  #current: string | undefined;
  #adoptable = new Set<string>();
  /** Old leases kept alive for a while after a TTL change, until keys moved off them. */
  readonly #grace = new Map<string, number>();
  #lastAck: number | undefined;
  #alive = false;
  #closed = false;
  #stop = new AbortController();
  #loopDone: Promise<void> | undefined;
  #kickStream: (() => void) | undefined;
  #lostReason: string | undefined;
  #waiters = new Set<() => void>();
  #recordTimer: NodeJS.Timeout | undefined;
  /** Granted TTL (s) of leases adopted from elsewhere, when shorter than ours. */
  readonly #grantedTtl = new Map<string, number>();
  #checking: Promise<unknown> | undefined;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
    this.#log = o.logger;
  }

  get current(): string | undefined {
    return this.#current;
  }

  get lastAck(): number | undefined {
    return this.#lastAck;
  }

  adoptable(): ReadonlySet<string> {
    return new Set(this.#adoptable);
  }

  /**
   * Leases whose keys are ours, by the one ownership rule: the current one and the adoptable
   * ones (a lease kept alive in grace after a switch is always among the adoptable ones).
   */
  owned(lease: string): boolean {
    return isOurs(lease, { leaseId: this.#current ?? NO_LEASE, adoptableLeases: this.#adoptable });
  }

  healthy(now = Date.now()): boolean {
    return (
      !this.#closed &&
      this.#alive &&
      this.#lastAck !== undefined &&
      now - this.#lastAck <= this.#effectiveTtlMs()
    );
  }

  /** Adopts or grants the lease (bounded retries), then keeps it alive in the background. */
  async start(): Promise<void> {
    await this.#acquire({ initial: true });
    if (this.#current === undefined || this.#o.mode === 'read-only') {
      this.#log.info({ mode: this.#o.mode, lease: this.#current ?? 'none' }, 'data lease known; not keeping it alive');
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
    while (!this.#closed && this.#current === lease && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.max(1, deadline - Date.now()));
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
    return this.#current !== lease ? this.#current : undefined;
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
    const ids = [this.#current, ...this.#grace.keys()].filter((x): x is string => x !== undefined);
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
    const res = await this.#o.client.kv.range({ key: Buffer.from(this.#o.recordKey) });
    const kv = res.kvs[0];
    if (kv === undefined) return { record: undefined, modRevision: '0' };
    let record: OwnerRecord | undefined;
    try {
      const parsed = JSON.parse(kv.value.toString('utf8')) as Partial<OwnerRecord>;
      if (typeof parsed.leaseId === 'string' && /^[1-9][0-9]*$/.test(parsed.leaseId)) {
        record = {
          ownerId: String(parsed.ownerId ?? this.#o.ownerId),
          leaseId: parsed.leaseId,
          ttl: Number(parsed.ttl ?? 0),
          updatedAt: String(parsed.updatedAt ?? ''),
          previousLeaseIds: Array.isArray(parsed.previousLeaseIds)
            ? parsed.previousLeaseIds.filter((x): x is string => typeof x === 'string' && /^[1-9][0-9]*$/.test(x))
            : [],
        };
      }
    } catch {
      this.#log.warn({ key: this.#o.recordKey }, 'owner record is not valid JSON; replacing it');
    }
    return { record, modRevision: kv.mod_revision };
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
  async #acquire(opts: { initial: boolean; lost?: string }): Promise<{ reason: string } | undefined> {
    const { ttlSeconds } = this.#o;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) return undefined;
      try {
        const { record, modRevision } = await this.#readRecord();
        const previous = record !== undefined ? [record.leaseId, ...(record.previousLeaseIds ?? [])] : [];
        const mayGrant = this.#o.mode === 'owner';
        let graceLease: string | undefined;
        if (record !== undefined && record.leaseId !== opts.lost) {
          const t = await this.#timeToLive(record.leaseId);
          if (t.ttl > 0) {
            if (!opts.initial || !mayGrant || t.granted === ttlSeconds) {
              this.#current = record.leaseId;
              this.#noteGranted(record.leaseId, t.granted);
              this.#adoptable.delete(record.leaseId);
              await this.#setAdoptable(record.previousLeaseIds ?? [], opts.initial);
              this.#log.info(
                { lease: record.leaseId, remainingTtl: t.ttl, ownerId: this.#o.ownerId },
                opts.initial ? 'adopted the data lease from the owner record' : 'adopted the lease a peer recorded',
              );
              return { reason: opts.initial ? 'adopted' : 'replaced-by-peer' };
            }
            // Configured TTL changed: new lease, old one kept alive until keys moved.
            graceLease = record.leaseId;
          }
        }
        if (!mayGrant) {
          if (opts.initial) {
            // No live lease to adopt: run without one (puts are refused, deletes of keys on
            // recorded earlier leases still work).
            await this.#setAdoptable(previous, true);
            this.#log.info({ mode: this.#o.mode, ownerId: this.#o.ownerId }, 'no live data lease recorded for this owner');
            return { reason: 'none' };
          }
          // adopt-only after a loss: wait for the owner (the running controller) to record a new one.
          await this.#sleep(Math.max(250, (ttlSeconds * 1000) / 3));
          continue;
        }
        const granted = await this.#o.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
        const id = String(granted.ID);
        const next: OwnerRecord = {
          ownerId: this.#o.ownerId,
          leaseId: id,
          ttl: ttlSeconds,
          updatedAt: new Date().toISOString(),
          previousLeaseIds: [...new Set(previous)].slice(0, MAX_PREVIOUS),
        };
        const key = Buffer.from(this.#o.recordKey);
        const txn = await this.#o.client.kv.txn({
          compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: modRevision }],
          success: [{ request_put: { key, value: Buffer.from(JSON.stringify(next)) } }],
          failure: [],
        });
        if (!txn.succeeded) {
          this.#log.info({ lease: id }, 'owner record changed concurrently; revoking the fresh lease and re-reading');
          await this.#o.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
          continue;
        }
        this.#current = id;
        await this.#setAdoptable(previous, opts.initial);
        if (graceLease !== undefined) {
          // Keep the old lease alive long enough for the controller to move every key.
          this.#grace.set(graceLease, Date.now() + Math.max(60_000, 3 * ttlSeconds * 1000));
        }
        this.#log.info(
          { lease: id, ttl: ttlSeconds, previous: record?.leaseId, ownerId: this.#o.ownerId },
          'granted a new data lease and recorded it',
        );
        return { reason: graceLease !== undefined ? 'ttl-changed' : opts.lost !== undefined ? 'expired' : 'granted' };
      } catch (err) {
        const retry = isTransient(err) && (!opts.initial || attempt < this.#o.retry.attempts);
        this.#emit('etcdError', opts.initial ? 'lease-acquire' : 'lease-reacquire', err);
        if (!retry) throw err;
        await this.#sleep(backoffDelay(attempt, this.#o.retry.baseDelayMs, Math.min(this.#o.retry.maxDelayMs, 2_000)));
      }
    }
  }

  /**
   * The owner record is the source of truth for which lease the owner uses. Re-read it now
   * and then: rewrite it if it vanished (or names a dead lease); if it names another live
   * lease (a peer replaced ours, e.g. a replica with a new TTL during a rolling upgrade),
   * switch to that one, keeping ours alive for a grace period so keys can move.
   */
  async #checkRecord(): Promise<void> {
    const current = this.#current;
    if (this.#closed || current === undefined || this.#lostReason !== undefined) return;
    const { record, modRevision } = await this.#readRecord();
    if (this.#closed || this.#current !== current || this.#lostReason !== undefined) return;
    if (record?.leaseId === current) return;
    const peer = record !== undefined ? await this.#timeToLive(record.leaseId) : undefined;
    if (record !== undefined && peer !== undefined && peer.ttl > 0) {
      if (this.#closed || this.#current !== current) return;
      this.#current = record.leaseId;
      this.#noteGranted(record.leaseId, peer.granted);
      this.#adoptable.delete(record.leaseId);
      this.#addAdoptable([current]);
      this.#grace.set(current, Date.now() + Math.max(60_000, 3 * this.#o.ttlSeconds * 1000));
      this.#log.warn({ previous: current, current: record.leaseId }, 'the owner record names another live lease; switching to it');
      this.#kickStream?.();
      this.#emit('leaseChanged', { previous: current, current: record.leaseId, reason: 'replaced-by-peer' });
      this.#wakeWaiters();
      return;
    }
    if (this.#o.mode !== 'owner') return;
    const next: OwnerRecord = {
      ownerId: this.#o.ownerId,
      leaseId: current,
      ttl: this.#o.ttlSeconds,
      updatedAt: new Date().toISOString(),
      previousLeaseIds: [...this.#adoptable].reverse().slice(0, MAX_PREVIOUS),
    };
    const key = Buffer.from(this.#o.recordKey);
    const txn = await this.#o.client.kv.txn({
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: modRevision }],
      success: [{ request_put: { key, value: Buffer.from(JSON.stringify(next)) } }],
      failure: [],
    });
    if (txn.succeeded) {
      this.#log.warn({ lease: current, found: record?.leaseId ?? 'nothing' }, 'owner record was missing or stale; rewrote it');
    }
  }

  async #setAdoptable(ids: readonly string[], initial: boolean): Promise<void> {
    const candidates = ids.filter((id) => id !== this.#current);
    if (!initial) {
      this.#addAdoptable([...candidates].reverse());
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
    this.#adoptable = new Set();
    this.#addAdoptable(candidates.filter((_, i) => alive[i] === true).reverse());
  }

  async #loop(): Promise<void> {
    let failures = 0;
    let warnedAtRisk = false;
    while (!this.#closed) {
      if (this.#lostReason !== undefined) {
        const previous = this.#current ?? '';
        const reason = this.#lostReason;
        this.#alive = false;
        this.#emit('leaseLost', { lease: previous, reason });
        this.#log.warn({ lease: previous, reason }, 'data lease lost; acquiring a new one');
        let acquired: { reason: string } | undefined;
        try {
          acquired = await this.#acquire({ initial: false, lost: previous });
        } catch (err) {
          // Non-transient failure (e.g. permission denied): retry slowly, never give up.
          this.#log.error({ err: errorMessage(err) }, 'could not acquire a new data lease');
          await this.#sleep(backoffDelay(++failures, 500, 5_000));
          continue;
        }
        if (acquired === undefined) break; // closed
        this.#lostReason = undefined;
        this.#lastAck = Date.now();
        this.#alive = true;
        failures = 0;
        this.#addAdoptable([previous]);
        const current = this.#current ?? '';
        this.#emit('leaseChanged', { previous, current, reason: acquired.reason });
        this.#wakeWaiters();
      }
      if (failures > 0) {
        // Reconnecting: ask with a unary call first. It is a cheap liveness check that
        // tells "lease gone" at once, and unary calls refresh an expired auth token,
        // which a stream never does (etcd3 only renews tokens on unary calls).
        const current = this.#current ?? '';
        try {
          if ((await this.#timeToLive(current)).ttl <= 0) {
            this.#lostReason = 'expired';
            continue;
          }
        } catch (err) {
          if (isLeaseNotFound(err)) {
            this.#lostReason = 'expired';
            continue;
          }
          this.#emit('etcdError', 'lease-ttl', err);
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
      if (sinceAck > this.#effectiveTtlMs() && !warnedAtRisk) {
        warnedAtRisk = true;
        this.#log.warn(
          { lease: this.#current, sinceAckMs: sinceAck },
          'no keepalive ack for longer than the TTL: the lease may have expired; etcd will tell on reconnect',
        );
      }
      await this.#sleep(backoffDelay(failures, 100, this.#reconnectCapMs()));
    }
    this.#alive = false;
  }

  #noteGranted(id: string, grantedSeconds: number): void {
    if (grantedSeconds > 0 && grantedSeconds < this.#o.ttlSeconds) this.#grantedTtl.set(id, grantedSeconds);
  }

  /** The shortest TTL among the leases kept alive: keepalive timing must suit it. */
  #effectiveTtlMs(): number {
    let ttl = this.#o.ttlSeconds;
    for (const id of [this.#current, ...this.#grace.keys()]) {
      const g = id !== undefined ? this.#grantedTtl.get(id) : undefined;
      if (g !== undefined && g < ttl) ttl = g;
    }
    return ttl * 1000;
  }

  /** Reconnect often enough to renew the lease well within its TTL once etcd is back. */
  #reconnectCapMs(): number {
    return Math.min(2_000, Math.max(200, this.#effectiveTtlMs() / 4));
  }

  #addAdoptable(ids: Iterable<string>): void {
    for (const id of ids) {
      if (id === this.#current) continue;
      this.#adoptable.delete(id);
      this.#adoptable.add(id); // most recent last
    }
    while (this.#adoptable.size > MAX_ADOPTABLE) {
      const oldest = this.#adoptable.values().next().value;
      if (oldest === undefined) break;
      this.#adoptable.delete(oldest);
    }
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
    const intervalMs = (): number => Math.max(100, Math.floor(this.#effectiveTtlMs() / 3));
    return await new Promise<StreamEnd>((resolve) => {
      let finished = false;
      let pendingSince: number | undefined;
      let timer: NodeJS.Timeout | undefined;
      const finish = (end: StreamEnd): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.#stop.signal.removeEventListener('abort', onAbort);
        this.#kickStream = undefined;
        try {
          // A clean half-close where the stream is healthy; cancel a broken or stale one
          // (etcd3 then also resets the host's channels, which is what a stale one needs).
          if (end === 'broken') stream.cancel();
          else stream.end();
        } catch {
          /* already gone */
        }
        resolve(end);
      };
      const onAbort = (): void => finish('closed');
      const send = (): void => {
        if (finished) return;
        const now = Date.now();
        if (pendingSince !== undefined && now - pendingSince >= intervalMs()) {
          // The previous keepalive was never answered: the stream is stale.
          this.#emit('etcdError', 'keepalive', new Error(`no keepalive ack within ${now - pendingSince} ms`));
          finish('broken');
          return;
        }
        for (const [id, until] of this.#grace) if (until < now) this.#grace.delete(id);
        for (const id of this.#grantedTtl.keys()) if (id !== this.#current && !this.#grace.has(id)) this.#grantedTtl.delete(id);
        try {
          const current = this.#current;
          if (current !== undefined) stream.write({ ID: current });
          for (const id of this.#grace.keys()) stream.write({ ID: id });
          pendingSince ??= now;
        } catch (err) {
          this.#emit('etcdError', 'keepalive', err);
          finish('broken');
        }
      };
      stream.on('data', (res: ILeaseKeepAliveResponse) => {
        const id = String(res.ID);
        const ttl = Number(res.TTL);
        if (id === this.#current) {
          if (!(ttl > 0)) {
            this.#lostReason = 'expired';
            finish('lost');
            return;
          }
          const now = Date.now();
          pendingSince = undefined;
          this.#lastAck = now;
          this.#alive = true;
          onAck();
          this.#emit('keepalive', now);
        } else if (this.#grace.has(id) && !(ttl > 0)) {
          this.#grace.delete(id);
        }
      });
      stream.on('error', (err: unknown) => {
        if (!finished) this.#emit('etcdError', 'keepalive', err);
        finish('broken');
      });
      stream.on('end', () => finish('broken'));
      this.#stop.signal.addEventListener('abort', onAbort);
      if (this.#stop.signal.aborted) {
        finish('closed');
        return;
      }
      this.#kickStream = send;
      const tick = (): void => {
        send();
        if (!finished) timer = setTimeout(tick, intervalMs());
      };
      tick();
    });
  }
}
