// The registry's reads: the directory markers, then the directories they name, every page
// pinned to the markers' revision so that the result is one consistent view.
import type { Etcd3 } from 'etcd3';
import type { CurrentEntry } from '../types.ts';
import { directoriesToRead, type DirectoryMarkers } from './directories.ts';
import { isReserved, keyDirectory, keySuccessor, prefixEnd, type KeySpace } from './keys.ts';
import { isCompacted, withRetry, type RetryHooks, type RetryPolicy } from './retry.ts';
import { toEntry } from './txn.ts';

/** What a scoped read returned: the keys of `directories`, read at `revision`. */
export interface ScopedRead {
  readonly entries: Map<string, CurrentEntry>;
  /** The directories read ([root] for a full read). */
  readonly directories: readonly string[];
  readonly revision: string;
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

/** Reads the markers, then every directory `pick` chooses, all at the markers' revision. */
export async function readDirectories(ctx: ReadContext, pick: (marked: readonly string[]) => string[]): Promise<ScopedRead> {
  for (let restart = 0; ; restart++) {
    try {
      const { marked, revision } = await readMarkers(ctx);
      const dirs = directoriesToRead(pick(marked), ctx.space.root);
      const entries = new Map<string, CurrentEntry>();
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let i = next++; i < dirs.length; i = next++) await readPrefix(ctx, dirs[i]!, revision, entries);
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, dirs.length) }, worker));
      return { entries, directories: dirs, revision };
    } catch (err) {
      // Compaction overtook the pinned revision: read again from the current one.
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

/** Every key under `prefix` at `revision`, page by page, reserved keys left out. */
async function readPrefix(ctx: ReadContext, prefix: string, revision: string, out: Map<string, CurrentEntry>): Promise<void> {
  const first = Buffer.from(prefix);
  const end = prefixEnd(first);
  let start: Buffer = first;
  for (;;) {
    const req = { key: start, range_end: end, limit: ctx.pageSize, revision };
    const { value: res } = await withRetry(ctx.retry, () => ctx.client.kv.range(req), ctx.hooks('readAll'));
    for (const kv of res.kvs) {
      const entry = toEntry(kv);
      if (!isReserved(ctx.space, entry.key)) out.set(entry.key, entry);
    }
    const last = res.kvs[res.kvs.length - 1];
    if (!res.more || last === undefined) return;
    start = keySuccessor(last.key);
  }
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
