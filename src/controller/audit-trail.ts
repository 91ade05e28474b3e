// What the controller reports about keys and pods: one audit record per change, per contested
// key and per pod left unregistered (each built by one helper), with the metrics and Events
// that go with them, and the memory that keeps repeated passes from repeating them.
import type { AuditLog } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { podKeyOf, type AuditAction, type AuditOutcome, type Change, type Plan, type PodRef, type SlimPod } from '../types.ts';
import type { EventSink } from './ports.ts';

export interface AuditTrailDeps {
  readonly audit: AuditLog;
  readonly events: EventSink;
  readonly metrics: Metrics | undefined;
}

/** What one audit record is about: a change, a skipped key, or a pod left out before it had a key. */
interface AuditSubject {
  readonly action: AuditAction;
  readonly key: string | null;
  readonly value: string | null;
  readonly pod?: PodRef | undefined;
}

export class AuditTrail {
  readonly #deps: AuditTrailDeps;
  /** Last skip reason per key, so repeated passes do not repeat audit records. */
  readonly #skipsLogged = new Map<string, string>();
  /** Invalid pods by uid, with the problems last reported. */
  readonly #invalidPods = new Map<string, string>();

  constructor(deps: AuditTrailDeps) {
    this.#deps = deps;
  }

  /** Records made by `record` go out in one write (AuditLog.together). */
  together<T>(record: () => T): T {
    return this.#deps.audit.together(record);
  }

  /** A change written (ok) or, dry-run, that would have been. */
  change(change: Change, outcome: 'ok' | 'dry-run', leaseId: string): void {
    this.#deps.metrics?.changes.inc({ action: change.action, outcome });
    this.#write(change, change.reason, outcome, leaseId);
  }

  /** A change etcd did not apply, and why. */
  failed(change: Change, why: string, leaseId: string): void {
    this.#write(change, `${change.reason}; ${why}`, 'error', leaseId);
  }

  /** A pod left unregistered before it had a key (invalid, or refused by the service grants). */
  podSkip(pod: PodRef, reason: string): void {
    this.#write({ action: 'skip', key: null, value: null, pod }, reason, 'ok', null);
  }

  /**
   * Audits each foreign-key skip once per key and reason. Keys of `scope` (every key, for a
   * full reconcile) that are no longer skipped are forgotten, so the memory is bounded by the
   * keys currently contested, not by every key ever contested.
   */
  skips(plan: Plan, scope?: ReadonlySet<string>): void {
    const skipped = new Set(plan.skips.map((skip) => skip.key));
    for (const key of scope ?? [...this.#skipsLogged.keys()]) {
      if (!skipped.has(key)) this.#skipsLogged.delete(key);
    }
    for (const skip of plan.skips) {
      if (this.#skipsLogged.get(skip.key) === skip.reason) continue;
      this.#skipsLogged.set(skip.key, skip.reason);
      this.#deps.metrics?.skips.inc({ reason: 'foreign-key' });
      this.#write({ action: 'skip', key: skip.key, value: null, pod: skip.pod }, skip.reason, 'ok', null);
    }
  }

  /** An opted-in pod whose annotations are invalid: audited and evented once per set of problems. */
  invalid(pod: SlimPod, problems: readonly string[]): void {
    const summary = problems.join('; ');
    if (this.#invalidPods.get(pod.uid) === summary) return;
    this.#invalidPods.set(pod.uid, summary);
    this.#deps.metrics?.skips.inc({ reason: 'invalid' });
    this.#deps.metrics?.invalidPods.set(this.#invalidPods.size);
    this.podSkip(pod, `invalid registration: ${summary}`);
    this.#deps.events.record(pod, 'Warning', 'InvalidRegistration', `not registered in etcd: ${summary}`);
  }

  /** The pod is valid again, or gone. */
  clearInvalid(uid: string): void {
    if (this.#invalidPods.delete(uid)) this.#deps.metrics?.invalidPods.set(this.#invalidPods.size);
  }

  /** Every audit record the controller writes (the schema: README, Audit log). */
  #write(subject: AuditSubject, reason: string, outcome: AuditOutcome, leaseId: string | null): void {
    const { pod } = subject;
    this.#deps.audit.write({
      action: subject.action, key: subject.key, value: subject.value, pod: pod === undefined ? null : podKeyOf(pod), podUid: pod?.uid ?? null,
      reason, leaseId, outcome,
    });
  }
}
