// The pure plan: desired state (per key, from the pod cache) against current state (etcd
// keys with their lease ids) gives the writes to make. No I/O; deterministic order.
//
// Ownership (ExternalDNS-style, docs/decisions/0006): a key is ours only when it is attached to our
// data lease, or to an earlier lease of the same owner (adoptable). Keys without a lease or
// on another lease are never changed or deleted.

import { isOurs, NO_LEASE } from '../ownership.ts';
import { podKeyOf, type Change, type CurrentEntry, type DesiredEntry, type Plan, type PodRef, type Policy, type Skip } from '../types.ts';

export type { PodRef };

export interface PlanInput {
  readonly desired: ReadonlyMap<string, DesiredEntry>;
  readonly current: ReadonlyMap<string, CurrentEntry>;
  /**
   * A known pod (not serving, since the key is not desired) that maps to the key: our
   * delete of it is a 'deregister' naming that pod; otherwise an 'orphan-delete'.
   */
  readonly claimed?: ((key: string) => PodRef | undefined) | undefined;
  /** Our data lease (decimal). */
  readonly leaseId: string;
  /** Earlier leases of this owner: keys on them are ours and get moved to leaseId. */
  readonly adoptableLeases: ReadonlySet<string>;
  readonly policy: Policy;
  /** Only these keys (fast path); absent = full reconcile over desired ∪ current. */
  readonly scope?: ReadonlySet<string> | undefined;
}

export { NO_LEASE };

export function isDelete(change: Change): boolean {
  return change.action === 'deregister' || change.action === 'orphan-delete';
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function plan(input: PlanInput): Plan {
  const { desired, current, leaseId, adoptableLeases } = input;
  const ours = (lease: string): boolean => isOurs(lease, { leaseId, adoptableLeases });

  // Keys neither desired nor ours are left alone below, so a full reconcile visits the desired
  // keys and our own only. The result is sorted at the end (changes are few; keys may be many).
  const keys: Iterable<string> = input.scope ?? fullScope(desired, current, ours);

  const writes: Change[] = [];
  const deletes: Change[] = [];
  const skips: Skip[] = [];
  for (const key of keys) {
    const decision = decideKey(key, input, ours);
    if (decision === undefined) continue;
    if (!('action' in decision)) skips.push(decision);
    else if (isDelete(decision)) deletes.push(decision);
    else writes.push(decision);
  }
  const byKey = (a: { key: string }, b: { key: string }): number => compareKeys(a.key, b.key);
  writes.sort(byKey);
  deletes.sort(byKey);
  skips.sort(byKey);
  return { changes: [...writes, ...deletes], skips };
}

/** What to do with one key: a change, a skip worth reporting, or nothing. */
function decideKey(key: string, input: PlanInput, ours: (lease: string) => boolean): Change | Skip | undefined {
  const want = input.desired.get(key);
  const have = input.current.get(key);
  if (want !== undefined) return decideDesiredKey(key, want, have, input.leaseId, ours);
  // Not desired: only ours may be deleted; anyone else's is none of our business.
  if (have === undefined || !ours(have.lease)) return undefined;
  return decideOwnedUndesiredKey(key, have, input.claimed?.(key), input.policy);
}

/** A desired key: register it when absent, repair (or adopt) it when ours, skip it when not ours. */
function decideDesiredKey(
  key: string,
  want: DesiredEntry,
  have: CurrentEntry | undefined,
  leaseId: string,
  ours: (lease: string) => boolean,
): Change | Skip | undefined {
  const pod = want.pod;
  if (have === undefined) {
    return {
      action: 'register',
      key,
      value: want.value,
      expectedLease: NO_LEASE,
      pod,
      reason: `pod ${podKeyOf(pod)} is serving and the key is absent`,
    };
  }
  if (!ours(have.lease)) {
    return {
      key,
      pod,
      reason:
        have.lease === NO_LEASE
          ? 'not leased: written by another tool; left untouched'
          : `owned by someone else (lease ${have.lease}); left untouched`,
    };
  }
  const adopt = have.lease !== leaseId;
  if (!adopt && have.value === want.value) return undefined;
  return {
    action: 'repair',
    key,
    value: want.value,
    expectedLease: have.lease,
    pod,
    reason: adopt
      ? `adopting the key from our earlier lease ${have.lease}` + (have.value !== want.value ? ' and restoring its value' : '')
      : `value differs from what pod ${podKeyOf(pod)} needs`,
  };
}

/**
 * A key of ours that no serving pod wants: deregister it when a known pod claims it,
 * orphan-delete it otherwise; under upsert-only, keep it.
 */
function decideOwnedUndesiredKey(
  key: string,
  have: CurrentEntry,
  claimant: PodRef | undefined,
  policy: Policy,
): Change | Skip {
  if (policy === 'upsert-only') {
    return {
      key,
      pod: claimant,
      reason: claimant === undefined
        ? 'policy upsert-only: orphaned key not deleted'
        : `policy upsert-only: key of pod ${podKeyOf(claimant)}, which is not serving, not deleted`,
    };
  }
  if (claimant !== undefined) {
    return {
      action: 'deregister',
      key,
      value: have.value,
      expectedLease: have.lease,
      pod: claimant,
      reason: `pod ${podKeyOf(claimant)} is not serving (not Ready, terminating or finished)`,
    };
  }
  return {
    action: 'orphan-delete',
    key,
    value: have.value,
    expectedLease: have.lease,
    reason: 'no known pod maps to this key',
  };
}

function* fullScope(
  desired: ReadonlyMap<string, DesiredEntry>,
  current: ReadonlyMap<string, CurrentEntry>,
  ours: (lease: string) => boolean,
): Generator<string> {
  yield* desired.keys();
  for (const [key, have] of current) if (!desired.has(key) && ours(have.lease)) yield key;
}

export interface LimitResult {
  readonly plan: Plan;
  /** Deletes held back by the safety valve (empty when nothing was refused). */
  readonly refused: Change[];
  /** Why deletes were refused; undefined when nothing was refused. */
  readonly reason?: string | undefined;
}

/**
 * The safety valve (docs/decisions/0007). Counts the plan's orphan-deletes (deletes backed by no
 * pod: what an empty or partial pod cache produces) against `maxDeleteShare` of the keys
 * we own. Over the limit, every orphan-delete is refused and the rest of the plan kept.
 * - a single orphan-delete is always allowed (a one-pod service must be able to go away);
 * - deregisters are never refused: each is backed by a pod seen not serving;
 * - force disables the valve; a share ≥ 1 never refuses; NaN or negative counts as 0.
 */
export function limitDeletes(
  input: Plan,
  ownedKeyCount: number,
  maxDeleteShare: number,
  force: boolean,
): LimitResult {
  if (force) return { plan: input, refused: [] };
  let orphans = 0;
  for (const c of input.changes) if (c.action === 'orphan-delete') orphans++;
  if (orphans <= 1) return { plan: input, refused: [] };
  const share = Number.isFinite(maxDeleteShare) && maxDeleteShare > 0 ? maxDeleteShare : 0;
  const owned = Number.isFinite(ownedKeyCount) && ownedKeyCount > 0 ? Math.floor(ownedKeyCount) : 0;
  const allowed = share >= 1 ? Number.POSITIVE_INFINITY : Math.floor(share * owned);
  if (orphans <= allowed) return { plan: input, refused: [] };
  const kept: Change[] = [];
  const refused: Change[] = [];
  for (const c of input.changes) (c.action === 'orphan-delete' ? refused : kept).push(c);
  return {
    plan: { changes: kept, skips: input.skips },
    refused,
    reason:
      `refusing ${String(orphans)} orphan deletes: more than ${String(Math.round(share * 1000) / 10)}% ` +
      `of the ${String(owned)} keys we own (at most ${String(allowed)} allowed); rerun with force to delete them`,
  };
}
