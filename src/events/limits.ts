// What keeps Events from flooding the API server (docs/decisions/0021): a dedupe window over
// recent events, and token buckets, one global and one per pod. The per-key maps are bounded
// LRUs, so 10,000 pods cannot grow them without limit.

/** Forgets the least recently used entries (first in Map order) beyond `max`. */
function trimOldest(map: Map<string, unknown>, max: number): void {
  while (map.size > max) {
    const oldest = map.keys().next().value;
    if (oldest === undefined) break;
    map.delete(oldest);
  }
}

/** Recently accepted events by key, each kept for `windowMs`; at most `maxKeys` of them. */
export class DedupeWindow {
  readonly #windowMs: number;
  readonly #maxKeys: number;
  /** key -> expiry (epoch ms); Map order = LRU order. */
  readonly #seen = new Map<string, number>();

  constructor(windowMs: number, maxKeys: number) {
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  /** True when `key` was remembered less than the window ago; an expired key is forgotten. */
  isDuplicate(key: string, now: number): boolean {
    const expiry = this.#seen.get(key);
    if (expiry === undefined) return false;
    if (expiry > now) return true;
    this.#seen.delete(key);
    return false;
  }

  /** Remembers a key that is not remembered (isDuplicate was false). */
  remember(key: string, now: number): void {
    this.#seen.set(key, now + this.#windowMs);
    trimOldest(this.#seen, this.#maxKeys);
  }

  /** Forgets a key, so that the same event is accepted again (not sent after all). */
  forget(key: string): void {
    this.#seen.delete(key);
  }
}

/** A token bucket: at most `capacity` tokens, one more every `msPerToken` ms. */
export class TokenBucket {
  readonly #capacity: number;
  readonly #msPerToken: number;
  #tokens: number;
  #last: number;

  /** A full bucket at `now`. */
  constructor(capacity: number, msPerToken: number, now: number) {
    this.#capacity = capacity;
    this.#msPerToken = msPerToken;
    this.#tokens = capacity;
    this.#last = now;
  }

  /** Takes a token if there is one, after refilling for the time since the last take. */
  take(now: number): boolean {
    if (now > this.#last) {
      this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#last) / this.#msPerToken);
      this.#last = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** How long until the next token, after a take() that found none (at least 1 ms). */
  msUntilToken(): number {
    return Math.max(1, Math.ceil((1 - this.#tokens) * this.#msPerToken));
  }
}

/** A token bucket per key (a pod's uid); beyond `maxKeys` the least recently used are forgotten. */
export class KeyedTokenBuckets {
  readonly #capacity: number;
  readonly #msPerToken: number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(capacity: number, msPerToken: number, maxKeys: number) {
    this.#capacity = capacity;
    this.#msPerToken = msPerToken;
    this.#maxKeys = maxKeys;
  }

  /** Takes a token from the key's bucket (a new key starts full). */
  take(key: string, now: number): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) bucket = new TokenBucket(this.#capacity, this.#msPerToken, now);
    else this.#buckets.delete(key); // re-inserted below: most recently used last
    this.#buckets.set(key, bucket);
    trimOldest(this.#buckets, this.#maxKeys);
    return bucket.take(now);
  }
}
