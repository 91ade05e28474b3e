// Service grants as the controller applies them (docs/decisions/0009): the verdict on each pod's
// claim, the memory of refused (strict) and ungranted-but-allowed (open) claims, the warnings
// about them (one log line per namespace/service pair, rate-limited Events, exact metrics and
// audit records) and the audit reasons of the changes the grants caused or let through.
import type { Logger } from 'pino';
import type { EventSink } from '../controller/ports.ts';
import type { Metrics } from '../observability/metrics.ts';
import { podKeyOf, type Change, type Plan, type PodMapping, type PodRef, type SlimPod } from '../types.ts';
import type { Admit } from '../desired/index.ts';
import { admissionOf, GRANTS_ANNOTATION, verdictFor, type Verdict } from './grants.ts';
import type { GrantsPort } from './service-grants.ts';

/** A pod's claim that its namespace is not granted: refused (strict) or allowed with a warning (open). */
export interface UngrantedClaim {
  readonly service: string;
  readonly namespace: string;
}

export interface GrantClaimsDeps {
  /** Absent: every claim is allowed and nothing is remembered. */
  readonly grants: GrantsPort | undefined;
  readonly events: EventSink;
  readonly metrics: Metrics | undefined;
  readonly logger: Logger;
  /** Writes the audit record of a pod left unregistered (the controller owns the record's shape). */
  readonly auditSkip: (pod: PodRef, reason: string) => void;
}

/** One pod upsert as the grants see it: `admit` goes to the desired state, `report` acts on its verdict. */
export interface ClaimJudgement {
  readonly admit: Admit;
  /** True when the claim was refused: the keys the pod held are released, and their deletes name it. */
  report(mapping: PodMapping): boolean;
}

export class GrantClaims {
  readonly #deps: GrantClaimsDeps;
  /** Pods refused by the service grants (strict), by uid. */
  readonly #refused = new Map<string, UngrantedClaim>();
  /** Pods registered although not granted (open), by uid: warned about once per service. */
  readonly #ungranted = new Map<string, UngrantedClaim>();
  /** Ungranted claims per namespace/service pair: one log line each, Events rate-limited (many pods of one workload share a pair). */
  readonly #pairs: ClaimPairs;

  constructor(deps: GrantClaimsDeps, now?: () => number) {
    this.#deps = deps;
    this.#pairs = new ClaimPairs(now);
  }

  /** Undefined without grants (every claim allowed). */
  judge(pod: SlimPod): ClaimJudgement | undefined {
    const { grants } = this.#deps;
    if (grants === undefined) return undefined;
    // Asked by the desired state only for a pod with registrations, with its service name.
    let judged: { service: string; verdict: Verdict } | undefined;
    return {
      admit: (service) => {
        const verdict = verdictFor(grants.mode, grants.status(pod.namespace, service));
        judged = { service, verdict };
        return admissionOf(verdict);
      },
      report: (mapping) => judged !== undefined && this.#report(pod, judged.service, judged.verdict, mapping),
    };
  }

  /** The pod is gone: its claims are forgotten. */
  forget(uid: string): void {
    this.#refused.delete(uid);
    this.#ungranted.delete(uid);
  }

  /** The plan with the audit reasons of the changes that the service grants caused or let through. */
  explain(plan: Plan): Plan {
    if (this.#refused.size === 0 && this.#ungranted.size === 0) return plan;
    return { changes: plan.changes.map((change) => this.#explain(change)), skips: plan.skips };
  }

  #explain(change: Change): Change {
    const uid = change.pod?.uid;
    if (uid === undefined) return change;
    const refused = this.#refused.get(uid);
    if (refused !== undefined && change.action === 'deregister') {
      return { ...change, reason: `${notGranted(refused)} (--service-grants strict)` };
    }
    const ungranted = this.#ungranted.get(uid);
    if (ungranted !== undefined && (change.action === 'register' || change.action === 'repair')) {
      return { ...change, reason: `${change.reason}; warning: ${notGranted(ungranted)} (allowed by --service-grants open; strict would refuse it)` };
    }
    return change;
  }

  #report(pod: SlimPod, service: string, verdict: Verdict, mapping: PodMapping): boolean {
    const claim: UngrantedClaim = { service, namespace: pod.namespace };
    switch (verdict) {
      case 'refuse':
        this.#refuse(pod, claim, mapping);
        return true;
      case 'allow-ungranted':
        this.#allowUngranted(pod, claim);
        return false;
      case 'allow':
        this.forget(pod.uid);
        return false;
      case 'hold':
        // The namespace is unknown for now; nothing changes until it is known.
        return false;
    }
  }

  #refuse(pod: SlimPod, claim: UngrantedClaim, mapping: PodMapping): void {
    if (this.#refused.get(pod.uid)?.service === claim.service) return;
    this.#refused.set(pod.uid, claim);
    this.#ungranted.delete(pod.uid);
    const { metrics, events } = this.#deps;
    const keys = mapping.kind === 'valid' ? mapping.registrations.map((r) => r.key) : [];
    metrics?.skips.inc({ reason: 'not-granted' });
    metrics?.ungrantedClaims.inc({ outcome: 'refused' });
    this.#deps.auditSkip(pod, `${notGranted(claim)} (--service-grants strict; granted by the Namespace annotation ${this.#annotation()}): not registered: ${keys.join(', ')}`);
    if (this.#pairs.note(claim).event) {
      events.record(pod, 'Warning', 'ServiceNotGranted', `not registered in etcd: ${notGranted(claim)}; ${this.#howToGrant()}`);
    }
  }

  #allowUngranted(pod: SlimPod, claim: UngrantedClaim): void {
    this.#refused.delete(pod.uid);
    if (this.#ungranted.get(pod.uid)?.service === claim.service) return;
    this.#ungranted.set(pod.uid, claim);
    const { metrics, logger, events } = this.#deps;
    metrics?.ungrantedClaims.inc({ outcome: 'allowed' });
    const pair = this.#pairs.note(claim);
    if (pair.first) {
      logger.warn(
        { pod: podKeyOf(pod), podUid: pod.uid, service: claim.service, namespace: pod.namespace, further: 'other pods of this namespace and service are counted in etcd_registrar_ungranted_claims_total, not logged' },
        'service not granted to the namespace; registered anyway (--service-grants open)',
      );
    }
    if (pair.event) {
      events.record(pod, 'Warning', 'ServiceNotGranted', `registered although ${notGranted(claim)} (--service-grants open; strict mode will refuse it); ${this.#howToGrant()}`);
    }
  }

  #annotation(): string {
    return this.#deps.grants?.annotation ?? GRANTS_ANNOTATION;
  }

  #howToGrant(): string {
    return `a cluster admin grants it with the Namespace annotation ${this.#annotation()} (comma-separated service names)`;
  }
}

function notGranted(claim: UngrantedClaim): string {
  return `service ${JSON.stringify(claim.service)} is not granted to namespace ${JSON.stringify(claim.namespace)}`;
}

/** Events per namespace/service pair: a burst of PAIR_EVENT_BURST, then one per PAIR_EVENT_INTERVAL_MS. */
const PAIR_EVENT_BURST = 3;
const PAIR_EVENT_INTERVAL_MS = 60_000;

/**
 * Ungranted claims by namespace/service pair. A workload of 50 pods in an ungranted namespace
 * is one problem, not 50: it gets one log line per start and a few Events (on the first pods,
 * then one a minute), while the metric and the audit records keep every pod.
 */
export class ClaimPairs {
  readonly #pairs = new Map<string, { tokens: number; refilledAt: number }>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** `first`: the pair's first claim since start; `event`: an Event may be sent for this one. */
  note(claim: UngrantedClaim): { first: boolean; event: boolean } {
    const id = `${claim.namespace}\u0000${claim.service}`;
    const now = this.#now();
    let pair = this.#pairs.get(id);
    const first = pair === undefined;
    if (pair === undefined) {
      pair = { tokens: PAIR_EVENT_BURST, refilledAt: now };
      this.#pairs.set(id, pair);
    }
    const refill = Math.floor((now - pair.refilledAt) / PAIR_EVENT_INTERVAL_MS);
    if (refill > 0) {
      pair.tokens = Math.min(PAIR_EVENT_BURST, pair.tokens + refill);
      pair.refilledAt += refill * PAIR_EVENT_INTERVAL_MS;
    }
    const event = pair.tokens > 0;
    if (event) pair.tokens--;
    return { first, event };
  }
}
