/**
 * Verifying identity assertions, for the app behind a sidecar (and for tests). The header is checked
 * before any key is looked up, so `alg: none`, HS256-with-the-public-key and foreign token types
 * never reach a key; the issuer is checked before the key set is consulted, and the key set is the
 * issuer's own (`?issuer=` on the server, the owner member in a local JWKS), so a key registered by
 * another workload cannot vouch for this sidecar.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { parseSpiffeId, SpiffeIdError } from '../../spiffe/index.js';
import {
  ASSERTION_ALG,
  ASSERTION_IDENTITY_KINDS,
  ASSERTION_JWKS_PATH,
  ASSERTION_TYP,
  type AssertionIdentityKind,
  IdentityAssertionError,
  type IdentityAssertionErrorCode,
  JWK_OWNER_MEMBER,
  PERSON_ASSERTION_TYP,
} from './wire.js';

/** Default clock skew allowed on `exp`, `nbf` and `iat`, in seconds (tokens live about a minute). */
export const DEFAULT_ASSERTION_LEEWAY_SECONDS = 5;

/**
 * Where verification keys come from: a JWKS object (keys whose `spiffe_id` member names another
 * workload are ignored), or a jose key-set function such as {@link assertionKeySet} or
 * `createRemoteJWKSet` on the `?issuer=`-filtered JWKS URL.
 */
export type AssertionKeys = JSONWebKeySet | JWTVerifyGetKey;

/** Options of {@link verifyIdentityAssertion}. */
export interface VerifyIdentityAssertionOptions {
  /** The SPIFFE ID of the sidecar in front of this app (the token's `iss`). */
  issuer: string;
  /** Accepted `aud` values; default: the issuer (the sidecar asserts to its own service). */
  audience?: string | readonly string[];
  /** Clock skew in seconds (default 5). */
  clockToleranceSeconds?: number;
  /** Verification time; default now. */
  now?: Date;
}

/** A verified assertion: who called the service, as the sidecar established it. */
export interface VerifiedIdentityAssertion {
  /** The sidecar that vouched (`iss`). */
  issuer: string;
  /** The caller (`sub`): a SPIFFE ID, or a user for `user-jwt`. */
  subject: string;
  /** How the sidecar established the caller. */
  identity: AssertionIdentityKind;
  /** The caller's SPIFFE ID (every kind but `user-jwt`). */
  spiffeId?: string;
  /** The user (`user-jwt` only). */
  user?: string;
  kid: string;
  issuedAt: Date;
  expiresAt: Date;
  claims: JWTPayload;
}

function fail(code: IdentityAssertionErrorCode, message: string): never {
  throw new IdentityAssertionError(code, message);
}

function audienceList(issuer: string, audience: VerifyIdentityAssertionOptions['audience']): string[] {
  if (audience === undefined) return [issuer];
  const list = typeof audience === 'string' ? [audience] : [...audience];
  if (list.length === 0 || list.some((a) => typeof a !== 'string' || a.length === 0)) {
    fail('ERR_ASSERTION_INVALID_REQUEST', 'audience: at least one non-empty value is required');
  }
  return list;
}

/** A key-set function over the issuer's keys only. */
function keySetFor(keys: AssertionKeys, issuer: string): JWTVerifyGetKey {
  if (typeof keys === 'function') return keys;
  if (!keys || typeof keys !== 'object' || !Array.isArray(keys.keys)) {
    return fail('ERR_ASSERTION_INVALID_REQUEST', 'keys must be a JWKS ({keys: […]}) or a jose key-set function');
  }
  const own = keys.keys.filter((k) => {
    const owner = (k as Record<string, unknown>)[JWK_OWNER_MEMBER];
    return owner === undefined || owner === issuer;
  });
  return createLocalJWKSet({ keys: own });
}

/** Maps jose's failure to our one-code-per-reason error. */
function mapJoseError(e: unknown, kid: string, typ: string): IdentityAssertionError {
  if (e instanceof IdentityAssertionError) return e;
  const E = joseErrors;
  if (e instanceof E.JWSSignatureVerificationFailed)
    return new IdentityAssertionError('ERR_ASSERTION_BAD_SIGNATURE', 'the signature does not verify');
  if (e instanceof E.JWKSNoMatchingKey)
    return new IdentityAssertionError(
      'ERR_ASSERTION_UNKNOWN_KID',
      `kid ${JSON.stringify(kid)} is not a published key of the issuer`,
    );
  if (e instanceof E.JWKSMultipleMatchingKeys)
    return new IdentityAssertionError('ERR_ASSERTION_AMBIGUOUS_KID', `kid ${JSON.stringify(kid)} names several keys`);
  if (e instanceof E.JWTExpired) return new IdentityAssertionError('ERR_ASSERTION_EXPIRED', 'the assertion expired');
  if (e instanceof E.JWTClaimValidationFailed) {
    switch (e.claim) {
      case 'iss':
        return new IdentityAssertionError('ERR_ASSERTION_ISSUER_MISMATCH', 'iss is not the expected sidecar');
      case 'aud':
        return new IdentityAssertionError('ERR_ASSERTION_AUD_MISMATCH', 'aud does not contain the expected audience');
      case 'exp':
        return new IdentityAssertionError('ERR_ASSERTION_EXP_MISSING', 'the exp claim is required');
      case 'nbf':
        return new IdentityAssertionError('ERR_ASSERTION_NOT_YET_VALID', 'the assertion is not valid yet (nbf)');
      case 'sub':
        return new IdentityAssertionError('ERR_ASSERTION_SUBJECT_INVALID', 'the sub claim is required');
      case 'typ':
        return new IdentityAssertionError('ERR_ASSERTION_BAD_TYP', `typ must be ${typ}`);
      default:
        return new IdentityAssertionError('ERR_ASSERTION_MALFORMED', `claim ${e.claim}: ${e.reason}`);
    }
  }
  if (e instanceof E.JOSEAlgNotAllowed)
    return new IdentityAssertionError('ERR_ASSERTION_ALG_NOT_ALLOWED', `only ${ASSERTION_ALG} is allowed`);
  if (e instanceof E.JWTInvalid || e instanceof E.JWSInvalid)
    return new IdentityAssertionError('ERR_ASSERTION_MALFORMED', 'the token is not a valid JWS/JWT');
  if (e instanceof E.JOSENotSupported || e instanceof E.JWKInvalid)
    return new IdentityAssertionError('ERR_ASSERTION_UNKNOWN_KID', 'the published key is not usable for ES256');
  // JWKS fetch failures (timeout, network, non-200, malformed set): the keys are unknown right now.
  const detail = e instanceof E.JOSEError ? e.code : e instanceof Error ? e.message : 'unknown error';
  return new IdentityAssertionError('ERR_ASSERTION_KEYS_UNAVAILABLE', `the issuer's keys are unavailable (${detail})`);
}

/**
 * The checks every assertion kind shares, in order: compact JWS; `alg` ES256; `typ` exactly the
 * given one; `kid`; `iss` (before any key lookup); the issuer's key; signature; `aud`; `exp`/`iat`/`sub`.
 */
async function verifySigned(
  token: string,
  keys: AssertionKeys,
  opts: VerifyIdentityAssertionOptions,
  typ: string,
): Promise<{ claims: JWTPayload; kid: string }> {
  if (typeof opts?.issuer !== 'string' || opts.issuer.length === 0) {
    fail('ERR_ASSERTION_INVALID_REQUEST', 'issuer (the sidecar SPIFFE ID) is required');
  }
  const audience = audienceList(opts.issuer, opts.audience);
  if (typeof token !== 'string' || token.split('.').length !== 3) {
    fail('ERR_ASSERTION_MALFORMED', 'the assertion must be a compact JWS (three parts)');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return fail('ERR_ASSERTION_MALFORMED', 'the protected header is not valid base64url JSON');
  }
  if (header.alg !== ASSERTION_ALG) {
    fail('ERR_ASSERTION_ALG_NOT_ALLOWED', `alg ${JSON.stringify(header.alg)} is not allowed (only ${ASSERTION_ALG})`);
  }
  if (header.typ !== typ) {
    fail('ERR_ASSERTION_BAD_TYP', `typ must be ${JSON.stringify(typ)}, found ${JSON.stringify(header.typ)}`);
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || kid.length === 0) fail('ERR_ASSERTION_KID_MISSING', 'the header has no kid');
  let unverified: JWTPayload;
  try {
    unverified = decodeJwt(token);
  } catch {
    return fail('ERR_ASSERTION_MALFORMED', 'the payload is not a JSON claims set');
  }
  // Before any key lookup: a token naming another issuer never makes us fetch or try keys.
  if (unverified.iss !== opts.issuer) {
    fail('ERR_ASSERTION_ISSUER_MISMATCH', `iss is not the expected sidecar ${opts.issuer}`);
  }
  const getKey = keySetFor(keys, opts.issuer);
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, getKey, {
      algorithms: [ASSERTION_ALG],
      typ,
      issuer: opts.issuer,
      audience,
      requiredClaims: ['exp', 'iat', 'sub'],
      clockTolerance: opts.clockToleranceSeconds ?? DEFAULT_ASSERTION_LEEWAY_SECONDS,
      currentDate: opts.now,
    }));
  } catch (e) {
    throw mapJoseError(e, kid as string, typ);
  }
  return { claims, kid: kid as string };
}

/**
 * Verifies an identity assertion made by the sidecar in front of this app and returns the caller.
 *
 * Rules, in order: compact JWS; `alg` exactly ES256; `typ` exactly `nevertrust-assertion+jwt`;
 * `kid` present; `iss` the expected sidecar (checked before any key lookup); a key of that issuer
 * with this kid; signature; `aud` contains the audience (default: the issuer); `exp` present and
 * not past, `nbf` not future (5 s leeway); `sub` present (a SPIFFE ID unless `user-jwt`);
 * `nevertrust.identity` one of x509, xfcc, jwt-svid, user-jwt.
 *
 * @example
 * ```ts
 * import { ASSERTION_HEADER, assertionKeySet, verifyIdentityAssertion } from 'nevertrust/assertion';
 * const sidecar = 'spiffe://example.org/ns/payments/sa/payment-service';
 * const keys = assertionKeySet('http://127.0.0.1:8181', sidecar); // once, at start
 * const caller = await verifyIdentityAssertion(String(req.headers[ASSERTION_HEADER]), keys, { issuer: sidecar });
 * caller.spiffeId; // 'spiffe://example.org/ns/payments/sa/api-gateway'
 * ```
 * @throws {IdentityAssertionError} with the `code` of the first failed rule
 */
export async function verifyIdentityAssertion(
  token: string,
  keys: AssertionKeys,
  opts: VerifyIdentityAssertionOptions,
): Promise<VerifiedIdentityAssertion> {
  const { claims, kid } = await verifySigned(token, keys, opts, ASSERTION_TYP);
  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.length === 0) return fail('ERR_ASSERTION_SUBJECT_INVALID', 'sub is empty');
  const nt = claims.nevertrust as { identity?: unknown } | undefined;
  const identity = nt?.identity;
  if (typeof identity !== 'string' || !(ASSERTION_IDENTITY_KINDS as readonly string[]).includes(identity)) {
    return fail('ERR_ASSERTION_IDENTITY_INVALID', `nevertrust.identity must be one of ${ASSERTION_IDENTITY_KINDS}`);
  }
  const kind = identity as AssertionIdentityKind;
  if (kind !== 'user-jwt') {
    try {
      parseSpiffeId(sub);
    } catch (e) {
      const why = e instanceof SpiffeIdError ? e.code : 'invalid';
      fail('ERR_ASSERTION_SUBJECT_INVALID', `sub is not a SPIFFE ID (${why}) for identity ${kind}`);
    }
  }
  return {
    issuer: opts.issuer,
    subject: sub,
    identity: kind,
    ...(kind === 'user-jwt' ? { user: sub } : { spiffeId: sub }),
    kid,
    issuedAt: new Date((claims.iat as number) * 1000),
    expiresAt: new Date((claims.exp as number) * 1000),
    claims,
  };
}

/** Options of {@link verifyPersonAssertion}: `issuer` is the access proxy's SPIFFE ID. */
export interface VerifyPersonAssertionOptions extends Omit<VerifyIdentityAssertionOptions, 'audience'> {
  /** The route's audience, `https://<host><path_prefix>` (docs/people.md); required. */
  audience: string | readonly string[];
}

/** A verified person assertion: who the access proxy let through, and which decision did. */
export interface VerifiedPersonAssertion {
  /** The access proxy that vouched (`iss`). */
  issuer: string;
  /** The person's `sub` at their provider. */
  subject: string;
  email?: string;
  groups: string[];
  amr: string[];
  authTime?: number;
  /** The session's public id (absent for bearer callers). */
  sessionId?: string;
  /** The provider's issuer. */
  idp?: string;
  /** The person's name at the proxy (`user`: what its policy and audit call them). */
  user?: string;
  /** Seconds since the epoch of the person's last second factor (`mfa_at`), when known. */
  mfaAt?: number;
  /** The verified device the request came with (`device`). */
  device?: string;
  decisionId: string;
  kid: string;
  issuedAt: Date;
  expiresAt: Date;
  claims: JWTPayload;
}

const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * Verifies the access proxy's `X-Nevertrust-Jwt-Assertion` for the app behind it: the rules of
 * {@link verifyIdentityAssertion} with `typ` `nevertrust-person+jwt` (a workload assertion is
 * refused, and the workload verifier refuses this one) and the route's audience; `groups`, `amr`
 * lists of strings and `decision_id` present.
 *
 * @example
 * ```ts
 * const proxy = 'spiffe://example.org/ns/edge/sa/access-proxy';
 * const keys = assertionKeySet('https://nevertrust.internal:8181', proxy); // once, at start
 * const who = await verifyPersonAssertion(String(req.headers[PERSON_ASSERTION_HEADER]), keys, {
 *   issuer: proxy,
 *   audience: 'https://wiki.example.com',
 * });
 * who.email; // 'alice@example.com'
 * ```
 * @throws {IdentityAssertionError} with the `code` of the first failed rule
 */
export async function verifyPersonAssertion(
  token: string,
  keys: AssertionKeys,
  opts: VerifyPersonAssertionOptions,
): Promise<VerifiedPersonAssertion> {
  if (opts?.audience === undefined) fail('ERR_ASSERTION_INVALID_REQUEST', "audience (the route's) is required");
  const { claims, kid } = await verifySigned(token, keys, opts, PERSON_ASSERTION_TYP);
  const { sub, email, groups, amr, auth_time, sid, idp, decision_id, user, mfa_at, device } = claims as Record<
    string,
    unknown
  >;
  if (typeof sub !== 'string' || sub.length === 0) return fail('ERR_ASSERTION_SUBJECT_INVALID', 'sub is empty');
  if (!strings(groups) || !strings(amr) || typeof decision_id !== 'string')
    return fail('ERR_ASSERTION_IDENTITY_INVALID', 'groups and amr must be lists of strings, decision_id a string');
  return {
    issuer: opts.issuer,
    subject: sub,
    ...(typeof email === 'string' ? { email } : {}),
    groups,
    amr,
    ...(typeof auth_time === 'number' ? { authTime: auth_time } : {}),
    ...(typeof sid === 'string' ? { sessionId: sid } : {}),
    ...(typeof idp === 'string' ? { idp } : {}),
    ...(typeof user === 'string' ? { user } : {}),
    ...(typeof mfa_at === 'number' && Number.isFinite(mfa_at) ? { mfaAt: mfa_at } : {}),
    ...(typeof device === 'string' ? { device } : {}),
    decisionId: decision_id,
    kid,
    issuedAt: new Date((claims.iat as number) * 1000),
    expiresAt: new Date((claims.exp as number) * 1000),
    claims,
  };
}

/** Options of {@link assertionKeySet}. */
export interface AssertionKeySetOptions {
  /** How long fetched keys are used before re-fetching, ms (default 60 000: the server's max-age). */
  cacheMaxAgeMs?: number;
  /** Minimum time between fetches on an unknown kid, ms (default 30 000). */
  cooldownMs?: number;
  /** Fetch timeout, ms (default 5 000). */
  timeoutMs?: number;
}

/**
 * The issuer's published keys from the server's JWKS (`GET /v1/assertion-keys/jwks.json?issuer=…`),
 * fetched and cached by jose; an unknown kid (a rotation) triggers a re-fetch. Make it once and reuse.
 *
 * @example
 * ```ts
 * const keys = assertionKeySet('http://127.0.0.1:8181', 'spiffe://example.org/ns/payments/sa/payment-service');
 * ```
 * @throws {IdentityAssertionError} `ERR_ASSERTION_INVALID_REQUEST` for an invalid issuer or URL
 */
export function assertionKeySet(
  serverUrl: string | URL,
  issuer: string,
  opts: AssertionKeySetOptions = {},
): JWTVerifyGetKey {
  try {
    parseSpiffeId(issuer);
  } catch (e) {
    fail('ERR_ASSERTION_INVALID_REQUEST', `issuer is not a SPIFFE ID (${(e as Error).message})`);
  }
  let url: URL;
  try {
    url = new URL(ASSERTION_JWKS_PATH, serverUrl);
  } catch {
    return fail('ERR_ASSERTION_INVALID_REQUEST', 'serverUrl is not a URL');
  }
  url.searchParams.set('issuer', issuer);
  return createRemoteJWKSet(url, {
    cacheMaxAge: opts.cacheMaxAgeMs ?? 60_000,
    cooldownDuration: opts.cooldownMs ?? 30_000,
    timeoutDuration: opts.timeoutMs ?? 5_000,
  });
}
