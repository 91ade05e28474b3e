// The owner record: which data lease an owner uses, and its earlier ones. Stored as JSON
// without a lease, so it outlives every lease; replaced only with a compare-and-swap.
import type { Etcd3 } from 'etcd3';

/** JSON stored (without a lease) at `${ownerRecordPrefix}${ownerId}`. */
export interface OwnerRecord {
  readonly ownerId: string;
  /** Current data lease, decimal string. */
  readonly leaseId: string;
  readonly ttl: number;
  readonly updatedAt: string;
  /** Earlier leases of this owner, newest first (bounded); keys on them are still ours. */
  readonly previousLeaseIds?: readonly string[];
}

/** Earlier leases kept in a record. */
export const MAX_PREVIOUS = 8;

const LEASE_ID = /^[1-9][0-9]*$/;

/**
 * The record in `text`; undefined when it names no valid lease. Throws when `text` is not a
 * JSON object. Fields missing from an older record get harmless values (`ownerId` the reader's).
 */
export function parseOwnerRecord(text: string, ownerId: string): OwnerRecord | undefined {
  const parsed = JSON.parse(text) as Partial<OwnerRecord>;
  if (typeof parsed.leaseId !== 'string' || !LEASE_ID.test(parsed.leaseId)) return undefined;
  return {
    ownerId: String(parsed.ownerId ?? ownerId),
    leaseId: parsed.leaseId,
    ttl: Number(parsed.ttl ?? 0),
    updatedAt: String(parsed.updatedAt ?? ''),
    previousLeaseIds: Array.isArray(parsed.previousLeaseIds)
      ? parsed.previousLeaseIds.filter((x): x is string => typeof x === 'string' && LEASE_ID.test(x))
      : [],
  };
}

/** A record naming `leaseId` now, with the first MAX_PREVIOUS distinct `previous` leases. */
export function newOwnerRecord(ownerId: string, leaseId: string, ttl: number, previous: Iterable<string>): OwnerRecord {
  return {
    ownerId,
    leaseId,
    ttl,
    updatedAt: new Date().toISOString(),
    previousLeaseIds: [...new Set(previous)].slice(0, MAX_PREVIOUS),
  };
}

/** The stored record and its mod revision ('0' when absent); `onInvalid` when it is not JSON. */
export async function readOwnerRecord(
  client: Etcd3,
  key: string,
  ownerId: string,
  onInvalid: () => void,
): Promise<{ record: OwnerRecord | undefined; modRevision: string }> {
  const res = await client.kv.range({ key: Buffer.from(key) });
  const kv = res.kvs[0];
  if (kv === undefined) return { record: undefined, modRevision: '0' };
  let record: OwnerRecord | undefined;
  try {
    record = parseOwnerRecord(kv.value.toString('utf8'), ownerId);
  } catch {
    onInvalid();
  }
  return { record, modRevision: kv.mod_revision };
}

/** Writes `record` if the stored one is still at `modRevision` ('0': absent); true when written. */
export async function replaceOwnerRecord(client: Etcd3, key: string, modRevision: string, record: OwnerRecord): Promise<boolean> {
  const k = Buffer.from(key);
  const txn = await client.kv.txn({
    compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: modRevision }],
    success: [{ request_put: { key: k, value: Buffer.from(JSON.stringify(record)) } }],
    failure: [],
  });
  return txn.succeeded;
}
