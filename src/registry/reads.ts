// The registry's reads: the directory markers, then the directories they name, every page
// pinned to the markers' revision so that the result is one consistent view.
import type { Etcd3 } from 'etcd3';
import type { CurrentEntry, ReadBasis } from '../types.ts';
import { directoriesToRead, type DirectoryMarkers } from './directories.ts';
import { isReserved, keyDirectory, keySuccessor, prefixEnd, type KeySpace } from './keys.ts';
import { isCompacted, withRetry, type RetryHooks, type RetryPolicy } from './retry.ts';
import { toEntry } from './txn.ts';

/** What a read returned: the keys of `directories`, read at `revision` (a full read: see readEverything). */
export interface ScopedRead extends ReadBasis {
  readonly entries: Map<string, CurrentEntry>;
}

/** Nothing in the directories of `since` changed up to `revision`: the caller's copy of them is current. */
export interface UnchangedRead extends ReadBasis {
  readonly unchanged: true;
}

export interface ReadContext {
  readonly client: Etcd3;
  readonly space: KeySpace;
  readonly markers: DirectoryMarkers;
  readonly retry: RetryPolicy;
  /** Keys per range call. */
  readonly pageSize: number;
  /** Retry hooks that report failures of `op`. */
  readonly hooks: (op: string) => RetryHooks;
}

/** Directories read at once: etcd serves one while we decode another. */
const PARALLEL_READS = 4;
/** Restarts after compaction overtook the pinned revision. */
const MAX_COMPACTED_RESTARTS = 3;

/**
 * Reads the markers, then every directory `pick` chooses, all at the markers' revision. With
 * `since` (what an earlier read of the same directories saw), first asks etcd whether anything in
 * them changed since: if not, answers that instead of reading them again.
 */
export async function readDirectories(ctx: ReadContext, pick: (marked: readonly string[]) => string[]): Promise<ScopedRead>;
export async function readDirectories(ctx: ReadContext, pick: (marked: readonly string[]) => string[], since: ReadBasis | undefined): Promise<ScopedRead | UnchangedRead>;
export async function readDirectories(ctx: ReadContext, pick: (marked: readonly string[]) => string[], since?: ReadBasis): Promise<ScopedRead | UnchangedRead> {
  return atMarkersRevision(ctx, async (marked, revision) => {
    const dirs = directoriesToRead(pick(marked), ctx.space.root);
    if (since !== undefined && await unchangedSince(ctx, since, dirs, revision)) {
      return { unchanged: true, directories: dirs, revision, counts: since.counts };
    }
    const entries = new Map<string, CurrentEntry>();
    const counts = new Map<string, number>();
    let trusted = true;
    await inParallel(dirs, async (dir) => {
      const { counted, read } = await readPrefix(ctx, dir, revision, entries);
      counts.set(dir, counted);
      if (counted !== read) trusted = false;
    });
    return { entries, directories: dirs, revision, counts: trusted ? counts : undefined };
  });
}

/**
 * Reads every key under the root, at the markers' revision, and returns what a scoped read of
 * the directories `pick` chooses would, plus the keys on our leases (`owns`) wherever they are
 * (keepScoped). Its directories and counts are those of that scoped read (etcd's count of keys
 * in each, reserved ones included, tallied from the keys read), so that the next scoped read can
 * ask whether anything changed since.
 */
export async function readEverything(ctx: ReadContext, pick: (marked: readonly string[]) => string[], owns: (lease: string) => boolean): Promise<ScopedRead> {
  const root = ctx.space.root;
  return atMarkersRevision(ctx, async (marked, revision) => {
    const dirs = directoriesToRead(pick(marked), root);
    const relevant = new Set(dirs);
    const counts = new Map(dirs.map((dir) => [dir, 0]));
    const all = new Map<string, CurrentEntry>();
    const { counted, read } = await readPrefix(ctx, root, revision, all, (key) => {
      const dir = relevant.has(root) ? root : keyDirectory(root, key);
      const n = counts.get(dir);
      if (n !== undefined) counts.set(dir, n + 1);
    });
    const { entries } = keepScoped({ entries: all, directories: [root], revision }, relevant, root, owns);
    return { entries, directories: dirs, revision, counts: counted === read ? counts : undefined };
  });
}

/**
 * Reads the markers, then runs `read` pinned to their revision; when compaction overtakes that
 * revision, starts again from the current one (a few times at most).
 */
async function atMarkersRevision<T>(ctx: ReadContext, read: (marked: string[], revision: string) => Promise<T>): Promise<T> {
  for (let restart = 0; ; restart++) {
    try {
      const { marked, revision } = await readMarkers(ctx);
      return await read(marked, revision);
    } catch (err) {
      if (isCompacted(err) && restart < MAX_COMPACTED_RESTARTS) continue;
      throw err;
    }
  }
}

/** The marked directories under the root, and the revision they were read at. */
async function readMarkers(ctx: ReadContext): Promise<{ marked: string[]; revision: string }> {
  const start = Buffer.from(ctx.markers.prefix);
  const { value: res } = await withRetry(
    ctx.retry,
    () => ctx.client.kv.range({ key: start, range_end: prefixEnd(start) }),
    ctx.hooks('readMarkers'),
  );
  return { marked: ctx.markers.noteRead(res.kvs), revision: res.header.revision };
}

/** `work` over `items`, PARALLEL_READS at a time: etcd serves one request while we decode another. */
async function inParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) await work(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, items.length) }, worker));
}

/**
 * Every key under `prefix` at `revision`, page by page, reserved keys left out. Returns how many
 * keys etcd counted under the prefix (the first page's count) and how many pages brought.
 */
async function readPrefix(ctx: ReadContext, prefix: string, revision: string, out: Map<string, CurrentEntry>, tally?: (key: string) => void): Promise<{ counted: number; read: number }> {
  const first = Buffer.from(prefix);
  const end = prefixEnd(first);
  let start: Buffer = first;
  let counted = -1;
  let read = 0;
  for (;;) {
    const req = { key: start, range_end: end, limit: ctx.pageSize, revision };
    const { value: res } = await withRetry(ctx.retry, () => ctx.client.kv.range(req), ctx.hooks('readAll'));
    if (counted < 0) counted = Number(res.count);
    read += res.kvs.length;
    for (const kv of res.kvs) {
      const entry = toEntry(kv);
      tally?.(entry.key);
      if (!isReserved(ctx.space, entry.key)) out.set(entry.key, entry);
    }
    const last = res.kvs[res.kvs.length - 1];
    if (!res.more || last === undefined) return { counted, read };
    start = keySuccessor(last.key);
  }
}

/**
 * Whether the directories `since` read are exactly as they were: the same directories, no key in
 * them modified after `since.revision`, and as many keys as then (a key deleted and another
 * created would show the created one; a deletion alone, the count). One request per directory,
 * whose answer holds at most one key. Any failure (an etcd-compatible server without revision
 * filters, a timeout) answers no, and the caller reads.
 */
async function unchangedSince(ctx: ReadContext, since: ReadBasis, dirs: readonly string[], revision: string): Promise<boolean> {
  const counts = since.counts;
  if (counts === undefined || dirs.length !== since.directories.length || dirs.some((dir, i) => dir !== since.directories[i])) return false;
  const after = String(BigInt(since.revision) + 1n);
  let unchanged = true;
  try {
    await inParallel(dirs, async (dir) => {
      if (!unchanged) return;
      const key = Buffer.from(dir);
      const res = await ctx.client.kv.range({ key, range_end: prefixEnd(key), revision, min_mod_revision: after, keys_only: true, limit: 1 });
      if (res.kvs.length > 0 || Number(res.count) !== counts.get(dir)) unchanged = false;
    });
  } catch {
    return false;
  }
  return unchanged;
}

/**
 * Of a full read, what a scoped read of the `relevant` directories would have returned, plus
 * the keys on our leases (`owns`) wherever they are. The whole read when the root is relevant.
 */
export function keepScoped(read: ScopedRead, relevant: ReadonlySet<string>, root: string, owns: (lease: string) => boolean): ScopedRead {
  if (relevant.has(root)) return read;
  const kept = new Map<string, CurrentEntry>();
  for (const [key, entry] of read.entries) {
    if (owns(entry.lease) || relevant.has(keyDirectory(root, key))) kept.set(key, entry);
  }
  return { ...read, entries: kept };
}
