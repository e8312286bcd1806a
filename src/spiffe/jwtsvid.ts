/**
 * JWT-SVIDs (spiffe/spiffe `standards/JWT-SVID.md`), minted and verified with `jose`.
 * The header is checked before any key is looked up, so `none`/HS* never reach a key.
 */
import type { KeyObject, webcrypto } from 'node:crypto';
import { compactVerify, decodeJwt, decodeProtectedHeader, errors as joseErrors, type JWTPayload, SignJWT } from 'jose';
import { NevertrustError } from '../errors.js';
import type { BundleSource } from './bundle.js';
import { parseWorkloadSpiffeId, type SpiffeId, SpiffeIdError, type TrustDomain } from './id.js';

/** The only algorithms JWT-SVID allows (§3). */
export const JWT_SVID_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/** Default leeway for exp/nbf, in seconds. */
export const DEFAULT_JWT_LEEWAY_SECONDS = 30;
/** Default JWT-SVID lifetime (SPIRE: 5 minutes). */
export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;

export type JwtSvidErrorCode =
  | 'ERR_JWTSVID_MALFORMED'
  | 'ERR_JWTSVID_ALG_NOT_ALLOWED'
  | 'ERR_JWTSVID_BAD_TYP'
  | 'ERR_JWTSVID_KID_MISSING'
  | 'ERR_JWTSVID_SUBJECT_MISSING'
  | 'ERR_JWTSVID_SUBJECT_INVALID'
  | 'ERR_JWTSVID_NO_BUNDLE'
  | 'ERR_JWTSVID_UNKNOWN_KID'
  | 'ERR_JWTSVID_BAD_SIGNATURE'
  | 'ERR_JWTSVID_AUD_MISSING'
  | 'ERR_JWTSVID_AUD_MISMATCH'
  | 'ERR_JWTSVID_EXP_MISSING'
  | 'ERR_JWTSVID_EXPIRED'
  | 'ERR_JWTSVID_NOT_YET_VALID'
  | 'ERR_JWTSVID_BAD_NUMERIC_DATE'
  | 'ERR_JWTSVID_ISSUED_IN_FUTURE'
  | 'ERR_JWTSVID_TRUST_DOMAIN_MISMATCH'
  | 'ERR_JWTSVID_INVALID_REQUEST';

/** Thrown when a JWT-SVID is rejected (or cannot be minted); `code` names the failed rule. */
export class JwtSvidError extends NevertrustError<JwtSvidErrorCode> {
  override readonly name = 'JwtSvidError';
  constructor(
    readonly code: JwtSvidErrorCode,
    message: string,
  ) {
    // A bad mint request is the caller's bad input (400); a refused token is an authentication failure (401).
    super(message, { status: code === 'ERR_JWTSVID_INVALID_REQUEST' ? 400 : 401 });
  }
}

/** Signing key for {@link mintJwtSvid}: a Node KeyObject or a WebCrypto CryptoKey. */
export type JwtSigningKey = KeyObject | webcrypto.CryptoKey;

export interface MintJwtSvidOptions {
  spiffeId: SpiffeId | string;
  /** At least one audience. */
  audience: readonly string[] | string;
  /** Lifetime; default 300 s. */
  ttlSeconds?: number;
  key: JwtSigningKey;
  kid: string;
  /** Defaults from the key: ES256 (P-256), ES384 (P-384), ES512 (P-521), RS256 (RSA). */
  alg?: JwtSvidAlgorithm;
  /** Issue time; defaults to now. */
  now?: Date;
  /** Hard upper bound on `exp` (e.g. the signing key's own expiry). */
  notAfter?: Date;
}

/** A validated JWT-SVID. */
export interface JwtSvid {
  spiffeId: SpiffeId;
  audience: string[];
  expiresAt: Date;
  kid: string;
  claims: JWTPayload;
}

export interface ValidateJwtSvidOptions {
  /** Validation time; defaults to now. */
  now?: Date;
  /** Clock skew allowed on exp/nbf/iat, seconds (default 30). */
  leewaySeconds?: number;
  /** When set, the subject must be in this trust domain (the one the caller's bundle belongs to). */
  trustDomain?: TrustDomain;
}

/** Latest numeric date accepted (9999-12-31T23:59:59Z): a larger value is garbage, not a time. */
const MAX_NUMERIC_DATE = 253_402_300_799;

/**
 * RFC 7519 §2 NumericDate: a finite number of seconds, not negative and not absurdly far ahead.
 * Absent is `undefined`; anything else present (a string, 1e300, NaN via JSON tricks) is refused.
 */
function numericDate(claims: JWTPayload, name: 'exp' | 'nbf' | 'iat'): number | undefined {
  const v: unknown = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_NUMERIC_DATE) {
    throw new JwtSvidError(
      'ERR_JWTSVID_BAD_NUMERIC_DATE',
      `RFC 7519 §4.1: the ${name} claim must be a NumericDate (seconds since the epoch), found ${JSON.stringify(v)?.slice(0, 64)}`,
    );
  }
  return v;
}

function defaultAlg(key: JwtSigningKey): JwtSvidAlgorithm {
  if ('algorithm' in key) {
    const a = key.algorithm as { name: string; namedCurve?: string };
    if (a.name === 'ECDSA') {
      if (a.namedCurve === 'P-256') return 'ES256';
      if (a.namedCurve === 'P-384') return 'ES384';
      if (a.namedCurve === 'P-521') return 'ES512';
    }
    if (a.name === 'RSASSA-PKCS1-v1_5') return 'RS256';
    if (a.name === 'RSA-PSS') return 'PS256';
  } else {
    if (key.asymmetricKeyType === 'rsa') return 'RS256';
    if (key.asymmetricKeyType === 'rsa-pss') return 'PS256';
    if (key.asymmetricKeyType === 'ec') {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ES256';
      if (curve === 'secp384r1') return 'ES384';
      if (curve === 'secp521r1') return 'ES512';
    }
  }
  throw new JwtSvidError('ERR_JWTSVID_INVALID_REQUEST', 'JWT-SVID §3: the key type has no allowed JWT-SVID algorithm');
}

function audienceList(a: readonly string[] | string): string[] {
  const list = typeof a === 'string' ? [a] : [...a];
  if (list.length === 0 || list.some((x) => typeof x !== 'string' || x.length === 0)) {
    throw new JwtSvidError('ERR_JWTSVID_INVALID_REQUEST', 'JWT-SVID §3: at least one non-empty audience is required');
  }
  return list;
}

/**
 * Mints a JWT-SVID: header `{alg, kid, typ: 'JWT'}`, claims `sub`, `aud` (array), `exp`, `iat`.
 *
 * @example
 * ```ts
 * const token = await mintJwtSvid({
 *   spiffeId: 'spiffe://example.org/api', audience: ['payments'], key: privateKey, kid: 'k1',
 * });
 * ```
 */
export async function mintJwtSvid(opts: MintJwtSvidOptions): Promise<string> {
  const id = typeof opts.spiffeId === 'string' ? parseWorkloadSpiffeId(opts.spiffeId) : opts.spiffeId;
  if (id.isTrustDomainId) {
    throw new JwtSvidError(
      'ERR_JWTSVID_INVALID_REQUEST',
      'JWT-SVID §3: sub must be a workload SPIFFE ID (with a path)',
    );
  }
  const aud = audienceList(opts.audience);
  if (!opts.kid) throw new JwtSvidError('ERR_JWTSVID_INVALID_REQUEST', 'a kid is required to mint a JWT-SVID');
  const alg = opts.alg ?? defaultAlg(opts.key);
  if (!(JWT_SVID_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new JwtSvidError('ERR_JWTSVID_ALG_NOT_ALLOWED', `JWT-SVID §3: alg ${alg} is not allowed`);
  }
  const ttl = opts.ttlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS;
  if (!(ttl > 0)) throw new JwtSvidError('ERR_JWTSVID_INVALID_REQUEST', 'ttlSeconds must be positive');
  const nowMs = (opts.now ?? new Date()).getTime();
  let expMs = nowMs + ttl * 1000;
  if (opts.notAfter && opts.notAfter.getTime() < expMs) expMs = opts.notAfter.getTime();
  const iat = Math.floor(nowMs / 1000);
  const exp = Math.floor(expMs / 1000);
  if (exp <= iat) throw new JwtSvidError('ERR_JWTSVID_INVALID_REQUEST', 'the signing key expires before the JWT-SVID');
  return new SignJWT({ sub: id.toString(), aud, iat, exp })
    .setProtectedHeader({ alg, kid: opts.kid, typ: 'JWT' })
    .sign(opts.key);
}

/**
 * Validates a JWT-SVID against the bundle of its subject's trust domain and returns its identity.
 *
 * Rules, in order: compact JWS; `alg` in {@link JWT_SVID_ALGORITHMS} (checked before any key lookup);
 * `typ` absent or `JWT`/`JOSE`; `kid` present; `sub` a SPIFFE ID; a bundle for its trust domain;
 * `kid` known in that bundle; signature valid (jose `compactVerify` with the allow-list);
 * `aud` present, non-empty and containing one of `audience`; `exp`, `nbf`, `iat` numbers (finite,
 * within year 9999) when present; `exp` present and not past (leeway 30 s by default); `nbf` not
 * in the future; `iat` not in the future beyond the leeway. `sub` must be a workload SPIFFE ID (with
 * a path) and, with `opts.trustDomain`, in that trust domain.
 *
 * @example
 * ```ts
 * const svid = await validateJwtSvid(token, bundle, 'payments');
 * svid.spiffeId.toString(); // 'spiffe://example.org/api'
 * ```
 * @throws {JwtSvidError} with the `code` of the first failed rule
 */
export async function validateJwtSvid(
  token: string,
  bundles: BundleSource,
  audience: string | readonly string[],
  opts: ValidateJwtSvidOptions = {},
): Promise<JwtSvid> {
  const expected = audienceList(audience);
  if (typeof token !== 'string' || token.split('.').length !== 3) {
    throw new JwtSvidError('ERR_JWTSVID_MALFORMED', 'JWT-SVID §2: the token must be a compact JWS (three parts)');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new JwtSvidError('ERR_JWTSVID_MALFORMED', 'JWT-SVID §2: the protected header is not valid base64url JSON');
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(JWT_SVID_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new JwtSvidError(
      'ERR_JWTSVID_ALG_NOT_ALLOWED',
      `JWT-SVID §3: alg ${JSON.stringify(alg)} is not allowed (only RS/ES/PS 256/384/512)`,
    );
  }
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw new JwtSvidError(
      'ERR_JWTSVID_BAD_TYP',
      `JWT-SVID §2.3: typ must be absent, "JWT" or "JOSE", found ${JSON.stringify(header.typ)}`,
    );
  }
  if (typeof header.kid !== 'string' || header.kid.length === 0) {
    throw new JwtSvidError('ERR_JWTSVID_KID_MISSING', 'JWT-SVID §2: the header has no kid to select a bundle key');
  }
  try {
    unverified = decodeJwt(token);
  } catch {
    throw new JwtSvidError('ERR_JWTSVID_MALFORMED', 'JWT-SVID §2: the payload is not a JSON claims set');
  }
  if (typeof unverified.sub !== 'string') {
    throw new JwtSvidError('ERR_JWTSVID_SUBJECT_MISSING', 'JWT-SVID §3: the sub claim is required');
  }
  let id: SpiffeId;
  try {
    // JWT-SVID §3: sub is the workload's SPIFFE ID, so it has a path (a trust-domain ID names no workload).
    id = parseWorkloadSpiffeId(unverified.sub);
  } catch (e) {
    const why = e instanceof SpiffeIdError ? `${e.code}: ${e.message}` : String(e);
    throw new JwtSvidError('ERR_JWTSVID_SUBJECT_INVALID', `JWT-SVID §3: sub is not a workload SPIFFE ID (${why})`);
  }
  if (opts.trustDomain && !id.memberOf(opts.trustDomain)) {
    throw new JwtSvidError(
      'ERR_JWTSVID_TRUST_DOMAIN_MISMATCH',
      `JWT-SVID §5: the subject ${id.toString()} is not in trust domain ${opts.trustDomain.name}`,
    );
  }
  const bundle = bundles.getBundleForTrustDomain(id.trustDomain);
  if (!bundle) {
    throw new JwtSvidError(
      'ERR_JWTSVID_NO_BUNDLE',
      `JWT-SVID §5: no trust bundle for trust domain ${id.trustDomain.name}`,
    );
  }
  const key = bundle.jwtAuthority(header.kid);
  if (!key) {
    throw new JwtSvidError(
      'ERR_JWTSVID_UNKNOWN_KID',
      `JWT-SVID §5: kid ${JSON.stringify(header.kid)} is not a JWT authority of ${id.trustDomain.name}`,
    );
  }
  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(token, key, { algorithms: [...JWT_SVID_ALGORITHMS] }));
  } catch (e) {
    const detail = e instanceof joseErrors.JOSEError ? e.code : 'verification error';
    throw new JwtSvidError('ERR_JWTSVID_BAD_SIGNATURE', `JWT-SVID §5: the signature does not verify (${detail})`);
  }
  // Claims come from the verified bytes, never from the unverified decode above.
  let claims: JWTPayload;
  try {
    claims = JSON.parse(Buffer.from(payloadBytes).toString('utf8')) as JWTPayload;
  } catch {
    throw new JwtSvidError('ERR_JWTSVID_MALFORMED', 'JWT-SVID §2: the payload is not JSON');
  }
  if (claims.sub !== unverified.sub) {
    throw new JwtSvidError('ERR_JWTSVID_MALFORMED', 'the verified sub differs from the decoded one');
  }
  const aud = claims.aud === undefined ? undefined : typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!Array.isArray(aud) || aud.length === 0 || aud.some((a) => typeof a !== 'string')) {
    throw new JwtSvidError('ERR_JWTSVID_AUD_MISSING', 'JWT-SVID §3: the aud claim is required with at least one value');
  }
  if (!aud.some((a) => expected.includes(a))) {
    throw new JwtSvidError(
      'ERR_JWTSVID_AUD_MISMATCH',
      `JWT-SVID §3: aud does not contain the expected audience ${JSON.stringify(expected.length === 1 ? expected[0] : expected)}`,
    );
  }
  const exp = numericDate(claims, 'exp');
  const nbf = numericDate(claims, 'nbf');
  const iat = numericDate(claims, 'iat');
  if (exp === undefined) {
    throw new JwtSvidError('ERR_JWTSVID_EXP_MISSING', 'JWT-SVID §3: the exp claim is required');
  }
  const nowS = (opts.now ?? new Date()).getTime() / 1000;
  const leeway = opts.leewaySeconds ?? DEFAULT_JWT_LEEWAY_SECONDS;
  if (exp + leeway <= nowS) {
    throw new JwtSvidError(
      'ERR_JWTSVID_EXPIRED',
      `JWT-SVID §3: the token expired at ${new Date(exp * 1000).toISOString()}`,
    );
  }
  if (nbf !== undefined && nbf - leeway > nowS) {
    throw new JwtSvidError('ERR_JWTSVID_NOT_YET_VALID', 'RFC 7519 §4.1.5: the token is not valid yet (nbf)');
  }
  // A token "issued" later than now (beyond the skew) comes from a wrong clock or a forger planning ahead.
  if (iat !== undefined && iat - leeway > nowS) {
    throw new JwtSvidError(
      'ERR_JWTSVID_ISSUED_IN_FUTURE',
      `RFC 7519 §4.1.6: the token claims to be issued in the future (${new Date(iat * 1000).toISOString()})`,
    );
  }
  return { spiffeId: id, audience: aud as string[], expiresAt: new Date(exp * 1000), kid: header.kid, claims };
}
