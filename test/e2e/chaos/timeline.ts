// Pure bookkeeping of the chaos suite's independent observer: when each pod was serving
// (Ready, not terminating, with an IP), and whether a DELETE seen in etcd removed the key of
// a pod that was live at that moment.
//
// The rule for "live": a DELETE of key K made at time t removed a live key when some pod P
// mapped to K (same IP) was serving at t - grace and stayed serving, with the same IP,
// through t + grace, as the suite's own Kubernetes watch saw it. When t is only known to lie
// in [from, at] (clock.ts), P must have been serving through [from - grace, at + grace]. The window absorbs the skew
// between two independent watches (the controller's and ours, plus our etcd watch): a pod
// that stopped being Ready or started terminating just before the DELETE (the watch told us
// a little late) is not live, nor is a pod that turned Ready just after it (e.g. a new pod
// that got a deleted pod's IP). A real false deregistration of a pod that stays Ready is
// caught unless the pod happens to stop serving within `grace` of it.
//
// A live DELETE is "late" rather than false when P had really been un-Ready shortly before
// (it went serving -> not serving -> serving again, the last step within `lateWindow` before
// t - grace): a deregistration decided while P was un-Ready and applied after P was Ready
// again, because the write was held up (an etcd member died under it, say). Those are
// counted apart; the controller puts the key back. A DELETE after a pod's first Ready is
// never late.

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
  /** Epoch ms since which the pod has been in this state. */
  readonly since: number;
}

export interface LiveDelete {
  readonly key: string;
  readonly at: number;
  readonly pod: string;
  /** A deregistration of a real un-Ready spell, applied after the pod was Ready again. */
  readonly late: boolean;
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
      if (last !== undefined) out.push({ uid, name, ip: last.ip, serving: last.serving, since: last.at });
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

  /** The pod whose key `key` was live at `at` by the rule above, or undefined. */
  livePodFor(key: string, at: number, graceMs: number, keyOf: (ip: string) => string, lateWindowMs = 0, from = at): { pod: string; late: boolean } | undefined {
    // [from, at]: when the DELETE happened, as closely as known (see clock.ts).
    for (const { name, history } of this.#pods.values()) {
      const index = history.findLastIndex((s) => s.at <= from - graceMs);
      const before = history[index];
      if (before === undefined || !before.serving || keyOf(before.ip) !== key) continue;
      const during = history.filter((s) => s.at > from - graceMs && s.at <= at + graceMs);
      if (!during.every((s) => s.serving && s.ip === before.ip)) continue;
      // `before` starts the current serving spell; was there an earlier one, recently left?
      const spellStart = history.findLastIndex((s, i) => i <= index && s.serving && !(history[i - 1]?.serving ?? false));
      const servedEarlier = history.slice(0, Math.max(0, spellStart - 1)).some((s) => s.serving);
      const recentlyBack = (history[spellStart]?.at ?? Number.NEGATIVE_INFINITY) > from - graceMs - lateWindowMs;
      return { pod: name, late: spellStart > 0 && servedEarlier && recentlyBack };
    }
    return undefined;
  }

  /** The DELETEs that removed a live pod's key (late ones flagged). */
  liveDeletes(deletes: ReadonlyArray<{ key: string; at: number; from?: number }>, graceMs: number, keyOf: (ip: string) => string, lateWindowMs = 0): LiveDelete[] {
    const out: LiveDelete[] = [];
    for (const event of deletes) {
      const live = this.livePodFor(event.key, event.at, graceMs, keyOf, lateWindowMs, event.from ?? event.at);
      if (live !== undefined) out.push({ key: event.key, at: event.at, ...live });
    }
    return out;
  }
}
