/**
 * The certificate authority of one trust domain: X.509 CA and JWT signing keys in
 * generations that rotate like SPIRE's (prepare at half-life and publish, activate at about
 * a sixth of the lifetime left, keep the retired one published until its last credential expired).
 * State persists through a {@link CaStateStore} with private keys sealed under the {@link Kek}.
 */
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { inspect } from 'node:util';
import { parseCert } from '../spiffe/cert.js';
import { pemBlocks, toPem } from '../spiffe/pem.js';
import {
  mintJwtSvid as mintJwt,
  parseSpiffeId,
  parseTrustDomain,
  type SpiffeId,
  TrustBundle,
  type TrustDomain,
} from '../spiffe/index.js';
import {
  buildCaCertificate,
  encodeName,
  keyIdentifier,
  LeafIssuer,
  type LeafParams,
  spkiFamily,
  spkiOf,
} from './certificate.js';
import { verifyCsr, verifyCsrAsync } from './csr.js';
import { CaError } from './errors.js';
import type { Kek, SealedKey } from './kek.js';
import { DEFAULT_KEY_TYPE, exportPkcs8, generatePrivateKey, type KeyType } from './keys.js';
import { type PoolIssuer, poolIssuer, type SigningPool, sharedSigningPool } from './signing-pool.js';
import type { CaStateStore } from './state.js';

/** SPIRE defaults. */
export const DEFAULT_CA_TTL_SECONDS = 24 * 3600;
export const DEFAULT_X509_SVID_TTL_SECONDS = 3600;
export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;
/** Backdating of notBefore against clock skew (SPIRE: 10 s). */
export const NOT_BEFORE_CUSHION_SECONDS = 10;

/** An upstream CA that signs our intermediate: PEM text (use {@link loadUpstreamAuthority} for files). */
export interface UpstreamAuthority {
  /** The upstream signing certificate first, then any further chain certificates. */
  certificatePem: string;
  /** Its private key, PKCS#8 or traditional PEM. Kept in memory only, never in the CA state. */
  privateKeyPem: string;
  /** Root certificates to publish in the bundle; default: the last certificate of `certificatePem`. */
  bundlePem?: string;
}

/**
 * Reads an upstream CA from certificate and key PEM files.
 *
 * @example
 * ```ts
 * const upstream = await loadUpstreamAuthority('/etc/pki/root.pem', '/etc/pki/root.key');
 * const ca = await CertificateAuthority.open({ trustDomain: 'example.org', store, kek, upstream });
 * ```
 */
export async function loadUpstreamAuthority(
  certificateFile: string,
  privateKeyFile: string,
  bundleFile?: string,
): Promise<UpstreamAuthority> {
  const u: UpstreamAuthority = {
    certificatePem: await readFile(certificateFile, 'utf8'),
    privateKeyPem: await readFile(privateKeyFile, 'utf8'),
  };
  if (bundleFile) u.bundlePem = await readFile(bundleFile, 'utf8');
  return u;
}

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

/** An issued X.509-SVID. */
export interface IssuedX509Svid {
  spiffeId: SpiffeId;
  /** DER certificates, leaf first, then intermediates up to (not including) the bundle root. */
  chain: Buffer[];
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
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

interface Generation {
  id: string;
  status: 'prepared' | 'active' | 'retired';
  notBefore: number;
  notAfter: number;
  caCert: Buffer;
  caKey: KeyObject;
  issuer: LeafIssuer;
  /** The same generation for the signing pool's workers. */
  poolIssuer: PoolIssuer;
  /** Certificates after the leaf in issued chains. */
  chainTail: Buffer[];
  jwtKid: string;
  jwtKey: KeyObject;
  jwtPublic: KeyObject;
  /** Latest notAfter of anything this generation signed (ms since epoch). */
  x509LastExpiry: number;
  jwtLastExpiry: number;
  x509Published: boolean;
  jwtPublished: boolean;
}

interface PersistedGeneration {
  id: string;
  status: Generation['status'];
  notBefore: string;
  notAfter: string;
  caCert: string;
  caKey: SealedKey;
  jwtKid: string;
  jwtKey: SealedKey;
  x509LastExpiry: number;
  jwtLastExpiry: number;
  x509Published: boolean;
  jwtPublished: boolean;
}

interface PersistedState {
  version: 1;
  trustDomain: string;
  mode: 'self-signed' | 'upstream';
  sequence: number;
  generations: PersistedGeneration[];
}

const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
const floorSec = (ms: number) => Math.floor(ms / 1000) * 1000;

interface Upstream {
  cert: Buffer;
  key: KeyObject;
  subject: Buffer;
  keyId: Buffer;
  notAfter: number;
  roots: Buffer[];
  extraChain: Buffer[];
}

function loadUpstream(u: UpstreamAuthority): Upstream {
  const certs = pemBlocks(u.certificatePem, 'CERTIFICATE');
  const first = certs[0];
  if (!first) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate file holds no certificate');
  let parsed: ReturnType<typeof parseCert>;
  let key: KeyObject;
  try {
    parsed = parseCert(first);
    key = createPrivateKey(u.privateKeyPem);
  } catch {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate or key cannot be parsed');
  }
  if (!parsed.basicConstraints?.ca || parsed.keyUsage === undefined || !(parsed.keyUsage & 0x0400)) {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream certificate must have cA=true and keyCertSign');
  }
  if (!spkiOf(key).equals(spkiOf(parsed.node.publicKey))) {
    throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream private key does not match its certificate');
  }
  const roots = u.bundlePem ? pemBlocks(u.bundlePem, 'CERTIFICATE') : [certs[certs.length - 1] as Buffer];
  if (roots.length === 0) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream bundle holds no certificate');
  return {
    cert: first,
    key,
    subject: parsed.subject,
    keyId: parsed.subjectKeyId ?? keyIdentifier(spkiOf(parsed.node.publicKey)),
    notAfter: parsed.notAfter.getTime(),
    roots,
    extraChain: certs.filter((c) => !roots.some((r) => r.equals(c))),
  };
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
    const input = req.csr ?? req.csrPem ?? req.csrDer;
    if (input === undefined) throw new CaError('ERR_CA_INVALID_REQUEST', 'a CSR (csr, csrPem or csrDer) is required');
    const csr = verifyCsr(input);
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
    const input = req.csr ?? req.csrPem ?? req.csrDer;
    if (input === undefined) throw new CaError('ERR_CA_INVALID_REQUEST', 'a CSR (csr, csrPem or csrDer) is required');
    const pool = this.#pool();
    if (!pool) {
      const csr = await verifyCsrAsync(input);
      const { g, leaf: params, result } = this.#prepare(req, (now ?? this.#clock()).getTime());
      const leaf = await g.issuer.issueAsync({ ...params, spki: csr.spki, family: csr.family });
      return this.#finish(g, leaf.der, leaf.serialHex, result);
    }
    // The worker adds the key (spki, family) from the CSR after checking its signature; nothing else.
    const { g, leaf: params, result } = this.#prepare(req, (now ?? this.#clock()).getTime());
    const leaf = await pool.sign(g.poolIssuer, { csr: input, ...params });
    return this.#finish(g, leaf.der, leaf.serialHex, result);
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
    const id = this.#memberId(req.spiffeId);
    const g = this.#activeAt(t);
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

  toJSON(): { trustDomain: string; sequence: number; authorities: AuthorityInfo[] } {
    return { trustDomain: this.trustDomain.name, sequence: this.#sequence, authorities: this.authorities() };
  }

  toString(): string {
    return `CertificateAuthority(${this.trustDomain.name}, sequence ${this.#sequence})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  // ------------------------------------------------------------------ internals

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #memberId(input: SpiffeId | string): SpiffeId {
    const id = typeof input === 'string' ? parseSpiffeId(input) : input;
    if (!id.memberOf(this.trustDomain)) {
      throw new CaError(
        'ERR_CA_TRUST_DOMAIN_MISMATCH',
        `${id.toString()} is not in trust domain ${this.trustDomain.name}: this CA signs only its own domain`,
      );
    }
    if (id.isTrustDomainId) {
      throw new CaError('ERR_CA_INVALID_REQUEST', 'an SVID needs a workload SPIFFE ID (with a path)');
    }
    return id;
  }

  #activeAt(t: number): Generation {
    const g = this.#gens.find((x) => x.status === 'active');
    if (!g) throw new CaError('ERR_CA_NO_ACTIVE_AUTHORITY', 'the CA has no active authority (call open/tick)');
    if (t >= g.notAfter) {
      throw new CaError('ERR_CA_AUTHORITY_EXPIRED', 'the active CA has expired: tick() was not called in time');
    }
    return g;
  }

  #pool(): SigningPool | null {
    return this.#poolOption === undefined ? sharedSigningPool() : this.#poolOption;
  }

  #issue(
    spki: Buffer,
    family: 'ec' | 'rsa',
    req: { spiffeId: SpiffeId | string; dnsNames?: readonly string[]; ttlSeconds?: number },
    t: number,
  ): IssuedX509Svid {
    const { g, leaf: params, result } = this.#prepare(req, t);
    const leaf = g.issuer.issue({ ...params, spki, family });
    return this.#finish(g, leaf.der, leaf.serialHex, result);
  }

  /** Everything about the leaf except its key: identity, DNS names and validity, from the caller and the CA. */
  #prepare(
    req: { spiffeId: SpiffeId | string; dnsNames?: readonly string[]; ttlSeconds?: number },
    t: number,
  ): {
    g: Generation;
    leaf: Omit<LeafParams, 'spki' | 'family'>;
    result: Omit<IssuedX509Svid, 'chain' | 'serialHex'>;
  } {
    const id = this.#memberId(req.spiffeId);
    const dnsNames = req.dnsNames ?? [];
    for (const d of dnsNames) {
      if (typeof d !== 'string' || d.length > 253 || !DNS_NAME.test(d)) {
        throw new CaError('ERR_CA_INVALID_DNS_NAME', `${JSON.stringify(d)} is not a valid DNS name`);
      }
    }
    const ttl = req.ttlSeconds ?? this.#x509TtlS;
    if (!(ttl > 0)) throw new CaError('ERR_CA_INVALID_TTL', 'the X.509-SVID TTL must be positive');
    const g = this.#activeAt(t);
    const notBefore = Math.max(floorSec(t - NOT_BEFORE_CUSHION_SECONDS * 1000), g.notBefore);
    // Capped: an SVID never outlives the CA that signs it.
    const notAfter = Math.min(floorSec(t + ttl * 1000), g.notAfter);
    if (notAfter <= t)
      throw new CaError('ERR_CA_AUTHORITY_EXPIRED', 'the active CA expires before the SVID could start');
    // Recorded before signing, so retention covers the SVID even if the process stops right after.
    if (notAfter > g.x509LastExpiry) {
      g.x509LastExpiry = notAfter;
      this.#dirty = true;
    }
    const nb = new Date(notBefore);
    const na = new Date(notAfter);
    return {
      g,
      leaf: { spiffeId: id.toString(), dnsNames, notBefore: nb, notAfter: na },
      result: { spiffeId: id, notBefore: nb, notAfter: na },
    };
  }

  #finish(
    g: Generation,
    der: Buffer,
    serialHex: string,
    result: Omit<IssuedX509Svid, 'chain' | 'serialHex'>,
  ): IssuedX509Svid {
    return { ...result, chain: g.chainTail.length === 0 ? [der] : [der, ...g.chainTail], serialHex };
  }

  #newGeneration(t: number): Generation {
    const id = `gen-${randomBytes(8).toString('hex')}`;
    const notBefore = floorSec(t - NOT_BEFORE_CUSHION_SECONDS * 1000);
    let notAfter = floorSec(t + this.#caTtlMs);
    const up = this.#upstream;
    if (up && notAfter > up.notAfter) notAfter = up.notAfter;
    if (notAfter <= t) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream CA certificate has expired');
    const caKey = generatePrivateKey(this.#keyType);
    const subject = encodeName([
      ['C', 'US'],
      ['O', 'nevertrust'],
      ['CN', `${this.trustDomain.name} CA`],
      ['serialNumber', id.slice(4)],
    ]);
    const caCert = buildCaCertificate({
      subjectKey: caKey,
      subject,
      issuer: up ? up.subject : subject,
      ...(up ? { issuerKeyId: up.keyId } : {}),
      signingKey: up ? up.key : caKey,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      trustDomainId: this.trustDomain.idString(),
    });
    const jwtKey = generatePrivateKey(this.#keyType);
    return this.#generation({
      id,
      status: 'prepared',
      notBefore,
      notAfter,
      caCert,
      caKey,
      jwtKid: randomBytes(16).toString('base64url'),
      jwtKey,
      x509LastExpiry: 0,
      jwtLastExpiry: 0,
      x509Published: true,
      jwtPublished: true,
    });
  }

  #generation(g: Omit<Generation, 'issuer' | 'poolIssuer' | 'chainTail' | 'jwtPublic'>): Generation {
    const chainTail = this.#upstream ? [g.caCert, ...this.#upstream.extraChain] : [];
    return {
      ...g,
      issuer: new LeafIssuer(g.caCert, g.caKey),
      poolIssuer: poolIssuer(g.caCert, g.caKey),
      chainTail,
      jwtPublic: createPublicKey(g.jwtKey),
    };
  }

  async #advance(t: number, force: boolean): Promise<boolean> {
    let changed = false;
    let active = this.#gens.find((g) => g.status === 'active');
    let prepared = this.#gens.find((g) => g.status === 'prepared');
    // After a long downtime the prepared generation may itself be due for replacement: never activate it.
    if (prepared && t >= prepared.notAfter - (prepared.notAfter - prepared.notBefore) / 6) {
      prepared.status = 'retired';
      prepared = undefined;
      changed = true;
    }
    if (active && !prepared) {
      const half = active.notBefore + (active.notAfter - active.notBefore) / 2;
      if (t >= half || force) {
        prepared = this.#newGeneration(t);
        this.#gens.push(prepared);
        changed = true;
      }
    }
    const activateAt = active ? active.notAfter - (active.notAfter - active.notBefore) / 6 : 0;
    if (!active || t >= activateAt || force) {
      if (!prepared) {
        prepared = this.#newGeneration(t);
        this.#gens.push(prepared);
      }
      if (active) {
        active.status = 'retired';
        // Requests already handed to the workers still finish with it (they were authorized while it
        // was active, and its retention covers them); nothing later can reach it.
        this.#pool()?.forget(active.poolIssuer);
      }
      prepared.status = 'active';
      active = prepared;
      changed = true;
    }
    for (const g of this.#gens) {
      if (g.status !== 'retired') continue;
      // Unpublished only once the last credential it signed has expired.
      if (g.x509Published && t >= g.x509LastExpiry) {
        g.x509Published = false;
        changed = true;
      }
      if (g.jwtPublished && t >= g.jwtLastExpiry) {
        g.jwtPublished = false;
        changed = true;
      }
    }
    this.#gens = this.#gens.filter((g) => g.x509Published || g.jwtPublished || g.status !== 'retired');
    if (changed) {
      this.#sequence++;
      this.#bundle = undefined;
    }
    if (changed || this.#dirty) await this.#save();
    return changed;
  }

  #aad(g: { id: string }, what: 'x509' | 'jwt'): string {
    return `nevertrust-ca/${this.trustDomain.name}/${g.id}/${what}`;
  }

  async #save(): Promise<void> {
    this.#dirty = false;
    const state: PersistedState = {
      version: 1,
      trustDomain: this.trustDomain.name,
      mode: this.#upstream ? 'upstream' : 'self-signed',
      sequence: this.#sequence,
      generations: this.#gens.map((g) => ({
        id: g.id,
        status: g.status,
        notBefore: new Date(g.notBefore).toISOString(),
        notAfter: new Date(g.notAfter).toISOString(),
        caCert: g.caCert.toString('base64'),
        caKey: this.#kek.seal(exportPkcs8(g.caKey), this.#aad(g, 'x509')),
        jwtKid: g.jwtKid,
        jwtKey: this.#kek.seal(exportPkcs8(g.jwtKey), this.#aad(g, 'jwt')),
        x509LastExpiry: g.x509LastExpiry,
        jwtLastExpiry: g.jwtLastExpiry,
        x509Published: g.x509Published,
        jwtPublished: g.jwtPublished,
      })),
    };
    await this.#store.save(JSON.stringify(state, null, 2));
  }

  #restore(text: string): void {
    let s: PersistedState;
    try {
      s = JSON.parse(text) as PersistedState;
    } catch {
      throw new CaError('ERR_CA_STATE_CORRUPT', 'the CA state is not valid JSON');
    }
    if (s?.version !== 1 || !Array.isArray(s.generations) || typeof s.sequence !== 'number') {
      throw new CaError('ERR_CA_STATE_CORRUPT', 'the CA state has an unknown format');
    }
    if (s.trustDomain !== this.trustDomain.name) {
      throw new CaError(
        'ERR_CA_STATE_MISMATCH',
        `the CA state belongs to trust domain ${s.trustDomain}, not ${this.trustDomain.name}`,
      );
    }
    const mode = this.#upstream ? 'upstream' : 'self-signed';
    if (s.mode !== mode) {
      throw new CaError(
        'ERR_CA_STATE_MISMATCH',
        `the CA state was made in ${s.mode} mode but the CA is configured for ${mode}`,
      );
    }
    this.#sequence = s.sequence;
    this.#gens = s.generations.map((p) => {
      const caKey = createPrivateKey({
        key: this.#kek.open(p.caKey, this.#aad(p, 'x509')),
        format: 'der',
        type: 'pkcs8',
      });
      const jwtKey = createPrivateKey({
        key: this.#kek.open(p.jwtKey, this.#aad(p, 'jwt')),
        format: 'der',
        type: 'pkcs8',
      });
      const caCert = Buffer.from(p.caCert, 'base64');
      if (!spkiOf(caKey).equals(spkiOf(parseCert(caCert).node.publicKey))) {
        throw new CaError('ERR_CA_STATE_CORRUPT', `generation ${p.id}: the CA key does not match its certificate`);
      }
      const notAfter = Date.parse(p.notAfter);
      // The active generation may have signed more after the last save: assume the worst (its own expiry).
      const conservative = (v: number) => (p.status === 'active' ? Math.max(v, notAfter) : v);
      return this.#generation({
        id: p.id,
        status: p.status,
        notBefore: Date.parse(p.notBefore),
        notAfter,
        caCert,
        caKey,
        jwtKid: p.jwtKid,
        jwtKey,
        x509LastExpiry: conservative(p.x509LastExpiry),
        jwtLastExpiry: conservative(p.jwtLastExpiry),
        x509Published: p.x509Published,
        jwtPublished: p.jwtPublished,
      });
    });
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
