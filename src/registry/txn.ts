// The registry's transactions, built and judged without I/O: which changes are refused before
// any call, how changes are split into transactions, the guard and operation of each change,
// and what a transaction's answer means for each change. registry.ts sends them.
import type { ICompare } from 'etcd3';
import type { ApplyResult, Change, CurrentEntry, Fence } from '../types.ts';
import type { LeaseMode } from './lease-types.ts';
import type { RangeRead, StoredKv, TxnOp, TxnRequest } from './txn-wire.ts';

export type { TxnRequest } from './txn-wire.ts';

/** A change and its place in the caller's list (results come back in that order). */
export interface Item {
  readonly index: number;
  readonly change: Change;
}

/** One result per change of an apply() call, filled in as transactions complete. */
export type ResultSlots = (ApplyResult | undefined)[];

/** Keep each txn well under etcd's 1.5 MiB request limit. */
export const MAX_TXN_BYTES = 1024 * 1024;

export function isPut(c: Change): boolean {
  return c.action === 'register' || c.action === 'repair';
}

/** What apply() needs to know to refuse a change before any call. */
export interface Admission {
  readonly ownerId: string;
  readonly mode: LeaseMode;
  readonly hasLease: boolean;
  readonly ownsLease: (lease: string) => boolean;
}

/**
 * Why a change is refused without asking etcd (undefined: it may be tried): a put needs a
 * live data lease; repairs and deletes may only touch keys on a lease of this owner.
 */
export function refusal(change: Change, admission: Admission): string | undefined {
  if (!admission.hasLease && isPut(change)) {
    return `refused: no live data lease for owner ${admission.ownerId} (mode ${admission.mode})`;
  }
  if (change.action !== 'register' && !admission.ownsLease(change.expectedLease)) {
    return `refused: expected lease ${change.expectedLease} is not a lease of owner ${admission.ownerId}`;
  }
  return undefined;
}

export interface BatchLimits {
  /** Compares and operations per transaction (etcd's --max-txn-ops). */
  readonly maxOps: number;
  /** Of those, taken by something other than the changes (the fence). */
  readonly reservedOps: number;
  /** The directory whose marker a put into `key` needs (docs/decisions/0013). */
  readonly directoryOf: (key: string) => string;
}

/**
 * Splits into transactions: ≤ maxOps compares (fence included) and ≤ maxOps operations (a
 * directory marker may join each put's directory), no key twice, bounded bytes.
 */
export function batches(items: readonly Item[], limits: BatchLimits): Item[][] {
  const limit = limits.maxOps - limits.reservedOps;
  const out: Item[][] = [];
  let cur: Item[] = [];
  let keys = new Set<string>();
  let dirs = new Set<string>();
  let bytes = 0;
  for (const it of items) {
    const size = Buffer.byteLength(it.change.key) * 3 + Buffer.byteLength(it.change.value) + 64;
    const dir = isPut(it.change) ? limits.directoryOf(it.change.key) : undefined;
    const ops = cur.length + 1 + dirs.size + (dir === undefined || dirs.has(dir) ? 0 : 1);
    if (cur.length > 0 && (ops > limit || keys.has(it.change.key) || bytes + size > MAX_TXN_BYTES)) {
      out.push(cur);
      cur = [];
      keys = new Set();
      dirs = new Set();
      bytes = 0;
    }
    cur.push(it);
    keys.add(it.change.key);
    if (dir !== undefined) dirs.add(dir);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

function rangeOp(key: string): TxnOp {
  return { request_range: { key: Buffer.from(key) } };
}

/** Register requires the key absent; repair and deletes require it on `expectedLease`. */
export function guardOf(c: Change): ICompare {
  const key = Buffer.from(c.key);
  if (c.action === 'register') return { key, target: 'Create', result: 'Equal', create_revision: 0 };
  return { key, target: 'Lease', result: 'Equal', lease: c.expectedLease };
}

/** Puts attach `lease`; deletes remove the one key. */
export function opOf(c: Change, lease: string): TxnOp {
  const key = Buffer.from(c.key);
  if (isPut(c)) return { request_put: { key, value: Buffer.from(c.value), lease } };
  return { request_delete_range: { key } };
}

/**
 * One transaction for `items`: the fence's create revision (when given) and every guard are
 * compared; on success every change is applied, on failure the fence and every key are read,
 * atomically with the compares, so the failure can be judged without another call.
 */
export function buildTxn(items: readonly Item[], lease: string, fence: Fence | undefined): TxnRequest {
  const compare: ICompare[] = [];
  const failure: TxnOp[] = [];
  if (fence !== undefined) {
    compare.push({ key: Buffer.from(fence.key), target: 'Create', result: 'Equal', create_revision: fence.createRevision });
    failure.push(rangeOp(fence.key));
  }
  for (const it of items) {
    compare.push(guardOf(it.change));
    failure.push(rangeOp(it.change.key));
  }
  return { compare, success: items.map((it) => opOf(it.change, lease)), failure };
}

/** Local evaluation of the guard against the state the failure branch read. */
export function guardHolds(c: Change, current: CurrentEntry | undefined): boolean {
  if (c.action === 'register') return current === undefined;
  return (current?.lease ?? '0') === c.expectedLease;
}

/** The key already is what the change wanted (used only after an ambiguous attempt). */
export function satisfied(c: Change, current: CurrentEntry | undefined, lease: string): boolean {
  if (isPut(c)) return current !== undefined && current.value === c.value && current.lease === lease;
  return current === undefined;
}

export function toEntry(kv: StoredKv): CurrentEntry {
  return { key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), lease: kv.lease, modRevision: kv.mod_revision };
}

export function recordErrors(results: ResultSlots, items: readonly Item[], error: string): void {
  for (const it of items) results[it.index] = { change: it.change, outcome: 'error', error };
}

/** Changes the caller stopped planning while their transaction waited for a retry: not written. */
export function recordSuperseded(results: ResultSlots, items: readonly Item[]): void {
  for (const it of items) results[it.index] = { change: it.change, outcome: 'superseded' };
}

/** Every change of a transaction that succeeded at `revision`, puts on `lease`. */
export function recordApplied(results: ResultSlots, items: readonly Item[], lease: string, revision: string): void {
  for (const it of items) {
    results[it.index] = {
      change: it.change,
      outcome: 'ok',
      revision,
      current: isPut(it.change) ? { key: it.change.key, value: it.change.value, lease, modRevision: revision } : undefined,
    };
  }
}

/** What a failed transaction's reads say about each of its changes. */
export interface FailedTxnVerdict {
  /** Set when the fence no longer matches: nothing may be written under it. */
  readonly fenceLost?: string | undefined;
  /** Changes whose guard still holds: another transaction may apply them. */
  readonly retry: readonly Item[];
  /** Changes settled by what was read: conflicts, or already applied after an ambiguous attempt. */
  readonly settled: ReadonlyArray<{ readonly index: number; readonly result: ApplyResult }>;
}

/**
 * Judges a failed transaction built by buildTxn from its failure branch's reads:
 * the fence first, then each change's guard. With `ambiguous` (an earlier attempt timed out
 * and may have applied), a change whose key already is what it wanted counts as applied.
 */
export function judgeFailedTxn(
  items: readonly Item[],
  fence: Fence | undefined,
  reads: readonly RangeRead[],
  ambiguous: boolean,
  lease: string,
): FailedTxnVerdict {
  let offset = 0;
  if (fence !== undefined) {
    offset = 1;
    const fkv = reads[0]?.kvs[0];
    if (fkv === undefined || fkv.create_revision !== fence.createRevision) {
      const fenceLost = `fence lost: ${fence.key} create revision is ${fkv?.create_revision ?? 'absent'}, expected ${fence.createRevision}`;
      return { fenceLost, retry: [], settled: [] };
    }
  }
  const retry: Item[] = [];
  const settled: { index: number; result: ApplyResult }[] = [];
  items.forEach((it, j) => {
    const kv = reads[offset + j]?.kvs[0];
    const current = kv !== undefined ? toEntry(kv) : undefined;
    if (guardHolds(it.change, current)) {
      retry.push(it);
    } else if (ambiguous && satisfied(it.change, current, lease)) {
      const result = { change: it.change, outcome: 'ok' as const, current, ...(current !== undefined ? { revision: current.modRevision } : {}) };
      settled.push({ index: it.index, result });
    } else {
      settled.push({ index: it.index, result: { change: it.change, outcome: 'conflict', current } });
    }
  });
  return { retry, settled };
}
