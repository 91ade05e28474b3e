// Pure bookkeeping of the chaos suite's independent observer: when each pod was serving
// (Ready, not terminating, with an IP), and whether a DELETE seen in etcd removed the key of
// a pod that was live at that moment.
//
// The rule for "live": a DELETE of key K seen at time t removed a live key when some pod P
// mapped to K (same IP) was serving at t - grace and stayed serving, with the same IP,
// through t + grace, as the suite's own Kubernetes watch saw it. The window absorbs the skew
// between two independent watches (the controller's and ours, plus our etcd watch): a pod
// that stopped being Ready or started terminating just before the DELETE (the watch told us
// a little late) is not live, nor is a pod that turned Ready just after it (e.g. a new pod
// that got a deleted pod's IP). A real false deregistration of a pod that stays Ready is
// caught unless the pod happens to stop serving within `grace` of it.

export interface PodState {
  /** Epoch ms at which the suite's watch saw this state. */
  readonly at: number;
  readonly ip: string;
  /** Ready, no deletionTimestamp, not finished, with an IP. */
  readonly serving: boolean;
}

export interface PodView {
  readonly uid: string;
  readonly name: string;
  readonly ip: string;
  readonly serving: boolean;
}

export interface LiveDelete {
  readonly key: string;
  readonly at: number;
  readonly pod: string;
}

export class PodTimeline {
  readonly #pods = new Map<string, { name: string; history: PodState[] }>();

  /** Records a state; repeats of the current state are dropped. */
  record(uid: string, name: string, state: PodState): void {
    let entry = this.#pods.get(uid);
    if (entry === undefined) {
      entry = { name, history: [] };
      this.#pods.set(uid, entry);
    }
    const last = entry.history.at(-1);
    if (last !== undefined && last.ip === state.ip && last.serving === state.serving) return;
    entry.history.push(state);
  }

  /** Marks a pod gone (deleted, or missing from a relist). */
  gone(uid: string, at: number): void {
    const entry = this.#pods.get(uid);
    const last = entry?.history.at(-1);
    if (entry !== undefined && last !== undefined) this.record(uid, entry.name, { at, ip: last.ip, serving: false });
  }

  uids(): string[] {
    return [...this.#pods.keys()];
  }

  /** The latest state of every pod ever seen. */
  current(): PodView[] {
    const out: PodView[] = [];
    for (const [uid, { name, history }] of this.#pods) {
      const last = history.at(-1);
      if (last !== undefined) out.push({ uid, name, ip: last.ip, serving: last.serving });
    }
    return out;
  }

  /** First time a pod with this name was seen serving with an IP, at or after `since`. */
  servingSince(name: string, since: number): { at: number; ip: string } | undefined {
    for (const entry of this.#pods.values()) {
      if (entry.name !== name) continue;
      const state = entry.history.find((s) => s.serving && s.at >= since);
      if (state !== undefined) return { at: state.at, ip: state.ip };
    }
    return undefined;
  }

  /** Each time a pod started serving within [from, to], and when that ended (if it did). */
  servingStarts(from: number, to: number): Array<{ name: string; ip: string; at: number; endedAt: number | undefined }> {
    const out: Array<{ name: string; ip: string; at: number; endedAt: number | undefined }> = [];
    for (const { name, history } of this.#pods.values()) {
      history.forEach((state, i) => {
        if (!state.serving || state.at < from || state.at > to || history[i - 1]?.serving === true) return;
        out.push({ name, ip: state.ip, at: state.at, endedAt: history[i + 1]?.at });
      });
    }
    return out;
  }

  /** The pod (name) whose key `key` was live at `at` by the rule above, or undefined. */
  livePodFor(key: string, at: number, graceMs: number, keyOf: (ip: string) => string): string | undefined {
    for (const { name, history } of this.#pods.values()) {
      const before = history.filter((s) => s.at <= at - graceMs).at(-1);
      if (before === undefined || !before.serving || keyOf(before.ip) !== key) continue;
      const during = history.filter((s) => s.at > at - graceMs && s.at <= at + graceMs);
      if (during.every((s) => s.serving && s.ip === before.ip)) return name;
    }
    return undefined;
  }

  /** The DELETEs that removed a live pod's key. */
  liveDeletes(deletes: ReadonlyArray<{ key: string; at: number }>, graceMs: number, keyOf: (ip: string) => string): LiveDelete[] {
    const out: LiveDelete[] = [];
    for (const event of deletes) {
      const pod = this.livePodFor(event.key, event.at, graceMs, keyOf);
      if (pod !== undefined) out.push({ key: event.key, at: event.at, pod });
    }
    return out;
  }
}
