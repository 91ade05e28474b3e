// The one ownership rule (docs/decisions/0006, 0010): a key is ours only while it is attached
// to our data lease or to an earlier lease of the same owner (adoptable: the plan moves its
// keys onto the current lease). Keys without a lease or on anyone else's lease are never
// changed or deleted. The plan, the registry's reads, the delete valve, the owned-keys metric
// and `etcd-registrar list` all ask this one function.

/** etcd's "no lease". A key on it is never ours, whatever the lease ids say. */
export const NO_LEASE = '0';

/** The leases whose keys are ours. */
export interface Ownership {
  /** Our data lease (decimal), NO_LEASE while we have none. */
  readonly leaseId: string;
  /** Earlier leases of this owner: keys on them are ours and get moved to leaseId. */
  readonly adoptableLeases: ReadonlySet<string>;
}

export function isOurs(lease: string, ownership: Ownership): boolean {
  return lease !== NO_LEASE && lease !== '' && (lease === ownership.leaseId || ownership.adoptableLeases.has(lease));
}
