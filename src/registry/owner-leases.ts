// The leases of one owner as the keeper knows them, without I/O: the current data lease, the
// earlier ones whose keys are still ours (adoptable), the old ones kept alive for a while
// after a switch (grace), and the TTLs that keepalive timing must suit.
import { isOurs, NO_LEASE } from '../ownership.ts';

/** Adoptable leases remembered; the oldest are forgotten first. */
export const MAX_ADOPTABLE = 16;

export class OwnerLeases {
  readonly #ttlSeconds: number;
  #current: string | undefined;
  /** Oldest first. */
  #adoptable = new Set<string>();
  /** Old leases kept alive until the time given, so keys can move off them. */
  readonly #grace = new Map<string, number>();
  /** Granted TTL (s) of leases adopted from elsewhere, when shorter than ours. */
  readonly #grantedTtl = new Map<string, number>();

  /** `ttlSeconds`: the TTL this owner grants its leases with. */
  constructor(ttlSeconds: number) {
    this.#ttlSeconds = ttlSeconds;
  }

  get current(): string | undefined {
    return this.#current;
  }

  /** Makes `id` the current lease; it is no longer merely adoptable. */
  switchTo(id: string): void {
    this.#current = id;
    this.#adoptable.delete(id);
  }

  /** A copy: callers may keep it. */
  adoptable(): ReadonlySet<string> {
    return new Set(this.#adoptable);
  }

  /** Newest first, as the owner record lists them. */
  adoptableNewestFirst(): string[] {
    return [...this.#adoptable].reverse();
  }

  /**
   * Leases whose keys are ours, by the one ownership rule: the current one and the adoptable
   * ones (a lease kept alive in grace after a switch is always among the adoptable ones).
   */
  owned(lease: string): boolean {
    return isOurs(lease, { leaseId: this.#current ?? NO_LEASE, adoptableLeases: this.#adoptable });
  }

  /** Remembers `ids` (oldest first) as adoptable, as the most recent ones; never the current lease. */
  addAdoptable(ids: Iterable<string>): void {
    for (const id of ids) {
      if (id === this.#current) continue;
      this.#adoptable.delete(id);
      this.#adoptable.add(id); // most recent last
    }
    while (this.#adoptable.size > MAX_ADOPTABLE) {
      const oldest = this.#adoptable.values().next().value;
      if (oldest === undefined) break;
      this.#adoptable.delete(oldest);
    }
  }

  /** Forgets every adoptable lease, then remembers `ids` (oldest first). */
  resetAdoptable(ids: Iterable<string>): void {
    this.#adoptable = new Set();
    this.addAdoptable(ids);
  }

  /** Keeps `id` alive long enough for the controller to move every key off it. */
  startGrace(id: string, now = Date.now()): void {
    this.#grace.set(id, now + Math.max(60_000, 3 * this.#ttlSeconds * 1000));
  }

  /** etcd says `id` is gone: no use keeping it alive. */
  endGrace(id: string): void {
    this.#grace.delete(id);
  }

  /** The current lease and those in grace: what a revoke of everything covers. */
  keptAlive(): string[] {
    return [this.#current, ...this.#grace.keys()].filter((x): x is string => x !== undefined);
  }

  /** The leases to renew at `now`, current first; forgets the grace periods that are over. */
  toRenew(now: number): string[] {
    for (const [id, until] of this.#grace) if (until < now) this.#grace.delete(id);
    for (const id of this.#grantedTtl.keys()) if (id !== this.#current && !this.#grace.has(id)) this.#grantedTtl.delete(id);
    return this.keptAlive();
  }

  /** `id` was granted with `grantedSeconds` (by a peer, perhaps with another TTL). */
  noteGranted(id: string, grantedSeconds: number): void {
    if (grantedSeconds > 0 && grantedSeconds < this.#ttlSeconds) this.#grantedTtl.set(id, grantedSeconds);
  }

  /** The shortest TTL among the leases kept alive: keepalive timing must suit it. */
  effectiveTtlMs(): number {
    let ttl = this.#ttlSeconds;
    for (const id of [this.#current, ...this.#grace.keys()]) {
      const g = id !== undefined ? this.#grantedTtl.get(id) : undefined;
      if (g !== undefined && g < ttl) ttl = g;
    }
    return ttl * 1000;
  }
}
