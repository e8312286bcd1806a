/**
 * A token bucket per key (an address, a SPIFFE ID): `capacity` at once, refilled at `perSecond`.
 * Used where a caller could otherwise guess (join tokens) or flood the store (assertion keys).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly capacity: number,
    private readonly perSecond: number,
  ) {}

  /** Takes `n` tokens (default one) for `key`; false, taking none, when its bucket holds fewer. */
  take(key: string, n = 1): boolean {
    const now = Date.now() / 1000;
    const b = this.buckets.get(key) ?? { tokens: this.capacity, at: now };
    b.tokens = Math.min(this.capacity, b.tokens + (now - b.at) * this.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    // Bounded memory under a spray of keys: forgetting buckets only ever gives callers a fresh burst.
    if (this.buckets.size > 10_000) this.buckets.clear();
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }
}
