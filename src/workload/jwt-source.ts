/**
 * JwtSource: JWT-SVIDs for audiences, cached per (SPIFFE ID, audiences) and refreshed once half of a
 * token's lifetime has passed, so callers always get a token with plenty of life left.
 */
import type { TrustBundle } from '../spiffe/index.js';
import {
  type JwtSvidToken,
  type ValidatedJwtSvid,
  WorkloadApiClient,
  WorkloadApiError,
  type WorkloadClientOptions,
} from './client.js';

export interface JwtSourceOptions extends WorkloadClientOptions {
  /** Refresh when this fraction of the lifetime has passed; default 0.5. */
  refreshAt?: number;
}

/**
 * @example
 * ```ts
 * const jwt = new JwtSource();
 * const token = await jwt.fetchToken(['payments']);
 * await fetch(url, { headers: { authorization: `Bearer ${token}` } });
 * jwt.close();
 * ```
 */
export class JwtSource {
  private readonly client: WorkloadApiClient;
  private readonly refreshAt: number;
  private readonly cache = new Map<string, JwtSvidToken>();
  private readonly inflight = new Map<string, Promise<JwtSvidToken>>();
  private closed = false;
  /** FetchJWTSVID calls made (cache misses and refreshes). */
  fetches = 0;

  constructor(opts: JwtSourceOptions = {}) {
    this.client = new WorkloadApiClient(opts);
    this.refreshAt = opts.refreshAt ?? 0.5;
  }

  /** Same as the constructor, for symmetry with {@link X509Source.create}. */
  static async create(opts: JwtSourceOptions = {}): Promise<JwtSource> {
    return new JwtSource(opts);
  }

  /**
   * A JWT-SVID (compact JWS) for `audience`, from the cache while fresh.
   *
   * @throws {WorkloadApiError} e.g. grpcCode 7 (`ERR_WORKLOAD_API_PERMISSION_DENIED`) when the workload has no identity
   */
  async fetchToken(audience: readonly string[] | string, opts: { spiffeId?: string } = {}): Promise<string> {
    return (await this.fetchSvid(audience, opts)).token;
  }

  /** Like {@link fetchToken}, with the SPIFFE ID, hint and expiry. */
  async fetchSvid(audience: readonly string[] | string, opts: { spiffeId?: string } = {}): Promise<JwtSvidToken> {
    if (this.closed) throw new WorkloadApiError(1, 'the JwtSource is closed');
    const aud = [...new Set(typeof audience === 'string' ? [audience] : audience)].sort();
    const key = `${opts.spiffeId ?? ''}\u0000${aud.join('\u0000')}`;
    const hit = this.cache.get(key);
    if (hit && this.fresh(hit)) return hit;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = (async () => {
      this.fetches++;
      const svids = await this.client.fetchJwtSvid(aud, opts.spiffeId);
      const first = svids[0];
      if (!first) throw new WorkloadApiError(7, 'the Workload API returned no JWT-SVID');
      this.cache.set(key, first);
      return first;
    })();
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }

  private fresh(t: JwtSvidToken): boolean {
    const start = t.issuedAt.getTime();
    const end = t.expiresAt.getTime();
    return Date.now() < start + (end - start) * this.refreshAt;
  }

  /** Validates a JWT-SVID through the Workload API (ValidateJWTSVID). */
  validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid> {
    return this.client.validateJwtSvid(token, audience);
  }

  /** The JWT bundles (JWKS) by trust domain name. */
  jwtBundles(): Promise<Map<string, TrustBundle>> {
    return this.client.fetchJwtBundles();
  }

  close(): void {
    this.closed = true;
    this.cache.clear();
    this.client.close();
  }
}
