/**
 * SPIFFE trust bundles (spiffe/spiffe `standards/SPIFFE_Trust_Domain_and_Bundle.md`):
 * the X.509 and JWT authorities of one trust domain, with SPIFFE JWKS encode/decode.
 */
import { createPublicKey, type JsonWebKey, type KeyObject, X509Certificate } from 'node:crypto';
import { NevertrustError } from '../errors.js';
import { pemBlocks, toPem } from './pem.js';
import { parseTrustDomain, type TrustDomain } from './id.js';

export type TrustBundleErrorCode =
  | 'ERR_BUNDLE_MALFORMED'
  | 'ERR_BUNDLE_X5C_COUNT'
  | 'ERR_BUNDLE_X5C_INVALID'
  | 'ERR_BUNDLE_KID_REQUIRED'
  | 'ERR_BUNDLE_KID_DUPLICATE'
  | 'ERR_BUNDLE_JWK_INVALID'
  | 'ERR_BUNDLE_SEQUENCE'
  | 'ERR_BUNDLE_REFRESH_HINT'
  | 'ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN';

/** Thrown when a trust bundle document breaks the SPIFFE bundle format. */
export class TrustBundleError extends NevertrustError<TrustBundleErrorCode> {
  override readonly name = 'TrustBundleError';
  constructor(
    readonly code: TrustBundleErrorCode,
    message: string,
  ) {
    super(message, { status: 400 });
  }
}

/** JWK as it appears in a SPIFFE bundle. */
export interface SpiffeJwk extends JsonWebKey {
  use?: string;
  kid?: string;
  x5c?: string[];
}

/** The SPIFFE bundle JWKS document. */
export interface SpiffeJwks {
  keys: SpiffeJwk[];
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

export interface TrustBundleInit {
  trustDomain: TrustDomain;
  /** CA certificates, DER or parsed. */
  x509Authorities?: ReadonlyArray<Buffer | X509Certificate>;
  /** JWT signing public keys by `kid`. */
  jwtAuthorities?: ReadonlyMap<string, KeyObject> | Record<string, KeyObject>;
  sequence?: number;
  refreshHintSeconds?: number;
}

/** Looks up the bundle of one trust domain. Implemented by {@link TrustBundle} and {@link BundleSet}. */
export interface BundleSource {
  getBundleForTrustDomain(td: TrustDomain): TrustBundle | undefined;
}

/** Refresh hint clients assume when a bundle has none (the standard suggests about 5 minutes). */
export const DEFAULT_REFRESH_HINT_SECONDS = 300;

/**
 * The authorities of one trust domain. Immutable: build a new one for each change.
 *
 * @example
 * ```ts
 * const bundle = TrustBundle.fromJwks(parseTrustDomain('example.org'), jwksJson);
 * bundle.toPem();              // CA certificates as PEM
 * bundle.jwtAuthority('k1');   // KeyObject | undefined
 * ```
 */
export class TrustBundle implements BundleSource {
  readonly trustDomain: TrustDomain;
  /** CA certificates, DER-encoded. */
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: ReadonlyMap<string, KeyObject>;
  readonly sequence: number | undefined;
  readonly refreshHintSeconds: number | undefined;

  constructor(init: TrustBundleInit) {
    this.trustDomain = init.trustDomain;
    this.x509Authorities = Object.freeze(
      (init.x509Authorities ?? []).map((c) => (c instanceof X509Certificate ? c.raw : Buffer.from(c))),
    );
    const jwt = init.jwtAuthorities ?? new Map<string, KeyObject>();
    this.jwtAuthorities = new Map(jwt instanceof Map ? jwt : Object.entries(jwt));
    checkUint(init.sequence, 'ERR_BUNDLE_SEQUENCE', 'spiffe_sequence');
    checkUint(init.refreshHintSeconds, 'ERR_BUNDLE_REFRESH_HINT', 'spiffe_refresh_hint');
    this.sequence = init.sequence;
    this.refreshHintSeconds = init.refreshHintSeconds;
  }

  /**
   * Decodes a SPIFFE bundle JWKS (string or parsed object). Entries with an unknown `use`
   * or `kty` are ignored, as the standard requires; malformed known entries are rejected.
   *
   * @example
   * ```ts
   * const b = TrustBundle.fromJwks(parseTrustDomain('example.org'), '{"keys":[]}');
   * b.x509Authorities.length; // 0 — an empty set revokes everything
   * ```
   */
  static fromJwks(trustDomain: TrustDomain | string, doc: string | SpiffeJwks): TrustBundle {
    const td = typeof trustDomain === 'string' ? parseTrustDomain(trustDomain) : trustDomain;
    let obj: unknown = doc;
    if (typeof doc === 'string') {
      try {
        obj = JSON.parse(doc);
      } catch (e) {
        throw new TrustBundleError('ERR_BUNDLE_MALFORMED', `bundle is not valid JSON: ${(e as Error).message}`);
      }
    }
    if (typeof obj !== 'object' || obj === null || !Array.isArray((obj as SpiffeJwks).keys)) {
      throw new TrustBundleError('ERR_BUNDLE_MALFORMED', 'SPIFFE bundle §4: the document must have a "keys" array');
    }
    const jwks = obj as SpiffeJwks;
    const x509: Buffer[] = [];
    const jwt = new Map<string, KeyObject>();
    for (const [i, key] of jwks.keys.entries()) {
      if (typeof key !== 'object' || key === null) {
        throw new TrustBundleError('ERR_BUNDLE_MALFORMED', `keys[${i}] is not an object`);
      }
      if (key.kty !== 'EC' && key.kty !== 'RSA' && key.kty !== 'OKP') continue;
      if (key.use === 'x509-svid') {
        if (!Array.isArray(key.x5c) || key.x5c.length !== 1 || typeof key.x5c[0] !== 'string') {
          throw new TrustBundleError(
            'ERR_BUNDLE_X5C_COUNT',
            `keys[${i}]: an x509-svid authority must have an x5c with exactly one certificate`,
          );
        }
        const der = Buffer.from(key.x5c[0], 'base64');
        try {
          new X509Certificate(der);
        } catch {
          throw new TrustBundleError('ERR_BUNDLE_X5C_INVALID', `keys[${i}]: x5c[0] is not a valid certificate`);
        }
        x509.push(der);
      } else if (key.use === 'jwt-svid') {
        if (typeof key.kid !== 'string' || key.kid.length === 0) {
          throw new TrustBundleError('ERR_BUNDLE_KID_REQUIRED', `keys[${i}]: a jwt-svid authority must have a kid`);
        }
        if (jwt.has(key.kid)) {
          throw new TrustBundleError('ERR_BUNDLE_KID_DUPLICATE', `keys[${i}]: kid ${JSON.stringify(key.kid)} repeats`);
        }
        const { use: _u, kid: _k, x5c: _x, ...pub } = key;
        let ko: KeyObject;
        try {
          ko = createPublicKey({ key: pub, format: 'jwk' });
        } catch (e) {
          throw new TrustBundleError(
            'ERR_BUNDLE_JWK_INVALID',
            `keys[${i}]: invalid public JWK: ${(e as Error).message}`,
          );
        }
        jwt.set(key.kid, ko);
      }
    }
    const init: TrustBundleInit = { trustDomain: td, x509Authorities: x509, jwtAuthorities: jwt };
    if (jwks.spiffe_sequence !== undefined) init.sequence = jwks.spiffe_sequence;
    if (jwks.spiffe_refresh_hint !== undefined) init.refreshHintSeconds = jwks.spiffe_refresh_hint;
    return new TrustBundle(init);
  }

  /**
   * Builds an X.509-only bundle from PEM CA certificates.
   *
   * @example
   * ```ts
   * const b = TrustBundle.fromPem('example.org', readFileSync('bundle.pem', 'utf8'));
   * ```
   */
  static fromPem(trustDomain: TrustDomain | string, pem: string): TrustBundle {
    const td = typeof trustDomain === 'string' ? parseTrustDomain(trustDomain) : trustDomain;
    const ders = pemBlocks(pem, 'CERTIFICATE');
    for (const [i, d] of ders.entries()) {
      try {
        new X509Certificate(d);
      } catch {
        throw new TrustBundleError('ERR_BUNDLE_X5C_INVALID', `PEM block ${i} is not a valid certificate`);
      }
    }
    return new TrustBundle({ trustDomain: td, x509Authorities: ders });
  }

  /** Encodes the SPIFFE bundle JWKS document. */
  toJwks(): SpiffeJwks {
    const keys: SpiffeJwk[] = [];
    for (const der of this.x509Authorities) {
      const pub = new X509Certificate(der).publicKey.export({ format: 'jwk' });
      keys.push({ ...pub, use: 'x509-svid', x5c: [der.toString('base64')] });
    }
    for (const [kid, key] of this.jwtAuthorities) {
      keys.push({ ...key.export({ format: 'jwk' }), use: 'jwt-svid', kid });
    }
    const out: SpiffeJwks = { keys };
    if (this.sequence !== undefined) out.spiffe_sequence = this.sequence;
    if (this.refreshHintSeconds !== undefined) out.spiffe_refresh_hint = this.refreshHintSeconds;
    return out;
  }

  toJSON(): SpiffeJwks {
    return this.toJwks();
  }

  /** The X.509 authorities as concatenated PEM certificates. */
  toPem(): string {
    return this.x509Authorities.map((d) => toPem(d, 'CERTIFICATE')).join('');
  }

  /** The X.509 authorities as concatenated DER (the Workload API `bundle` field encoding). */
  toDer(): Buffer {
    return Buffer.concat(this.x509Authorities as Buffer[]);
  }

  jwtAuthority(kid: string): KeyObject | undefined {
    return this.jwtAuthorities.get(kid);
  }

  /** A bundle is its own source, for its own trust domain only. */
  getBundleForTrustDomain(td: TrustDomain): TrustBundle | undefined {
    return td.equals(this.trustDomain) ? this : undefined;
  }
}

function checkUint(v: number | undefined, code: TrustBundleErrorCode, field: string): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
    throw new TrustBundleError(code, `SPIFFE bundle §4: ${field} must be a non-negative integer`);
  }
}

/**
 * Bundles of several trust domains, one per domain, never merged.
 *
 * @example
 * ```ts
 * const source = bundleSet(ourBundle, partnerBundle);
 * source.getBundleForTrustDomain(parseTrustDomain('partner.example'));
 * ```
 */
export class BundleSet implements BundleSource {
  private readonly byDomain = new Map<string, TrustBundle>();

  constructor(bundles: Iterable<TrustBundle> = []) {
    for (const b of bundles) {
      if (this.byDomain.has(b.trustDomain.name)) {
        throw new TrustBundleError(
          'ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN',
          `two bundles for trust domain ${b.trustDomain.name}: bundles of one domain are replaced, never merged`,
        );
      }
      this.byDomain.set(b.trustDomain.name, b);
    }
  }

  /** Replaces the bundle of `bundle.trustDomain`. */
  set(bundle: TrustBundle): void {
    this.byDomain.set(bundle.trustDomain.name, bundle);
  }

  delete(td: TrustDomain): boolean {
    return this.byDomain.delete(td.name);
  }

  getBundleForTrustDomain(td: TrustDomain): TrustBundle | undefined {
    return this.byDomain.get(td.name);
  }

  bundles(): TrustBundle[] {
    return [...this.byDomain.values()];
  }
}

/** Shorthand for `new BundleSet(bundles)`; see {@link BundleSet}. */
export function bundleSet(...bundles: TrustBundle[]): BundleSet {
  return new BundleSet(bundles);
}
