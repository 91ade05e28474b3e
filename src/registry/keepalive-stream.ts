// One LeaseKeepAlive stream, from open to end: a keepalive for every lease kept alive each
// interval, etcd's answers handed to the keeper, and the stream ended when it breaks, goes
// stale (a keepalive unanswered for a whole interval), etcd says the lease is gone, or the
// keeper stops. Which leases, and what to do with the answers, is the keeper's (lease.ts).
import type { ILeaseKeepAliveResponse, IRequestStream, IResponseStream } from 'etcd3';

export type KeepAliveStream = IRequestStream<{ ID: string }> & IResponseStream<ILeaseKeepAliveResponse>;

/** lost: etcd says the lease is gone; broken: reconnect; closed: the keeper stopped. */
export type StreamEnd = 'lost' | 'broken' | 'closed';

/** What the session asks of the keeper. */
export interface KeepAlivePeer {
  /** Aborted when the keeper stops. */
  readonly signal: AbortSignal;
  /** Time between keepalives, asked anew each time (the leases' TTLs may change). */
  intervalMs(): number;
  /** The leases to renew now, current first. */
  leasesToRenew(now: number): readonly string[];
  /** True for the lease the keeper holds now (the others are in grace). */
  isCurrent(id: string): boolean;
  /** etcd renewed the current lease at `at`. */
  onAck(at: number): void;
  /** etcd says the current lease is gone; the stream ends 'lost' right after. */
  onLost(): void;
  /** etcd says `id`, a lease in grace, is gone. */
  onGone(id: string): void;
  onError(err: unknown): void;
}

export class KeepAliveSession {
  readonly #stream: KeepAliveStream;
  readonly #peer: KeepAlivePeer;
  readonly #onAbort = (): void => this.#finish('closed');
  #resolve!: (end: StreamEnd) => void;
  #finished = false;
  /** When the oldest unanswered keepalive was sent. */
  #pendingSince: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Resolves once, when the stream has ended. */
  readonly ended: Promise<StreamEnd>;

  /** Starts at once: listens to the stream and sends the first keepalive. */
  constructor(stream: KeepAliveStream, peer: KeepAlivePeer) {
    this.#stream = stream;
    this.#peer = peer;
    this.ended = new Promise<StreamEnd>((resolve) => (this.#resolve = resolve));
    stream.on('data', (res: ILeaseKeepAliveResponse) => this.#onData(res));
    stream.on('error', (err: unknown) => {
      if (!this.#finished) peer.onError(err);
      this.#finish('broken');
    });
    stream.on('end', () => this.#finish('broken'));
    peer.signal.addEventListener('abort', this.#onAbort);
    if (peer.signal.aborted) {
      this.#finish('closed');
      return;
    }
    this.#tick();
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Sends the keepalives now, unless the last ones went unanswered for a whole interval. */
  send(): void {
    if (this.#finished) return;
    const now = Date.now();
    if (this.#pendingSince !== undefined && now - this.#pendingSince >= this.#peer.intervalMs()) {
      this.#peer.onError(new Error(`no keepalive ack within ${now - this.#pendingSince} ms`));
      this.#finish('broken');
      return;
    }
    try {
      for (const id of this.#peer.leasesToRenew(now)) this.#stream.write({ ID: id });
      this.#pendingSince ??= now;
    } catch (err) {
      this.#peer.onError(err);
      this.#finish('broken');
    }
  }

  #tick(): void {
    this.send();
    if (!this.#finished) this.#timer = setTimeout(() => this.#tick(), this.#peer.intervalMs());
  }

  #onData(res: ILeaseKeepAliveResponse): void {
    const id = String(res.ID);
    const ttl = Number(res.TTL);
    if (this.#peer.isCurrent(id)) {
      if (!(ttl > 0)) {
        this.#peer.onLost();
        this.#finish('lost');
        return;
      }
      this.#pendingSince = undefined;
      this.#peer.onAck(Date.now());
    } else if (!(ttl > 0)) {
      this.#peer.onGone(id);
    }
  }

  #finish(end: StreamEnd): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    this.#peer.signal.removeEventListener('abort', this.#onAbort);
    try {
      // A clean half-close where the stream is healthy; cancel a broken or stale one
      // (etcd3 then also resets the host's channels, which is what a stale one needs).
      if (end === 'broken') this.#stream.cancel();
      else this.#stream.end();
    } catch {
      /* already gone */
    }
    this.#resolve(end);
  }
}
