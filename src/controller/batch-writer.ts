// The workers: batches of keys taken from the work queue, each planned against the whole pod
// cache and the mirror, written in etcd (or, dry-run, audited), and the answers recorded in the
// mirror, the queue, the audit log and the pods' Events.
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import type { Change, CurrentEntry, DesiredEntry, Plan, PodRef } from '../types.ts';
import { preciseNow } from '../clock.ts';
import { isDelete } from '../plan/index.ts';
import type { AuditTrail } from './audit-trail.ts';
import type { ChangeKind, ChangeLatency } from './latency.ts';
import type { EtcdMirror } from './mirror.ts';
import type { ApplyResult, DesiredIndex, EventSink, LeadershipPort, RegistryPort } from './ports.ts';
import type { KeyedWorkQueue } from './workqueue.ts';

export interface BatchWriterDeps {
  readonly desired: DesiredIndex;
  readonly registry: RegistryPort;
  readonly leadership: LeadershipPort | undefined;
  readonly events: EventSink;
  readonly metrics: Metrics | undefined;
  readonly logger: Logger;
  readonly queue: KeyedWorkQueue;
  readonly latency: ChangeLatency;
  readonly mirror: EtcdMirror;
  readonly trail: AuditTrail;
  /** Keys of pods gone from the cache (or refused), shared with the controller that fills it. */
  readonly departed: Map<string, PodRef>;
  /** The controller's plan for these entries (with the departed pods and the grants' reasons). */
  readonly plan: (desired: ReadonlyMap<string, DesiredEntry>, current: ReadonlyMap<string, CurrentEntry>, scope: ReadonlySet<string>) => Plan;
}

export interface BatchWriterOptions {
  readonly dryRun: boolean;
  readonly maxBatchKeys: number;
  readonly maxInflightBatches: number;
}

/** The pods whose keys one batch registered or deregistered (one Event per pod and kind). */
interface WrittenByPod {
  readonly registered: Map<string, { pod: PodRef; keys: string[] }>;
  readonly deregistered: Map<string, { pod: PodRef; keys: string[] }>;
}

const changeKind = (change: Change): ChangeKind => (isDelete(change) ? 'deregistration' : 'registration');

export class BatchWriter {
  readonly #deps: BatchWriterDeps;
  readonly #options: BatchWriterOptions;
  readonly #writers: PQueue;
  /** Batches of urgent keys (deregistrations) being written. */
  #urgentInFlight = 0;
  #failedWrites = 0;
  /**
   * Puts dropped as superseded (recorded as not written) whose earlier attempt may have applied,
   * by key, with our lease then: the next answer or read about the key settles each one.
   */
  readonly #lostPuts = new Map<string, { readonly change: Change; readonly lease: string }>();

  constructor(deps: BatchWriterDeps, options: BatchWriterOptions) {
    this.#deps = deps;
    this.#options = options;
    // One slot more than --max-inflight-batches, kept for urgent (deregistration) batches.
    this.#writers = new PQueue({ concurrency: options.maxInflightBatches + 1 });
  }

  /** Batches of urgent keys being written (Controller.deregistering). */
  get urgentInFlight(): number {
    return this.#urgentInFlight;
  }

  /** Writes that failed (etcd error or conflict) since start. */
  get failedWrites(): number {
    return this.#failedWrites;
  }

  /** Takes batches from the queue until it shuts down, then lets the batches in flight finish. */
  async run(): Promise<void> {
    const { queue, latency } = this.#deps;
    while (!queue.isShutDown) {
      await queue.waitForWork();
      if (queue.isShutDown) break;
      // Take keys only when a writer slot is free, so that a burst piles up into large batches.
      // Urgent keys (deregistrations) may also use the one slot kept for them.
      const urgent = queue.urgentCount > 0;
      if (this.#writers.pending >= this.#options.maxInflightBatches + (urgent ? 1 : 0)) {
        const slotFreed = new Promise<void>((resolve) => this.#writers.addEventListener('next', () => resolve(), { once: true }));
        await (urgent ? slotFreed : Promise.race([slotFreed, queue.waitForUrgent()]));
        continue;
      }
      const keys = queue.take(this.#options.maxBatchKeys);
      if (keys.length === 0) continue;
      latency.taken(keys, preciseNow());
      if (urgent) this.#urgentInFlight++;
      void this.#writers.add(async () => {
        try {
          await this.#write(keys);
        } catch (error) {
          this.#deps.logger.error({ err: error, keys: keys.length }, 'batch failed; retrying with backoff');
          for (const key of keys) queue.addRateLimited(key, this.#deps.desired.desiredFor(key) === undefined);
        } finally {
          if (urgent) this.#urgentInFlight--;
          queue.done(keys);
        }
      });
    }
    await this.#writers.onIdle();
  }

  /** Makes etcd match the pod cache for these keys. */
  async #write(keys: readonly string[]): Promise<void> {
    const { queue, latency, leadership, registry } = this.#deps;
    const plan = this.#planKeys(keys);
    const changed = new Set(plan.changes.map((change) => change.key));
    for (const key of keys) if (!changed.has(key)) latency.dropped(key);
    if (plan.changes.length === 0) {
      for (const key of keys) queue.forget(key);
      return;
    }
    if (this.#options.dryRun) {
      this.#deps.trail.together(() => {
        for (const change of plan.changes) {
          latency.dropped(change.key);
          this.#deps.trail.change(change, 'dry-run', registry.leaseId());
        }
      });
      return;
    }
    const fence = leadership?.fence();
    if (leadership !== undefined && fence === undefined) {
      // Leadership is gone: write nothing; the keys are written again once re-elected.
      for (const key of keys) queue.addRateLimited(key, this.#deps.desired.desiredFor(key) === undefined);
      return;
    }
    latency.sent(changed, preciseNow());
    const results = await registry.apply(plan.changes, { fence, stillPlanned: (change) => this.#stillPlanned(change) });
    this.#deps.trail.together(() => this.#recordResults(results));
  }

  /**
   * Asked by the registry before it retries a transaction (etcd was unavailable): would the
   * change be planned the same way now? A deregistration planned before etcd stalled can be
   * wrong by the time it commits (a new pod took the IP and turned Ready meanwhile, with the
   * same value, so the transaction's guards still hold): then it is dropped and re-planned.
   */
  #stillPlanned(change: Change): boolean {
    return this.#planOf([change.key]).changes.some(
      (c) => c.key === change.key && c.action === change.action && c.value === change.value && c.expectedLease === change.expectedLease,
    );
  }

  /** The plan for these keys alone, against the whole pod cache and the mirror; no side effects. */
  #planOf(keys: readonly string[], scope: ReadonlySet<string> = new Set(keys)): Plan {
    const { desired, mirror } = this.#deps;
    const desiredSubset = new Map<string, DesiredEntry>();
    const currentSubset = new Map<string, CurrentEntry>();
    for (const key of keys) {
      const wanted = desired.desiredFor(key);
      if (wanted !== undefined) desiredSubset.set(key, wanted);
      const current = mirror.get(key);
      if (current !== undefined) currentSubset.set(key, current);
    }
    return this.#deps.plan(desiredSubset, currentSubset, scope);
  }

  /** Plans these keys alone, audits their skips and forgets the departed pods that need no memory. */
  #planKeys(keys: readonly string[]): Plan {
    const { desired, mirror, departed } = this.#deps;
    const scope = new Set(keys);
    const plan = this.#planOf(keys, scope);
    this.#deps.trail.skips(plan, scope);
    const changing = new Set(plan.changes.map((change) => change.key));
    for (const key of keys) {
      // A departed pod's key that is gone from etcd (or never written) needs no memory.
      if ((!mirror.has(key) || desired.desiredFor(key) === undefined) && !changing.has(key)) departed.delete(key);
    }
    return plan;
  }

  /** Brings the mirror, the queue, the audit log and the pods' Events up to date with etcd's answers. */
  #recordResults(results: readonly ApplyResult[]): void {
    const committedAt = preciseNow();
    const leaseId = this.#deps.registry.leaseId();
    const written: WrittenByPod = { registered: new Map(), deregistered: new Map() };
    for (const result of results) {
      this.#deps.mirror.noteWrite(result.change.key);
      this.#settleLostPut(result);
      if (result.outcome === 'ok') this.#recordWritten(result, leaseId, committedAt, written);
      else if (result.outcome === 'superseded') {
        const applied = this.#appliedBeforeSuperseded(result.change, leaseId);
        if (applied !== undefined) this.#recordWritten(applied, leaseId, committedAt, written);
        else this.#recordSuperseded(result.change, leaseId);
      } else this.#recordFailed(result, leaseId);
    }
    for (const { pod, keys } of written.registered.values()) {
      this.#deps.events.record(pod, 'Normal', 'Registered', `registered in etcd: ${keys.join(', ')}`);
    }
    for (const { pod, keys } of written.deregistered.values()) {
      this.#deps.events.record(pod, 'Normal', 'Deregistered', `deregistered from etcd: ${keys.join(', ')}`);
    }
  }

  #recordWritten(result: ApplyResult, leaseId: string, committedAt: number, written: WrittenByPod): void {
    const { change } = result;
    const { mirror, metrics } = this.#deps;
    if (isDelete(change)) {
      mirror.delete(change.key);
      this.#deps.departed.delete(change.key);
      if (change.action === 'orphan-delete') metrics?.orphansRemoved.inc();
      if (change.pod !== undefined) group(written.deregistered, change.pod, change.key);
    } else {
      mirror.set(change.key, { key: change.key, value: change.value, lease: leaseId, modRevision: result.revision ?? '0' });
      if (change.pod !== undefined) group(written.registered, change.pod, `${change.key}=${change.value}`);
    }
    this.#deps.queue.forget(change.key);
    this.#deps.latency.committed(change.key, changeKind(change), result.revision ?? '0', committedAt);
    this.#deps.trail.change(change, 'ok', leaseId);
  }

  /**
   * A put dropped before a retry whose key a read has since found with the put's value on our
   * lease: the attempt whose answer was lost (a reset connection) applied it. No other writer
   * uses our lease and a key is in one batch at a time, so it is recorded as written: every
   * change in etcd keeps its audit record. A delete cannot be told from a lease expiry this way.
   */
  #appliedBeforeSuperseded(change: Change, leaseId: string): ApplyResult | undefined {
    if (isDelete(change)) return undefined;
    const current = this.#deps.mirror.get(change.key);
    if (current === undefined || !holdsPut(current, change, leaseId)) return undefined;
    return { change: { ...change, reason: `${change.reason}; ${APPLIED_UNANSWERED}` }, outcome: 'ok', revision: current.modRevision, current };
  }

  /**
   * Settles the superseded put of `result`'s key, if any, by what the answer says etcd held: our
   * lease with the put's value means its lost attempt applied it (a delete's guard held that
   * entry, a conflict read it), and the put is recorded as written before this result. Any
   * other answer that tells what etcd held forgets it: the attempt did not apply.
   */
  #settleLostPut(result: ApplyResult): void {
    const lost = this.#lostPuts.get(result.change.key);
    if (lost === undefined || result.outcome === 'superseded') return;
    // Not written, and etcd's state unknown: the next answer or read settles it.
    if (result.outcome === 'error' && result.current === undefined) return;
    const { change } = result;
    const held = result.outcome === 'ok' ? (isDelete(change) ? { value: change.value, lease: change.expectedLease } : undefined) : result.current;
    this.#settleLost(change.key, held);
  }

  /** After a read of etcd (the mirror refreshed): settles every superseded put by what it found. */
  settleLostPuts(): void {
    for (const key of [...this.#lostPuts.keys()]) this.#settleLost(key, this.#deps.mirror.get(key));
  }

  #settleLost(key: string, held: { readonly value: string; readonly lease: string } | undefined): void {
    const lost = this.#lostPuts.get(key);
    if (lost === undefined) return;
    this.#lostPuts.delete(key);
    if (held === undefined || !holdsPut(held, lost.change, lost.lease)) return;
    // Every change in etcd keeps its audit record, late rather than never.
    this.#deps.trail.change({ ...lost.change, reason: `${lost.change.reason}; ${APPLIED_UNANSWERED}; found by a later read` }, 'ok', lost.lease);
  }

  /**
   * Not written: planned again at once. An attempt before the retry may have been applied,
   * so the mirror forgets the key; the next plan's guard finds out what etcd holds, and a put
   * is remembered until an answer or a read settles it (#settleLostPut).
   */
  #recordSuperseded(change: Change, leaseId: string): void {
    const { mirror, metrics, queue } = this.#deps;
    if (!isDelete(change)) this.#lostPuts.set(change.key, { change, lease: leaseId });
    mirror.delete(change.key);
    metrics?.changes.inc({ action: change.action, outcome: 'superseded' });
    this.#deps.latency.dropped(change.key);
    this.#deps.trail.failed(change, 'superseded: the pod changed while etcd was unavailable; planned again', leaseId);
    queue.addAfter(change.key, 0, this.#deps.desired.desiredFor(change.key) === undefined);
  }

  #recordFailed(result: ApplyResult, leaseId: string): void {
    const { change } = result;
    const { mirror, metrics, queue } = this.#deps;
    if (result.current === undefined) {
      if (result.outcome === 'conflict') mirror.delete(change.key);
    } else {
      mirror.set(change.key, result.current);
    }
    this.#failedWrites++;
    if (result.outcome === 'error') metrics?.etcdErrors.inc({ op: 'txn' });
    metrics?.changes.inc({ action: change.action, outcome: result.outcome });
    this.#deps.trail.failed(change, result.outcome === 'conflict' ? 'key changed in etcd meanwhile' : `etcd error: ${result.error ?? 'unknown'}`, leaseId);
    // A conflict re-plans at once against the key's real state; errors back off.
    if (result.outcome === 'conflict') queue.addAfter(change.key, 0, isDelete(change));
    else queue.addRateLimited(change.key, isDelete(change));
  }
}

function group(groups: Map<string, { pod: PodRef; keys: string[] }>, pod: PodRef, item: string): void {
  const existing = groups.get(pod.uid);
  if (existing === undefined) groups.set(pod.uid, { pod, keys: [item] });
  else existing.keys.push(item);
}

/** Why a put dropped as superseded is recorded as written after all. */
const APPLIED_UNANSWERED = 'applied by an attempt whose answer was lost';

/**
 * etcd holds what the put `change` wrote on `lease`. No other writer uses our lease and a key is
 * in one batch at a time, so then the put's attempt whose answer was lost applied it.
 */
function holdsPut(held: { readonly value: string; readonly lease: string }, change: Change, lease: string): boolean {
  return held.value === change.value && held.lease === lease;
}
