// Per-key timing of a change through the controller: watch event received -> key enqueued ->
// taken by a worker -> transaction sent -> committed. Observed into the stage histograms on
// commit, and the last changes are kept (bounded) for GET /debug/latency, where a benchmark
// correlates them with its own request and etcd-watch times per key.

/** Registration (register, repair) or deregistration (deregister, orphan-delete). */
export const CHANGE_KINDS = ['registration', 'deregistration'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export const STAGES = ['intake', 'queue', 'plan', 'txn', 'total'] as const;
export type Stage = (typeof STAGES)[number];

/** One committed change; times are epoch ms with sub-millisecond resolution. */
export interface ChangeTiming {
  readonly key: string;
  readonly change: ChangeKind;
  /** etcd revision of the transaction that applied it. */
  readonly revision: string;
  readonly receivedAt: number;
  readonly enqueuedAt: number;
  readonly takenAt: number;
  readonly sentAt: number;
  readonly committedAt: number;
}

interface OpenTrace {
  receivedAt: number;
  enqueuedAt: number;
  takenAt: number;
  sentAt: number;
}

export type StageObserver = (stage: Stage, change: ChangeKind, seconds: number) => void;

/** Keys with an event not yet committed: more means traces are leaking; start over. */
const MAX_OPEN = 200_000;

export class ChangeLatency {
  readonly #open = new Map<string, OpenTrace>();
  readonly #recent: ChangeTiming[] = [];
  #next = 0;
  readonly #capacity: number;
  readonly #observe: StageObserver | undefined;

  constructor(options: { capacity?: number; observe?: StageObserver | undefined } = {}) {
    this.#capacity = options.capacity ?? 8192;
    this.#observe = options.observe;
  }

  /** An event touching `key` arrived at `receivedAt` and the key was enqueued at `now`; the first event since the last commit wins. */
  received(key: string, receivedAt: number, now: number): void {
    if (this.#open.has(key)) return;
    if (this.#open.size >= MAX_OPEN) this.#open.clear();
    this.#open.set(key, { receivedAt, enqueuedAt: now, takenAt: now, sentAt: now });
  }

  taken(keys: readonly string[], now: number): void {
    for (const key of keys) {
      const trace = this.#open.get(key);
      if (trace !== undefined) trace.takenAt = now;
    }
  }

  sent(keys: Iterable<string>, now: number): void {
    for (const key of keys) {
      const trace = this.#open.get(key);
      if (trace !== undefined) trace.sentAt = now;
    }
  }

  /** The key needed no change (or was already right): nothing to time. */
  dropped(key: string): void {
    this.#open.delete(key);
  }

  committed(key: string, change: ChangeKind, revision: string, now: number): void {
    const trace = this.#open.get(key);
    if (trace === undefined) return; // written by a full reconcile, not by an event
    this.#open.delete(key);
    const timing: ChangeTiming = { key, change, revision, ...trace, committedAt: now };
    if (this.#recent.length < this.#capacity) this.#recent.push(timing);
    else this.#recent[this.#next % this.#capacity] = timing;
    this.#next++;
    const observe = this.#observe;
    if (observe === undefined) return;
    observe('intake', change, (trace.enqueuedAt - trace.receivedAt) / 1000);
    observe('queue', change, (trace.takenAt - trace.enqueuedAt) / 1000);
    observe('plan', change, (trace.sentAt - trace.takenAt) / 1000);
    observe('txn', change, (now - trace.sentAt) / 1000);
    observe('total', change, (now - trace.receivedAt) / 1000);
  }

  /** The last committed changes (up to the capacity), oldest first. */
  recent(): ChangeTiming[] {
    if (this.#recent.length < this.#capacity) return [...this.#recent];
    const start = this.#next % this.#capacity;
    return [...this.#recent.slice(start), ...this.#recent.slice(0, start)];
  }
}
