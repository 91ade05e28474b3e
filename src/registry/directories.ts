// Directory markers (docs/decisions/0013): one key per directory that holds keys of this
// owner, `${recordKey}/dirs` + directory, on the data lease, so a scoped read knows which
// directories to read. This module keeps what is known about them and builds their
// operations; registry.ts reads and writes them.
import type { IKeyValue } from 'etcd3';
import type { TxnOp } from './txn-wire.ts';
import { keyDirectory } from './keys.ts';

/** Beyond this many marked directories a scoped read would be a full read in many pieces. */
export const MAX_MARKED_DIRECTORIES = 256;

export class DirectoryMarkers {
  readonly #root: string;
  /** `${recordKey}/dirs/`: every marker key starts with it. */
  readonly prefix: string;
  /** Directories whose marker is known to be in etcd, with the lease it is attached to. */
  readonly #marked = new Map<string, string>();
  /** Every directory handed out for a marker so far (bounded by MAX_MARKED_DIRECTORIES). */
  readonly #known = new Set<string>();

  /** `root`: the normalised key root; `recordKey`: this owner's record key. */
  constructor(root: string, recordKey: string) {
    this.#root = root;
    this.prefix = `${recordKey}/dirs/`;
  }

  /** The directory whose marker covers `key`: its own, or the root once there are too many. */
  directoryOf(key: string): string {
    const dir = keyDirectory(this.#root, key);
    if (this.#known.has(dir)) return dir;
    // Past MAX_MARKED_DIRECTORIES the key layout is not one a scoped read helps: mark the root.
    if (this.#known.size >= MAX_MARKED_DIRECTORIES) return this.#root;
    this.#known.add(dir);
    return dir;
  }

  /** The put that marks `dir` on `lease` (the marker's value is the directory itself). */
  markerOp(dir: string, lease: string): TxnOp {
    return { request_put: { key: Buffer.from(`${this.prefix.slice(0, -1)}${dir}`), value: Buffer.from(dir), lease } };
  }

  /** The directories of `keys` whose marker is not known to be on `lease`, in first-seen order. */
  unmarked(keys: Iterable<string>, lease: string): Set<string> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const dir = this.directoryOf(key);
      if (this.#marked.get(dir) !== lease) dirs.add(dir);
    }
    return dirs;
  }

  /** Markers for `dirs` on `lease` are now in etcd. */
  noteMarked(dirs: Iterable<string>, lease: string): void {
    for (const dir of dirs) this.#marked.set(dir, lease);
  }

  /**
   * Replaces what is known to be marked with the markers read from etcd (every key under
   * `prefix`) and returns their directories under the root, in the order read.
   */
  noteRead(kvs: readonly IKeyValue[]): string[] {
    const marked: string[] = [];
    this.#marked.clear();
    for (const kv of kvs) {
      const dir = kv.key.toString('utf8').slice(this.prefix.length - 1);
      // A marker of an earlier key root is not ours to follow.
      if (!dir.startsWith(this.#root)) continue;
      marked.push(dir);
      this.#known.add(dir);
      this.#marked.set(dir, typeof kv.lease === 'string' ? kv.lease : String(kv.lease ?? '0'));
    }
    return marked;
  }
}

/** The prefixes a read covers: the root alone when it is among them (it holds all others), else each, sorted. */
export function directoriesToRead(picked: string[], root: string): string[] {
  return picked.includes(root) ? [root] : picked.sort();
}
