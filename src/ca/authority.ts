/**
 * The certificate authority of one trust domain: X.509 CA and JWT signing keys in
 * generations that rotate like SPIRE's (prepare at half-life and publish, activate at about
 * a sixth of the lifetime left, keep the retired one published until its last credential expired).
 * State persists through a {@link CaStateStore} with private keys sealed under the {@link Kek}.
 *
 * This file holds the CA's state and its public API; the jobs are elsewhere: `upstream.ts` (an
 * upstream CA), `generation.ts` (making a generation), `rotation.ts` (the schedule), `issuance.ts`
 * (what goes into an SVID), `persisted-state.ts` (the sealed state document).
 */
import type { KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { parseCert } from '../spiffe/cert.js';
import { toPem } from '../spiffe/pem.js';
import {
  mintJwtSvid as mintJwt,
  parseTrustDomain,
  type SpiffeId,
  TrustBundle,
  type TrustDomain,
} from '../spiffe/index.js';
import { spkiFamily, spkiOf } from './certificate.js';
import { verifyCsr, verifyCsrAsync } from './csr.js';
import { CaError } from './errors.js';
import { floorSec, type Generation, newGeneration, withSigners } from './generation.js';
import {
  activeAt,
  csrOf,
  finishLeaf,
  type IssuedX509Svid,
  type LeafRequest,
  memberId,
  type PreparedLeaf,
  prepareLeaf,
} from './issuance.js';
import type { Kek } from './kek.js';
import { buildCrl, type CrlEntry } from './crl.js';
import { DEFAULT_KEY_TYPE, generatePrivateKey, type KeyType } from './keys.js';
import { decodeState, encodeState, type StateOwner } from './persisted-state.js';
import { advanceGenerations } from './rotation.js';
import { type SigningPool, sharedSigningPool } from './signing-pool.js';
import type { CaStateStore } from './state.js';
import { loadUpstream, type Upstream, type UpstreamAuthority } from './upstream.js';

/** SPIRE defaults. */
export const DEFAULT_CA_TTL_SECONDS = 24 * 3600;
export const DEFAULT_X509_SVID_TTL_SECONDS = 3600;
export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;

export interface CertificateAuthorityOptions {
  trustDomain: TrustDomain | string;
  store: CaStateStore;
  kek: Kek;
  /** CA and JWT key type; default EC P-256. */
  keyType?: KeyType;
  /** Lifetime of each CA generation; default 24 h. */
  caTtlSeconds?: number;
  /** Default X.509-SVID lifetime; default 1 h. */
  x509SvidTtlSeconds?: number;
  /** Default JWT-SVID lifetime; default 5 min. */
  jwtSvidTtlSeconds?: number;
  /** `spiffe_refresh_hint` published in the bundle; default: a sixth of the CA TTL, at most 300 s. */
  refreshHintSeconds?: number;
  upstream?: UpstreamAuthority;
  /** Injectable clock, for tests that drive rotation. */
  clock?: () => Date;
  /**
   * Worker threads for {@link CertificateAuthority.signX509SvidFromCsrAsync}: default the
   * process-wide pool (`os.availableParallelism()` threads, started on first use); a pool of your own
   * for another size; `null` to check and sign on libuv's thread pool instead (no worker threads).
   */
  signingPool?: SigningPool | null;
}

export interface SignX509SvidRequest {
  /** PKCS#10 request, PEM or DER (aliases: `csrPem`, `csrDer`). */
  csr?: string | Buffer;
  csrPem?: string;
  csrDer?: Buffer;
  /** The identity the caller is authorized to receive; never taken from the CSR. */
  spiffeId: SpiffeId | string;
  dnsNames?: readonly string[];
  /** Requested lifetime; capped so the SVID never outlives the CA. Default 1 h. */
  ttlSeconds?: number;
}

export interface MintX509SvidRequest {
  spiffeId: SpiffeId | string;
  dnsNames?: readonly string[];
  ttlSeconds?: number;
  keyType?: KeyType;
}

/** An X.509-SVID with the key generated for it (for `x509 mint`); the caller stores the key. */
export interface MintedX509Svid extends IssuedX509Svid {
  privateKey: KeyObject;
}

export interface MintJwtSvidRequest {
  spiffeId: SpiffeId | string;
  audience: readonly string[] | string;
  /** Default 5 min; capped by the signing key's lifetime. */
  ttlSeconds?: number;
}

export interface IssuedJwtSvid {
  token: string;
  spiffeId: SpiffeId;
  expiresAt: Date;
  kid: string;
}

/** Public view of one CA generation (no key material). */
export interface AuthorityInfo {
  id: string;
  status: 'prepared' | 'active' | 'retired';
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 fingerprint of the CA certificate, hex. */
  x509Fingerprint: string;
  jwtKid: string;
  x509Published: boolean;
  jwtPublished: boolean;
}

/**
 * The CA of one trust domain.
 *
 * @example
 * ```ts
 * const { kek } = await loadOrCreateKek({ file: 'data/kek' });
 * const ca = await CertificateAuthority.open({ trustDomain: 'example.org', kek, store: new FileCaStateStore('data/ca.json') });
 * setInterval(() => ca.tick(), 10_000);
 * const svid = ca.signX509SvidFromCsr({ csr: csrPem, spiffeId: 'spiffe://example.org/api' });
 * const bundlePem = ca.bundle().toPem();
 * ```
 */
export class CertificateAuthority {
  readonly trustDomain: TrustDomain;
  readonly #store: CaStateStore;
  readonly #kek: Kek;
  readonly #keyType: KeyType;
  readonly #caTtlMs: number;
  readonly #x509TtlS: number;
  readonly #jwtTtlS: number;
  readonly #refreshHint: number;
  readonly #clock: () => Date;
  readonly #upstream: Upstream | undefined;
  #gens: Generation[] = [];
  #sequence = 0;
  #dirty = false;
  #bundle: TrustBundle | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** undefined: the shared pool, resolved on first use (a CA that never signs asynchronously starts no thread). */
  readonly #poolOption: SigningPool | null | undefined;

  private constructor(opts: CertificateAuthorityOptions) {
    this.trustDomain = typeof opts.trustDomain === 'string' ? parseTrustDomain(opts.trustDomain) : opts.trustDomain;
    this.#store = opts.store;
    this.#kek = opts.kek;
    this.#keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
    const caTtl = opts.caTtlSeconds ?? DEFAULT_CA_TTL_SECONDS;
    if (!(caTtl >= 6)) throw new CaError('ERR_CA_INVALID_TTL', 'the CA TTL must be at least 6 seconds');
    this.#caTtlMs = caTtl * 1000;
    this.#x509TtlS = opts.x509SvidTtlSeconds ?? DEFAULT_X509_SVID_TTL_SECONDS;
    this.#jwtTtlS = opts.jwtSvidTtlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS;
    this.#refreshHint = opts.refreshHintSeconds ?? Math.max(1, Math.min(300, Math.floor(caTtl / 6)));
    this.#clock = opts.clock ?? (() => new Date());
    this.#upstream = opts.upstream ? loadUpstream(opts.upstream) : undefined;
    this.#poolOption = opts.signingPool;
  }

  /**
   * Loads the CA from its store (or creates its first generation), then rotates whatever is due.
   *
   * @example
   * ```ts
   * const ca = await CertificateAuthority.open({ trustDomain: 'example.org', store: new MemoryCaStateStore(), kek });
   * ```
   * @throws {CaError} ERR_CA_STATE_MISMATCH / ERR_CA_STATE_CORRUPT; {@link KekError} when the KEK does not open the state
   */
  static async open(opts: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const ca = new CertificateAuthority(opts);
    const text = await ca.#store.load();
    if (text) ca.#restore(text);
    await ca.tick();
    return ca;
  }

  /** Current `spiffe_sequence`. */
  get sequence(): number {
    return this.#sequence;
  }

  /** Public information on each generation held. */
  authorities(): AuthorityInfo[] {
    return this.#gens.map((g) => ({
      id: g.id,
      status: g.status,
      notBefore: new Date(g.notBefore),
      notAfter: new Date(g.notAfter),
      x509Fingerprint: parseCert(g.caCert).node.fingerprint256.replaceAll(':', '').toLowerCase(),
      jwtKid: g.jwtKid,
      x509Published: g.x509Published,
      jwtPublished: g.jwtPublished,
    }));
  }

  /**
   * Advances the rotation schedule to `now`: prepares and publishes the next generation at half
   * of the active one's lifetime, activates it at a sixth left, unpublishes retired authorities
   * once everything they signed has expired; bumps `spiffe_sequence` on any bundle change and
   * persists. Calls are serialized. Returns true when the bundle changed.
   *
   * @example
   * ```ts
   * setInterval(() => void ca.tick(), 10_000).unref();
   * ```
   */
  tick(now?: Date): Promise<boolean> {
    return this.#serial(() => this.#advance((now ?? this.#clock()).getTime(), false));
  }

  /**
   * Rotates now: prepares a next generation if none is ready and activates it at once.
   *
   * @example
   * ```ts
   * await ca.rotate(); // e.g. after a suspected key compromise (old SVIDs stay valid until they expire)
   * ```
   */
  rotate(now?: Date): Promise<boolean> {
    return this.#serial(() => this.#advance((now ?? this.#clock()).getTime(), true));
  }

  /** The current trust bundle (cached between changes). */
  bundle(): TrustBundle {
    if (!this.#bundle) {
      const x509 = this.#upstream
        ? this.#upstream.roots
        : this.#gens.filter((g) => g.x509Published).map((g) => g.caCert);
      const jwt = new Map<string, KeyObject>();
      for (const g of this.#gens) if (g.jwtPublished) jwt.set(g.jwtKid, g.jwtPublic);
      this.#bundle = new TrustBundle({
        trustDomain: this.trustDomain,
        x509Authorities: x509,
        jwtAuthorities: jwt,
        sequence: this.#sequence,
        refreshHintSeconds: this.#refreshHint,
      });
    }
    return this.#bundle;
  }

  /**
   * Signs an X.509-SVID for the key in a PKCS#10 request after verifying the request's signature.
   * The SPIFFE ID, DNS names and TTL come from the caller; the CSR's own subject and SANs are ignored.
   *
   * @example
   * ```ts
   * const svid = ca.signX509SvidFromCsr({ csr: csrPem, spiffeId: 'spiffe://example.org/api', dnsNames: ['api.internal'] });
   * svid.chain[0]; // leaf DER
   * ```
   * @throws {CsrError} bad request / no proof of possession; {@link CaError} for identity, TTL or CA state problems
   */
  signX509SvidFromCsr(req: SignX509SvidRequest, now?: Date): IssuedX509Svid {
    const csr = verifyCsr(csrOf(req));
    return this.#issue(csr.spki, csr.family, req, (now ?? this.#clock()).getTime());
  }

  /**
   * Async {@link signX509SvidFromCsr}: the CSR is parsed and checked and the certificate signed on
   * the signing pool's worker threads (or on libuv's thread pool with `signingPool: null`), so
   * concurrent requests use every core. Preferred on servers. Identity, DNS names and validity are
   * decided here, on the calling thread, before the request leaves it.
   *
   * @example
   * ```ts
   * const svid = await ca.signX509SvidFromCsrAsync({ csr: csrDer, spiffeId: 'spiffe://example.org/api' });
   * ```
   * @throws {CsrError} bad request / no proof of possession; {@link CaError} for identity, TTL or CA
   *   state problems, ERR_CA_SIGNER_FAILED when a worker fails
   */
  async signX509SvidFromCsrAsync(req: SignX509SvidRequest, now?: Date): Promise<IssuedX509Svid> {
    const input = csrOf(req);
    const pool = this.#pool();
    if (!pool) {
      const csr = await verifyCsrAsync(input);
      const p = this.#prepare(req, (now ?? this.#clock()).getTime());
      const leaf = await p.g.issuer.issueAsync({ ...p.leaf, spki: csr.spki, family: csr.family });
      return finishLeaf(p, leaf.der, leaf.serialHex);
    }
    // The worker adds the key (spki, family) from the CSR after checking its signature; nothing else.
    const p = this.#prepare(req, (now ?? this.#clock()).getTime());
    const leaf = await pool.sign(p.g.poolIssuer, { csr: input, ...p.leaf });
    return finishLeaf(p, leaf.der, leaf.serialHex);
  }

  /**
   * Generates a key pair here and issues an X.509-SVID for it (for `nevertrust x509 mint`;
   * workloads should send CSRs so their key never leaves them).
   *
   * @example
   * ```ts
   * const { chain, privateKey } = ca.mintX509Svid({ spiffeId: 'spiffe://example.org/api' });
   * writeFileSync('svid.key', privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
   * ```
   */
  mintX509Svid(req: MintX509SvidRequest, now?: Date): MintedX509Svid {
    const privateKey = generatePrivateKey(req.keyType ?? 'ec-p256');
    const spki = spkiOf(privateKey);
    const family = spkiFamily(spki) === 'rsa' ? 'rsa' : 'ec';
    return { ...this.#issue(spki, family, req, (now ?? this.#clock()).getTime()), privateKey };
  }

  /**
   * Mints a JWT-SVID with the active JWT key (`kid` = that key's id); `exp` is capped by the key's lifetime.
   *
   * @example
   * ```ts
   * const { token } = await ca.mintJwtSvid({ spiffeId: 'spiffe://example.org/api', audience: ['payments'] });
   * ```
   */
  async mintJwtSvid(req: MintJwtSvidRequest, now?: Date): Promise<IssuedJwtSvid> {
    const t = (now ?? this.#clock()).getTime();
    const id = memberId(this.trustDomain, req.spiffeId);
    const g = activeAt(this.#gens, t);
    const ttl = req.ttlSeconds ?? this.#jwtTtlS;
    if (!(ttl > 0)) throw new CaError('ERR_CA_INVALID_TTL', 'the JWT-SVID TTL must be positive');
    const token = await mintJwt({
      spiffeId: id,
      audience: req.audience,
      ttlSeconds: ttl,
      key: g.jwtKey,
      kid: g.jwtKid,
      now: new Date(t),
      notAfter: new Date(g.notAfter),
    });
    const expMs = Math.min(floorSec(t + ttl * 1000), g.notAfter);
    if (expMs > g.jwtLastExpiry) {
      g.jwtLastExpiry = expMs;
      this.#dirty = true;
    }
    return { token, spiffeId: id, expiresAt: new Date(expMs), kid: g.jwtKid };
  }

  /**
   * One CRL per CA generation held (each signs only what it issued; serials are random, so listing
   * every revoked serial under each issuer names nothing it did not issue). Nothing is persisted:
   * the caller keeps the revoked serials and the CRL number.
   *
   * @example
   * ```ts
   * const crls = await ca.signCrls({ entries, crlNumber: 3n, validityMs: 3_600_000 });
   * ```
   */
  async signCrls(o: {
    entries: readonly CrlEntry[];
    crlNumber: bigint;
    validityMs: number;
    now?: Date;
  }): Promise<{ id: string; status: 'active' | 'retired'; der: Buffer }[]> {
    const t = (o.now ?? this.#clock()).getTime();
    const thisUpdate = new Date(floorSec(t));
    const nextUpdate = new Date(floorSec(t + o.validityMs));
    const out: { id: string; status: 'active' | 'retired'; der: Buffer }[] = [];
    for (const g of this.#gens) {
      if (g.status === 'prepared') continue; // has issued nothing yet
      const der = await buildCrl({
        caCert: g.caCert,
        caKey: g.caKey,
        crlNumber: o.crlNumber,
        thisUpdate,
        nextUpdate,
        entries: o.entries,
      });
      out.push({ id: g.id, status: g.status, der });
    }
    // The active issuer's first: it signs what is issued now.
    return out.sort((a, b) => (a.status === 'active' ? -1 : b.status === 'active' ? 1 : 0));
  }

  toJSON(): { trustDomain: string; sequence: number; authorities: AuthorityInfo[] } {
    return { trustDomain: this.trustDomain.name, sequence: this.#sequence, authorities: this.authorities() };
  }

  toString(): string {
    return `CertificateAuthority(${this.trustDomain.name}, sequence ${this.#sequence})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #pool(): SigningPool | null {
    return this.#poolOption === undefined ? sharedSigningPool() : this.#poolOption;
  }

  /** The leaf of an X.509-SVID request at `t`, its expiry recorded on the active generation. */
  #prepare(req: LeafRequest, t: number): PreparedLeaf {
    const p = prepareLeaf(this.trustDomain, this.#gens, req, t, this.#x509TtlS);
    if (p.extended) this.#dirty = true;
    return p;
  }

  #issue(spki: Buffer, family: 'ec' | 'rsa', req: LeafRequest, t: number): IssuedX509Svid {
    const p = this.#prepare(req, t);
    const leaf = p.g.issuer.issue({ ...p.leaf, spki, family });
    return finishLeaf(p, leaf.der, leaf.serialHex);
  }

  async #advance(t: number, force: boolean): Promise<boolean> {
    const { gens, changed } = advanceGenerations(this.#gens, t, force, {
      newGeneration: (at) =>
        newGeneration(
          { trustDomain: this.trustDomain, keyType: this.#keyType, caTtlMs: this.#caTtlMs, upstream: this.#upstream },
          at,
        ),
      // Requests already handed to the workers still finish with it (they were authorized while it
      // was active, and its retention covers them); nothing later can reach it.
      retired: (g) => this.#pool()?.forget(g.poolIssuer),
    });
    this.#gens = gens;
    if (changed) {
      this.#sequence++;
      this.#bundle = undefined;
    }
    if (changed || this.#dirty) await this.#save();
    return changed;
  }

  /** Whose state this CA persists, and its KEK. */
  #owner(): StateOwner {
    return { trustDomain: this.trustDomain.name, mode: this.#upstream ? 'upstream' : 'self-signed', kek: this.#kek };
  }

  async #save(): Promise<void> {
    this.#dirty = false;
    await this.#store.save(encodeState(this.#owner(), this.#sequence, this.#gens));
  }

  #restore(text: string): void {
    const s = decodeState(this.#owner(), text);
    this.#sequence = s.sequence;
    this.#gens = s.generations.map((g) => withSigners(g, this.#upstream));
  }
}

/**
 * PEM text of DER certificates (e.g. `svid.pem`: leaf first, then chain).
 *
 * @example
 * ```ts
 * writeFileSync('svid.pem', certificatesToPem(svid.chain));
 * ```
 */
export function certificatesToPem(ders: readonly Buffer[]): string {
  return ders.map((d) => toPem(d, 'CERTIFICATE')).join('');
}
