// What the lease keeper is told (its options and mode) and what it reports (its hooks and their
// events): the types the registry and the pure transaction building share with lease.ts.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { RetryPolicy } from './retry.ts';

export interface LeaseChangedEvent {
  readonly previous: string;
  readonly current: string;
  /** 'expired' (etcd reported it gone), 'replaced-by-peer', 'ttl-changed'. */
  readonly reason: string;
}

export interface LeaseLostEvent {
  readonly lease: string;
  readonly reason: string;
}

export interface LeaseKeeperHooks {
  keepalive(at: number): void;
  leaseChanged(ev: LeaseChangedEvent): void;
  leaseLost(ev: LeaseLostEvent): void;
  etcdError(op: string, error: unknown): void;
}

/**
 * owner: adopt or grant, keep alive, replace when lost (the controller).
 * adopt-only: adopt the recorded lease if it is alive and keep it alive, never grant one
 *   (a one-off `reconcile --once` must not leave a lease behind that nobody keeps alive).
 * read-only: learn the recorded lease id, no keepalive, no writes (list, dry runs).
 */
export type LeaseMode = 'owner' | 'adopt-only' | 'read-only';

export interface LeaseKeeperOptions {
  readonly mode: LeaseMode;
  readonly client: Etcd3;
  readonly ownerId: string;
  readonly recordKey: string;
  readonly ttlSeconds: number;
  readonly retry: RetryPolicy;
  readonly logger: Logger;
  readonly hooks: LeaseKeeperHooks;
  /** How often the owner record is re-read while running; default max(10 s, 2×TTL). */
  readonly recordCheckMs?: number | undefined;
}
