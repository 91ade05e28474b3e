// The registry's writes: changes in guarded (optionally fenced) transactions, a few in flight
// at once, conflicts judged from each failed transaction's own reads and the rest re-submitted;
// and directory markers for keys found by a full read. What the transactions are is txn.ts.
import { NO_LEASE } from '../ownership.ts';
import type { Change, Fence } from '../types.ts';
import type { RegistryEtcd } from './client.ts';
import type { DirectoryMarkers } from './directories.ts';
import type { LeaseKeeper } from './lease.ts';
import { errorMessage, isLeaseNotFound, isTransient, withRetry, type RetryHooks, type RetryOutcome, type RetryPolicy } from './retry.ts';
import {
  batches,
  buildTxn,
  isPut,
  judgeFailedTxn,
  recordApplied,
  recordErrors,
  recordSuperseded,
  type Item,
  type ResultSlots,
  type TxnRequest,
} from './txn.ts';
import type { TxnAnswer } from './txn-wire.ts';

export interface WriteContext {
  readonly client: RegistryEtcd;
  readonly markers: DirectoryMarkers;
  /** The data lease, read anew at every attempt: it may be replaced during a call. */
  readonly keeper: Pick<LeaseKeeper, 'current' | 'kick' | 'waitForLeaseOtherThan'>;
  readonly retry: RetryPolicy;
  /** Retry hooks that report failures of `op`. */
  readonly hooks: (op: string) => RetryHooks;
  readonly maxOps: number;
  /** Transactions in flight at once. */
  readonly inflight: number;
  /** How long a write waits for the keeper to replace a lease etcd says is gone. */
  readonly leaseWaitMs: number;
  /** Told the error of every write transaction, or undefined when one applied. */
  readonly noteWriteOutcome: (error: unknown) => void;
}

interface BatchContext {
  /** Set once the call cannot succeed (fence lost, etcd unavailable): later batches fail fast. */
  abort: string | undefined;
  /** Asked before every retry of a transaction: false drops the change (its result: superseded). */
  readonly stillPlanned: (change: Change) => boolean;
}

/** Thrown inside a retry when the caller no longer plans some of the transaction's changes. */
class Superseded extends Error {
  readonly items: readonly Item[];
  constructor(items: readonly Item[]) {
    super(`superseded: ${items.length} change(s) no longer planned`);
    this.items = items;
  }
}

/**
 * Applies `items` in batches; every item gets its result in `results`. Never throws for etcd
 * failures. Before each retry of a transaction, `stillPlanned` is asked about its changes: a
 * change planned before etcd became unavailable may be wrong by the time it could commit (a
 * deregistration whose IP a new Ready pod took meanwhile), so it is dropped, not written late.
 */
export async function applyItems(
  ctx: WriteContext,
  items: readonly Item[],
  fence: Fence | undefined,
  results: ResultSlots,
  stillPlanned: (change: Change) => boolean = () => true,
): Promise<void> {
  const txns = batches(items, {
    maxOps: ctx.maxOps,
    reservedOps: fence !== undefined ? 1 : 0,
    directoryOf: (key) => ctx.markers.directoryOf(key),
  });
  // The same key twice: its changes must apply in order, one transaction at a time.
  const sequential = new Set(items.map((i) => i.change.key)).size !== items.length;
  const state: BatchContext = { abort: undefined, stillPlanned };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < txns.length) {
      const batch = txns[next++]!;
      if (state.abort !== undefined) recordErrors(results, batch, state.abort);
      else await applyBatch(ctx, batch, fence, results, state);
    }
  };
  const workers = sequential ? 1 : Math.min(ctx.inflight, txns.length);
  await Promise.all(Array.from({ length: workers }, worker));
}

/**
 * Applies one batch: one transaction, and when guards fail, another for the changes whose
 * guards still hold, until none is left. Waits for a new lease (at most twice) when etcd
 * says ours is gone.
 */
async function applyBatch(ctx: WriteContext, batch: readonly Item[], fence: Fence | undefined, results: ResultSlots, state: BatchContext): Promise<void> {
  let pending = batch;
  let ambiguous = false;
  let leaseWaits = 0;
  for (let round = 0; pending.length > 0; round++) {
    // Without a lease only deletes got this far; '0' is never attached to anything.
    const lease = ctx.keeper.current ?? NO_LEASE;
    if (round > batch.length + 2) {
      recordErrors(results, pending, 'internal: conflict resolution did not converge');
      return;
    }
    const { req, markers } = txnWithMarkers(ctx.markers, pending, lease, fence);
    const current = pending;
    const sent = await send(ctx, req, () => current.filter((it) => !state.stillPlanned(it.change)));
    if ('superseded' in sent) {
      recordSuperseded(results, sent.superseded);
      const dropped = new Set(sent.superseded);
      pending = pending.filter((it) => !dropped.has(it));
      // An earlier attempt may have applied the transaction: judge the rest as ambiguous.
      ambiguous = true;
      continue;
    }
    if (!sent.ok) {
      if (isLeaseNotFound(sent.error) && leaseWaits < 2 && pending.some((it) => isPut(it.change))) {
        leaseWaits++;
        await awaitNewLease(ctx, lease);
        continue;
      }
      recordErrors(results, pending, errorMessage(sent.error));
      // etcd is unreachable even after retries: fail the remaining batches at once
      // instead of spending the retry budget again on each of them.
      if (isTransient(sent.error)) state.abort ??= `not attempted: etcd unavailable (${errorMessage(sent.error)})`;
      return;
    }
    ambiguous ||= sent.outcome.ambiguous;
    const res = sent.outcome.value;
    if (res.succeeded) {
      ctx.markers.noteMarked(markers, lease);
      recordApplied(results, pending, lease, res.revision);
      return;
    }
    const verdict = judgeFailedTxn(pending, fence, res.reads, ambiguous, lease);
    if (verdict.fenceLost !== undefined) {
      state.abort = verdict.fenceLost;
      recordErrors(results, pending, verdict.fenceLost);
      return;
    }
    for (const { index, result } of verdict.settled) results[index] = result;
    if (verdict.retry.length === pending.length) {
      recordErrors(results, pending, 'internal: transaction failed but every guard holds');
      return;
    }
    pending = verdict.retry;
  }
}

/**
 * The transaction for `items`, plus a marker for each put's directory not yet marked on this
 * lease: in the same transaction, so no key of ours is ever outside the directories a scoped
 * read covers.
 */
function txnWithMarkers(dirs: DirectoryMarkers, items: readonly Item[], lease: string, fence: Fence | undefined): { req: TxnRequest; markers: Set<string> } {
  const puts = items.filter((it) => isPut(it.change)).map((it) => it.change.key);
  const markers = lease !== NO_LEASE ? dirs.unmarked(puts, lease) : new Set<string>();
  const req = buildTxn(items, lease, fence);
  for (const dir of markers) req.success.push(dirs.markerOp(dir, lease));
  return { req, markers };
}

type Sent =
  | { readonly ok: true; readonly outcome: RetryOutcome<TxnAnswer> }
  | { readonly ok: false; readonly error: unknown }
  | { readonly ok: false; readonly superseded: readonly Item[] };

/**
 * Sends one transaction with retries; its error is returned, not thrown, and noted. Before
 * each retry, `stale` names the changes no longer planned: then nothing is sent and those
 * are returned, for the caller to drop and send the rest anew.
 */
async function send(ctx: WriteContext, req: TxnRequest, stale: () => readonly Item[]): Promise<Sent> {
  const hooks = ctx.hooks('apply');
  try {
    const attempt = (n: number): Promise<TxnAnswer> => {
      const dropped = n > 1 ? stale() : [];
      return dropped.length > 0 ? Promise.reject(new Superseded(dropped)) : ctx.client.sendTxn(req);
    };
    const outcome = await withRetry(ctx.retry, attempt, {
      ...hooks,
      // A dropped change is the caller's decision, not an etcd failure.
      onError: (err, n, willRetry) => {
        if (!(err instanceof Superseded)) hooks.onError?.(err, n, willRetry);
      },
    });
    ctx.noteWriteOutcome(undefined);
    return { ok: true, outcome };
  } catch (err) {
    if (err instanceof Superseded) return { ok: false, superseded: err.items };
    ctx.noteWriteOutcome(err);
    return { ok: false, error: err };
  }
}

/** Our lease is gone; the keeper will replace it. Waits for that (bounded). */
async function awaitNewLease(ctx: WriteContext, lease: string): Promise<void> {
  ctx.keeper.kick();
  await ctx.keeper.waitForLeaseOtherThan(lease, ctx.leaseWaitMs);
}

/** Writes markers for `dirs` on `lease`, at most maxOps per transaction. */
export async function writeMarkers(ctx: WriteContext, dirs: readonly string[], lease: string): Promise<void> {
  for (let i = 0; i < dirs.length; i += ctx.maxOps) {
    const chunk = dirs.slice(i, i + ctx.maxOps);
    const req = { compare: [], success: chunk.map((dir) => ctx.markers.markerOp(dir, lease)), failure: [] };
    await withRetry(ctx.retry, () => ctx.client.sendTxn(req), ctx.hooks('mark'));
    ctx.markers.noteMarked(chunk, lease);
  }
}
