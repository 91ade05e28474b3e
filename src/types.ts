// Shared vocabulary of the controller. Pure data only: no I/O, no classes.

/** The part of a pod the controller needs; the informer keeps only these, not whole objects. */
export interface SlimPod {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  /** metadata.resourceVersion, for logs only. */
  readonly resourceVersion: string;
  readonly creationTimestamp: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly nodeName: string;
  readonly hostIP: string;
  /** status.podIPs in order (the first is status.podIP). */
  readonly podIPs: readonly string[];
  readonly hostIPs: readonly string[];
  /** status.phase: Pending, Running, Succeeded, Failed, Unknown. */
  readonly phase: string;
  /** The Ready condition is True. */
  readonly ready: boolean;
  /** metadata.deletionTimestamp is set: termination has started. */
  readonly terminating: boolean;
  /** Named container ports: name -> containerPort (first container wins on a clash). */
  readonly namedPorts: Readonly<Record<string, number>>;
}

/** One key the controller wants to exist in etcd, derived from one pod. */
export interface Registration {
  readonly key: string;
  readonly value: string;
  readonly service: string;
  readonly environment: string;
  readonly ip: string;
  readonly port: number;
}

export type IpFamily = 'ipv4' | 'ipv6';

/** Result of mapping one pod. A pod that has not opted in yields `ignored`. */
export type PodMapping =
  | { readonly kind: 'ignored' }
  | {
      readonly kind: 'valid';
      /** The keys this pod would own when serving; present even while not Ready, so that a
       * pod turning un-Ready is known to affect them. */
      readonly registrations: readonly Registration[];
      /** Ready, has an IP, not terminating, not finished: the registrations should exist. */
      readonly serving: boolean;
    }
  | { readonly kind: 'invalid'; readonly problems: readonly string[] }
  /**
   * The mapping needs something not known yet (the zone of a node not listed yet): the pod
   * is held, keeping what it had, until it is known. Not an error: no event, no audit.
   */
  | { readonly kind: 'pending'; readonly reason: string };

/** What should be in etcd under one key, and which pod wants it. */
export interface DesiredEntry {
  readonly key: string;
  readonly value: string;
  readonly pod: PodRef;
}

/** What is in etcd under one key. `lease` is etcd's decimal lease id, '0' for none. */
export interface CurrentEntry {
  readonly key: string;
  readonly value: string;
  readonly lease: string;
  readonly modRevision: string;
}

/**
 * What a scoped read of the registry covered, besides its entries: enough for a later read to
 * ask etcd whether anything in those directories changed since (docs/decisions/0045). `counts`:
 * the keys etcd counted in each directory at `revision`; absent when etcd's counts could not be
 * trusted (they did not match the keys read), and then no later read relies on them.
 */
export interface ReadBasis {
  readonly directories: readonly string[];
  readonly revision: string;
  readonly counts?: ReadonlyMap<string, number> | undefined;
}

export type Policy = 'sync' | 'upsert-only';

/** A pod as changes, plans, audit records and Events name it. */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/** Just the pod's name fields, copied: a record kept with a change, an entry or an Event must not keep the cached pod (and its annotations) alive. */
export function podRefOf(pod: PodRef): PodRef {
  return { namespace: pod.namespace, name: pod.name, uid: pod.uid };
}

/** "namespace/name", the form logs and audit records use. */
export function podKeyOf(pod: Pick<PodRef, 'namespace' | 'name'>): string {
  return `${pod.namespace}/${pod.name}`;
}

/** A pod the source saw change, or saw go (the last record it had). */
export type PodEvent = { readonly type: 'upsert' | 'delete'; readonly pod: SlimPod; readonly receivedAt?: number };

/** The outcome of one change written to etcd. */
export interface ApplyResult {
  readonly change: Change;
  /**
   * ok: written; conflict: the key was not in the state the change expected; error: not written
   * (or unknown); superseded: dropped before a retry because the caller no longer planned it
   * (not written, unless an earlier attempt that timed out was applied).
   */
  readonly outcome: 'ok' | 'conflict' | 'error' | 'superseded';
  readonly error?: string | undefined;
  /** State of the key after the call as far as known: the written entry on ok, what was found on conflict (undefined = absent). */
  readonly current?: CurrentEntry | undefined;
  /** etcd revision of the transaction that applied the change (ok only). */
  readonly revision?: string | undefined;
}

/** What a caller of the registry's apply may add to the changes. */
export interface ApplyOptions {
  /** With a fence, every transaction also requires the leader's campaign key to be unchanged. */
  readonly fence?: Fence | undefined;
  /**
   * Asked before every retry of a transaction (etcd was unavailable): false drops the change
   * with outcome 'superseded' instead of writing it late.
   */
  readonly stillPlanned?: ((change: Change) => boolean) | undefined;
}

/** Leadership fence: every transaction of the leader also requires this key's create revision. */
export interface Fence {
  readonly key: string;
  readonly createRevision: string;
}

/** Kubernetes Event types. */
export type EventType = 'Normal' | 'Warning';

export type ChangeAction = 'register' | 'repair' | 'deregister' | 'orphan-delete';

/**
 * One write the plan asks for.
 * - register: the key is absent; create it on our lease.
 * - repair: the key is ours but its value or lease is stale; overwrite it.
 * - deregister: the key is ours and its pod is known but no longer serving.
 * - orphan-delete: the key is ours and no pod in the cache wants it.
 */
export interface Change {
  readonly action: ChangeAction;
  readonly key: string;
  /** New value for register/repair; the old value for deletes. */
  readonly value: string;
  /** Lease the key had when planned ('0' when absent): the write is fenced on it. */
  readonly expectedLease: string;
  /** Absent for orphan deletes. */
  readonly pod?: PodRef | undefined;
  readonly reason: string;
}

/** Keys the plan left alone on purpose, e.g. owned by someone else. */
export interface Skip {
  readonly key: string;
  readonly reason: string;
  readonly pod?: PodRef | undefined;
}

export interface Plan {
  readonly changes: readonly Change[];
  readonly skips: readonly Skip[];
}

export type AuditAction = ChangeAction | 'skip';
export type AuditOutcome = 'ok' | 'error' | 'dry-run';

/** The audit schema (README, Audit log): one JSON line per change. */
export interface AuditRecord {
  readonly audit: true;
  readonly action: AuditAction;
  readonly key: string | null;
  readonly value: string | null;
  readonly pod: string | null;
  readonly podUid: string | null;
  readonly reason: string;
  readonly owner: string;
  readonly leaseId: string | null;
  readonly outcome: AuditOutcome;
}
