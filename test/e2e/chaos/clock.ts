// When did an etcd change happen? A watch event's arrival time can be late by seconds: a
// watch whose member died reconnects with backoff and then replays what it missed. etcd
// keeps no wall time, so the suite samples the store's revision every 100 ms: a change
// with revision r happened after the last sample that saw a revision below r, and no later
// than the first sample that saw r or more (or its arrival, whichever is earlier).

export interface RevisionSample {
  readonly revision: bigint;
  /** The revision was current at some moment between these two times. */
  readonly askedAt: number;
  readonly answeredAt: number;
}

export interface TimeBounds {
  readonly lo: number;
  readonly hi: number;
}

/** Bounds of when the change with `revision` happened; `samples` in time order. */
export function changeTime(samples: readonly RevisionSample[], revision: bigint, arrivedAt: number): TimeBounds {
  let lo = Number.NEGATIVE_INFINITY;
  let hi = arrivedAt;
  for (const sample of samples) {
    if (sample.revision < revision) lo = Math.max(lo, sample.askedAt);
    else {
      hi = Math.min(hi, sample.answeredAt);
      break;
    }
  }
  // Without a sample before it, the change is only known to precede its arrival.
  return { lo: Math.min(Number.isFinite(lo) ? lo : hi, hi), hi };
}

/** Samples the current revision through `read` until stopped. */
export class RevisionClock {
  readonly samples: RevisionSample[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  readonly #read: () => Promise<string>;
  readonly #intervalMs: number;

  constructor(read: () => Promise<string>, intervalMs = 100) {
    this.#read = read;
    this.#intervalMs = intervalMs;
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      this.#busy = true;
      const askedAt = Date.now();
      this.#read()
        .then((revision) => this.samples.push({ revision: BigInt(revision), askedAt, answeredAt: Date.now() }))
        .catch(() => undefined)
        .finally(() => {
          this.#busy = false;
        });
    }, this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  bounds(revision: string, arrivedAt: number): TimeBounds {
    return changeTime(this.samples, BigInt(revision), arrivedAt);
  }
}
