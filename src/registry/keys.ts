// Key-space guards and byte helpers for the registry. Pure.

/** A bug in the caller (a key outside the key root, a bad option): never retried. */
export class RegistryProgrammingError extends Error {
  override readonly name = 'RegistryProgrammingError';
}

/** Key root with exactly one trailing '/', so '/svc' cannot also match '/svc2/...'. */
export function normaliseRoot(root: string, what: string): string {
  if (root === '' || !root.startsWith('/')) {
    throw new RegistryProgrammingError(`registry: ${what} ${JSON.stringify(root)} must start with '/'`);
  }
  if (hasControl(root)) {
    throw new RegistryProgrammingError(`registry: ${what} contains control characters`);
  }
  return root.endsWith('/') ? root : `${root}/`;
}

export function hasControl(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f]/.test(s);
}

export interface KeySpace {
  /** Normalised key root, ends with '/'. */
  readonly root: string;
  /** Prefixes inside (or outside) the root that the registry never returns or writes. */
  readonly reserved: readonly string[];
}

/** Throws unless `key` is a key the registry may write: under the root, not reserved. */
export function assertWritable(space: KeySpace, key: string): void {
  if (typeof key !== 'string' || key.length <= space.root.length || !key.startsWith(space.root)) {
    throw new RegistryProgrammingError(
      `registry: refusing key ${JSON.stringify(key)} outside the key root ${JSON.stringify(space.root)}`,
    );
  }
  if (hasControl(key)) {
    throw new RegistryProgrammingError(`registry: refusing key ${JSON.stringify(key)} with control characters`);
  }
  for (const r of space.reserved) {
    if (key.startsWith(r)) {
      throw new RegistryProgrammingError(
        `registry: refusing key ${JSON.stringify(key)} in the reserved prefix ${JSON.stringify(r)}`,
      );
    }
  }
}

export function isReserved(space: KeySpace, key: string): boolean {
  return space.reserved.some((r) => key.startsWith(r));
}

/** The smallest key greater than every key with this prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte is 0xff: the range runs to the end of the key space.
  return Buffer.from([0]);
}

/** The next key after `key` in byte order: key + '\0'. */
export function keySuccessor(key: Uint8Array): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

/**
 * The directory a key is read back from by a scoped read (docs/decisions/0013): the root plus
 * the key's first path segment ("/svc_PRE/" for "/svc_PRE/10.0.0.1-80" under "/"), or the root
 * itself for a key directly under it. One level only, so that the number of directories stays
 * bounded by the key layout's top level (service and environment), not by pods.
 */
export function keyDirectory(root: string, key: string): string {
  const slash = key.indexOf('/', root.length);
  return slash < 0 ? root : key.slice(0, slash + 1);
}
