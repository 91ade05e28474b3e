// The registry's options, checked and given their defaults once, when it is constructed.
import type { Logger } from 'pino';
import type { AuthOptions, TlsOptions } from './client.ts';
import { hasControl, normaliseRoot, RegistryProgrammingError, type KeySpace } from './keys.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.ts';

export interface RegistryOptions {
  readonly endpoints: readonly string[];
  /** Identity of this installation; one data lease per owner id. */
  readonly ownerId: string;
  /** Every key written or deleted lives under this prefix (normalised to end with '/'). */
  readonly keyRoot: string;
  /** Default '/etcd-registrar/owners/'. Never returned by readAll, never written by apply. */
  readonly ownerRecordPrefix?: string | undefined;
  readonly leaseTtlSeconds: number;
  /** Deadline of every unary etcd call. */
  readonly callTimeoutMs: number;
  /** Changes per transaction; default 100, at most 128 (etcd's --max-txn-ops default). */
  readonly maxOpsPerTxn?: number | undefined;
  /** Transactions in flight at once in one apply(); default 4. */
  readonly maxInflightTxns?: number | undefined;
  /** Keys per page in readAll; default 5000. */
  readonly pageSize?: number | undefined;
  /** More prefixes that readAll hides and apply refuses (e.g. a leader-election prefix). */
  readonly reservedPrefixes?: readonly string[] | undefined;
  readonly retry?: Partial<RetryPolicy> | undefined;
  /** How often the owner record is re-checked while running; default max(10 s, 2×TTL). */
  readonly ownerRecordCheckMs?: number | undefined;
  readonly tls?: TlsOptions | undefined;
  readonly auth?: AuthOptions | undefined;
  readonly logger: Logger;
  /** How often TLS/password files are re-read so rotations apply without a restart (default 10 s). */
  readonly credentialRefreshMs?: number | undefined;
}

export const DEFAULT_OWNER_RECORD_PREFIX = '/etcd-registrar/owners/';
const ETCD_MAX_TXN_OPS = 128;

/** What the registry derives from its options. */
export interface RegistrySettings {
  /** `${ownerRecordPrefix}${ownerId}`: this owner's record, and the base of its directory markers. */
  readonly recordKey: string;
  /** The key root, with the owner records and the reserved prefixes kept out of it. */
  readonly space: KeySpace;
  readonly maxOps: number;
  readonly inflight: number;
  readonly pageSize: number;
  readonly retry: RetryPolicy;
}

/** Checks the options (RegistryProgrammingError names the first bad one) and fills in defaults. */
export function registrySettings(opts: RegistryOptions): RegistrySettings {
  const ownerId = opts.ownerId;
  if (ownerId === '' || ownerId.includes('/') || hasControl(ownerId)) {
    throw new RegistryProgrammingError(`registry: owner id ${JSON.stringify(ownerId)} must be non-empty, without '/' or control characters`);
  }
  const recordPrefix = normaliseRoot(opts.ownerRecordPrefix ?? DEFAULT_OWNER_RECORD_PREFIX, 'owner record prefix');
  const space = {
    root: normaliseRoot(opts.keyRoot, 'key root'),
    reserved: [recordPrefix, ...(opts.reservedPrefixes ?? [])],
  };
  const maxOps = opts.maxOpsPerTxn ?? 100;
  if (!Number.isInteger(maxOps) || maxOps < 2 || maxOps > ETCD_MAX_TXN_OPS) {
    throw new RegistryProgrammingError(`registry: maxOpsPerTxn must be an integer in 2..${ETCD_MAX_TXN_OPS}`);
  }
  if (!Number.isInteger(opts.leaseTtlSeconds) || opts.leaseTtlSeconds < 2) {
    throw new RegistryProgrammingError('registry: leaseTtlSeconds must be an integer >= 2');
  }
  if (!(opts.callTimeoutMs > 0)) throw new RegistryProgrammingError('registry: callTimeoutMs must be > 0');
  return {
    recordKey: `${recordPrefix}${ownerId}`,
    space,
    maxOps,
    inflight: Math.max(1, Math.floor(opts.maxInflightTxns ?? 4)),
    pageSize: Math.max(1, Math.floor(opts.pageSize ?? 5_000)),
    retry: { ...DEFAULT_RETRY, ...opts.retry },
  };
}
