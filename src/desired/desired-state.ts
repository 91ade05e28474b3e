// Desired state per etcd key, computed from every known pod. Pure in-memory index: no I/O.
//
// Several pods may map to one key (pod IP reuse: a terminating or finished pod and a new
// Ready one with the same IP; out-of-order events). The key's desired entry always comes
// from a SERVING pod, chosen deterministically (newest creationTimestamp, then smallest
// uid), so an old pod going away or going un-Ready never removes a live pod's key.

import { mapPod, type ZoneOf } from '../mapping/map-pod.ts';
import type { MappingConfig } from '../mapping/config.ts';
import { podRefOf, type DesiredEntry, type PodMapping, type PodRef, type SlimPod } from '../types.ts';

/**
 * The service grants' answer for a pod's claim (docs/decisions/0009):
 * - allow: the pod's registrations are desired as usual;
 * - refuse: the pod claims nothing (its earlier keys are released);
 * - hold: the pod keeps what it had (an incomplete namespace cache changes nothing).
 */
export type Admission = 'allow' | 'refuse' | 'hold';

/** Asked once per upsert of a pod with registrations, with its service name. */
export type Admit = (service: string) => Admission;

export type { PodRef };

interface PodRecord {
  readonly ref: PodRef;
  /** creationTimestamp in ms; -Infinity when unparsable (treated as oldest). */
  readonly created: number;
  readonly serving: boolean;
  /** key -> value, in mapping order. */
  readonly values: ReadonlyMap<string, string>;
}

/** True when a should win over b as the source of a key. */
function better(a: PodRecord, b: PodRecord): boolean {
  if (a.created !== b.created) return a.created > b.created;
  return a.ref.uid < b.ref.uid;
}

let lastTimeText: string | undefined;
let lastTime = Number.NEGATIVE_INFINITY;

/** The pods of a rollout or a burst were created in the same few seconds: the last parse is reused. */
function parseTime(ts: string): number {
  if (ts === lastTimeText) return lastTime;
  const t = Date.parse(ts);
  lastTimeText = ts;
  lastTime = Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
  return lastTime;
}

export class DesiredState {
  readonly #cfg: MappingConfig;
  readonly #zoneOf: ZoneOf | undefined;
  /** Pods that map to at least one key, by uid. */
  readonly #pods = new Map<string, PodRecord>();
  /** key -> uids of every known pod mapping to it (serving or not). */
  readonly #claims = new Map<string, Set<string>>();
  /** key -> entry from the best serving claimant. */
  readonly #desired = new Map<string, DesiredEntry>();

  /** `zoneOf` (the node cache) is needed when the mapping uses zones; without it such pods stay pending. */
  constructor(cfg: MappingConfig, options: { readonly zoneOf?: ZoneOf | undefined } = {}) {
    this.#cfg = cfg;
    this.#zoneOf = options.zoneOf;
  }

  /**
   * Add or update a pod. affectedKeys = keys it maps to now ∪ keys it mapped to before
   * (new keys first, in mapping order, then released ones): each may need a write.
   * An ignored pod (opted out) maps to nothing, so its earlier keys are released. A pod
   * whose annotations turn invalid keeps its last valid keys, which follow its readiness:
   * a typo in a live pod's annotation must not take it out of service.
   * `admit` (service grants) is asked about pods with registrations: a refused pod claims
   * nothing; a held one keeps its earlier keys (none for a new pod), following its readiness.
   * A `pending` mapping (its node's zone is not known yet) is held the same way.
   */
  upsertPod(pod: SlimPod, admit?: Admit): { mapping: PodMapping; affectedKeys: string[]; admission?: Admission | undefined } {
    const mapping = mapPod(pod, this.#cfg, this.#zoneOf);
    const old = this.#pods.get(pod.uid);
    let values = new Map<string, string>();
    let serving = false;
    let admission: Admission | undefined;
    const service = mapping.kind === 'valid' ? mapping.registrations[0]?.service : undefined;
    if (admit !== undefined && service !== undefined) admission = admit(service);
    if (admission === 'refuse') {
      // Claims nothing: the keys it had are released below.
    } else if (admission === 'hold') {
      if (old !== undefined && mapping.kind === 'valid') {
        values = new Map(old.values);
        serving = mapping.serving;
      }
    } else if (mapping.kind === 'valid') {
      for (const r of mapping.registrations) if (!values.has(r.key)) values.set(r.key, r.value);
      serving = mapping.serving;
    } else if ((mapping.kind === 'invalid' || mapping.kind === 'pending') && old !== undefined) {
      values = new Map(old.values);
      serving = pod.ready && !pod.terminating && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
    }
    if (values.size === 0) {
      this.#pods.delete(pod.uid);
    } else {
      this.#pods.set(pod.uid, {
        ref: podRefOf(pod),
        created: parseTime(pod.creationTimestamp),
        serving,
        values,
      });
    }
    const affected: string[] = [];
    for (const key of values.keys()) {
      affected.push(key);
      this.#claim(key, pod.uid);
    }
    if (old !== undefined) {
      for (const key of old.values.keys()) {
        if (values.has(key)) continue;
        affected.push(key);
        this.#unclaim(key, pod.uid);
      }
    }
    for (const key of affected) this.#recompute(key);
    return { mapping, affectedKeys: affected, admission };
  }

  /** Forget a deleted pod; returns the keys it mapped to (each may need a delete). */
  removePod(uid: string): string[] {
    const old = this.#pods.get(uid);
    if (old === undefined) return [];
    this.#pods.delete(uid);
    const affected = [...old.values.keys()];
    for (const key of affected) {
      this.#unclaim(key, uid);
      this.#recompute(key);
    }
    return affected;
  }

  /** What should be in etcd under the key, if some known pod serves it. */
  desiredFor(key: string): DesiredEntry | undefined {
    return this.#desired.get(key);
  }

  /** Some known pod maps to the key, serving or not. */
  claimed(key: string): boolean {
    return this.#claims.has(key);
  }

  /**
   * The pod responsible for the key: the serving one chosen for desiredFor, else the best
   * (newest) non-serving one — whose key a delete then 'deregister's.
   */
  claimant(key: string): PodRef | undefined {
    const uids = this.#claims.get(key);
    if (uids === undefined) return undefined;
    let best: PodRecord | undefined;
    for (const uid of uids) {
      const rec = this.#pods.get(uid);
      if (rec === undefined) continue;
      if (best === undefined || (rec.serving && !best.serving) || (rec.serving === best.serving && better(rec, best))) {
        best = rec;
      }
    }
    return best?.ref;
  }

  /** A snapshot of every desired entry (a copy: later updates do not change it). */
  desiredAll(): Map<string, DesiredEntry> {
    return new Map(this.#desired);
  }

  /** Number of keys with a desired entry. */
  get size(): number {
    return this.#desired.size;
  }

  /** Number of known pods that map to at least one key (serving or not). */
  get podCount(): number {
    return this.#pods.size;
  }

  #claim(key: string, uid: string): void {
    let set = this.#claims.get(key);
    if (set === undefined) {
      set = new Set();
      this.#claims.set(key, set);
    }
    set.add(uid);
  }

  #unclaim(key: string, uid: string): void {
    const set = this.#claims.get(key);
    if (set === undefined) return;
    set.delete(uid);
    if (set.size === 0) this.#claims.delete(key);
  }

  #recompute(key: string): void {
    const uids = this.#claims.get(key);
    let best: PodRecord | undefined;
    if (uids !== undefined) {
      for (const uid of uids) {
        const rec = this.#pods.get(uid);
        if (rec === undefined || !rec.serving) continue;
        if (best === undefined || better(rec, best)) best = rec;
      }
    }
    const value = best?.values.get(key);
    if (best === undefined || value === undefined) {
      this.#desired.delete(key);
      return;
    }
    const prev = this.#desired.get(key);
    if (prev !== undefined && prev.value === value && prev.pod === best.ref) return;
    this.#desired.set(key, { key, value, pod: best.ref });
  }
}
