/**
 * Receiving a Security Event Token (RFC 8417) from an SSF 1.0 transmitter, as the CAEP
 * interoperability profile asks: the size is capped before parsing, the alg must be one of
 * {@link SET_ALGORITHMS} before any key is consulted (so `none` and HS*-with-the-public-key never
 * reach one), the signature is checked against the transmitter's JWKS before any claim, then
 * `typ: secevent+jwt`, `iss` and `aud` exactly, `iat` inside a window, `exp`/`nbf` when present,
 * `events`, the subject, and `jti` once only. jose does the JWS and claim checks; this module adds
 * what RFC 8417 asks beyond a JWT and names each refusal ({@link SsfError}).
 *
 * Subjects: SSF 1.0 puts the subject in the top-level `sub_id`; CAEP drafts before 1.0 put it in
 * each event's `subject` member. Both are accepted (interoperating with older transmitters), with the
 * same formats — `email`, `iss_sub`, `opaque` — and when both are present they must be equal, so a
 * SET cannot say one subject to one reader and another to the next. Every other format (`complex`,
 * `phone_number`, `account`, `did`, `uri`, `aliases`, unknown) is refused: we could not say which
 * session, person or device it names, and guessing on a revocation path is not an option.
 *
 * @example
 * ```ts
 * const set = await verifySet(body, {
 *   issuer: 'https://idp.example', audience: 'https://nevertrust.example/ssf',
 *   jwks: createRemoteJWKSet(new URL('https://idp.example/jwks')),
 *   maxAgeSeconds: 300, seen: createMemorySeenSet(),
 * });
 * for (const e of set.events) console.log(e.type, e.subject);
 * ```
 */
import { errors as joseErrors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { SsfError } from './errors.js';

/** The `typ` header of a SET (RFC 8417 §2.3). */
export const SET_TYP = 'secevent+jwt';
/** Algorithms a SET may be signed with: asymmetric only (never `none`, never HS*). */
export const SET_ALGORITHMS = ['RS256', 'ES256', 'PS256'] as const;
/** Largest SET accepted, in bytes (a SET is a few hundred bytes; this bounds parsing work). */
export const SET_MAX_BYTES = 64 * 1024;
/** Default clock skew on `iat` in the future, `exp` and `nbf`, in seconds. */
export const DEFAULT_SET_SKEW_SECONDS = 30;

/** What an `email` subject must look like (one `@`, no spaces): checked on receipt and on sending. */
export const SUBJECT_EMAIL_PATTERN = /^[^\s@]+@[^\s@]+$/;

/** A subject identifier (RFC 9493) in one of the accepted formats. */
export type SubjectId =
  | { format: 'email'; email: string }
  | { format: 'iss_sub'; iss: string; sub: string }
  | { format: 'opaque'; id: string };

/**
 * Where seen `jti` values are kept until the SET they came in would be refused anyway. A `jti` is
 * unique per issuer (RFC 8417 §2.2), so one set serves one transmitter.
 */
export interface SeenJtis {
  has(jti: string): boolean | Promise<boolean>;
  /**
   * Records a `jti` until `until`. An atomic store may return (or resolve to) `false` when the value
   * was already there (a concurrent replay); that refuses the SET like `has` would.
   */
  add(jti: string, until: Date): unknown;
}

export interface VerifySetOptions {
  /** The transmitter's issuer; `iss` must equal it. */
  issuer: string;
  /** Our receiver's audience; `aud` must be it (or an array containing it). */
  audience: string;
  /** The transmitter's keys: a jose key-set function (`createRemoteJWKSet`, `createLocalJWKSet`). */
  jwks: JWTVerifyGetKey;
  /** How old `iat` may be, in seconds. */
  maxAgeSeconds: number;
  /** Replay protection; `jti` is recorded only once every other check has passed. */
  seen: SeenJtis;
  /** Clock skew for `iat` in the future, `exp` and `nbf` (default 30 s). */
  clockSkewSeconds?: number;
  /** Verification time; default now. */
  now?: Date;
}

/** One event of a verified SET. */
export interface SetEvent {
  /** The event-type URI, e.g. `https://schemas.openid.net/secevent/caep/event-type/session-revoked`. */
  type: string;
  /** The subject, from `sub_id` or the event's legacy `subject`. */
  subject: SubjectId;
  /** The event's payload (its `subject` member included, as sent). */
  payload: Record<string, unknown>;
}

/** A SET that passed every check. */
export interface VerifiedSet {
  issuer: string;
  jti: string;
  issuedAt: Date;
  /** Key id that verified it. */
  kid: string | undefined;
  alg: string;
  /** `txn` (RFC 8417 §2.2), when sent. */
  txn: string | undefined;
  events: SetEvent[];
  claims: JWTPayload;
}

function fail(code: ConstructorParameters<typeof SsfError>[0], message: string): never {
  throw new SsfError(code, message);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses a subject identifier in an accepted format, or says why not. */
export function parseSubjectId(value: unknown, where: string): SubjectId {
  if (!isObject(value)) return fail('ERR_SSF_SUBJECT_FORMAT', `${where}: a subject identifier must be an object`);
  const str = (k: string): string => {
    const v = value[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > 1024) {
      return fail('ERR_SSF_SUBJECT_FORMAT', `${where}: format ${String(value.format)} needs a non-empty string ${k}`);
    }
    return v;
  };
  switch (value.format) {
    case 'email': {
      const email = str('email');
      if (!SUBJECT_EMAIL_PATTERN.test(email))
        return fail('ERR_SSF_SUBJECT_FORMAT', `${where}: email is not an address`);
      return { format: 'email', email };
    }
    case 'iss_sub':
      return { format: 'iss_sub', iss: str('iss'), sub: str('sub') };
    case 'opaque':
      return { format: 'opaque', id: str('id') };
    default:
      return fail(
        'ERR_SSF_SUBJECT_FORMAT',
        `${where}: subject format ${JSON.stringify(value.format)} is not accepted (email, iss_sub, opaque)`,
      );
  }
}

function sameSubject(a: SubjectId, b: SubjectId): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Maps jose's refusal to ours. */
function mapJoseError(e: unknown): SsfError {
  if (e instanceof SsfError) return e;
  const E = joseErrors;
  if (e instanceof E.JWSSignatureVerificationFailed)
    return new SsfError('ERR_SSF_BAD_SIGNATURE', 'the signature does not verify');
  if (e instanceof E.JWKSNoMatchingKey || e instanceof E.JWKSMultipleMatchingKeys)
    return new SsfError('ERR_SSF_UNKNOWN_KEY', 'no single key of the transmitter matches the header');
  if (e instanceof E.JOSEAlgNotAllowed)
    return new SsfError('ERR_SSF_ALG_NOT_ALLOWED', `alg must be one of ${SET_ALGORITHMS.join(', ')}`);
  if (e instanceof E.JWTExpired) return new SsfError('ERR_SSF_EXPIRED', 'the SET expired (exp)');
  if (e instanceof E.JWTClaimValidationFailed) {
    const missing = e.reason === 'missing';
    switch (e.claim) {
      case 'typ':
        return new SsfError('ERR_SSF_BAD_TYP', `typ must be ${SET_TYP}`);
      case 'iss':
        return new SsfError('ERR_SSF_BAD_ISSUER', 'iss is not the configured transmitter');
      case 'aud':
        return new SsfError('ERR_SSF_BAD_AUDIENCE', 'aud is not this receiver');
      case 'iat':
        return new SsfError(missing ? 'ERR_SSF_IAT_MISSING' : 'ERR_SSF_MALFORMED', `iat: ${e.message}`);
      case 'jti':
        return new SsfError(missing ? 'ERR_SSF_JTI_MISSING' : 'ERR_SSF_MALFORMED', `jti: ${e.message}`);
      case 'events':
        return new SsfError('ERR_SSF_EVENTS_INVALID', 'the events claim is required');
      case 'nbf':
        return new SsfError('ERR_SSF_NOT_YET_VALID', 'the SET is not valid yet (nbf)');
      default:
        return new SsfError('ERR_SSF_MALFORMED', `claim ${e.claim}: ${e.reason}`);
    }
  }
  if (e instanceof E.JWTInvalid || e instanceof E.JWSInvalid)
    return new SsfError('ERR_SSF_MALFORMED', 'the token is not a valid JWS/JWT');
  if (e instanceof E.JOSENotSupported || e instanceof E.JWKInvalid)
    return new SsfError('ERR_SSF_UNKNOWN_KEY', 'the published key is not usable for this alg');
  // JWKS fetch failures (timeout, network, non-200, malformed set): the keys are unknown right now.
  const detail = e instanceof E.JOSEError ? e.code : e instanceof Error ? e.message : 'unknown error';
  return new SsfError('ERR_SSF_KEYS_UNAVAILABLE', `the transmitter's keys are unavailable (${detail})`, { cause: e });
}

/** Checks `events` (RFC 8417 §2.2): an object with at least one event-type URI, each an object. */
function parseEvents(claims: JWTPayload): Array<[string, Record<string, unknown>]> {
  const events = claims.events;
  if (!isObject(events)) return fail('ERR_SSF_EVENTS_INVALID', 'events must be an object of event-type URIs');
  const list = Object.entries(events);
  if (list.length === 0) return fail('ERR_SSF_EVENTS_INVALID', 'events must name at least one event type');
  for (const [type, payload] of list) {
    if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$/.test(type) || !URL.canParse(type)) {
      fail('ERR_SSF_EVENTS_INVALID', `events: ${JSON.stringify(type.slice(0, 200))} is not an event-type URI`);
    }
    if (!isObject(payload)) fail('ERR_SSF_EVENTS_INVALID', `events: the payload of ${type} must be an object`);
  }
  return list as Array<[string, Record<string, unknown>]>;
}

/**
 * Verifies a SET and records its `jti`. Throws {@link SsfError} naming the first check that failed;
 * a refused SET changes nothing (its `jti` is not recorded).
 */
export async function verifySet(jwt: unknown, options: VerifySetOptions): Promise<VerifiedSet> {
  if (typeof jwt !== 'string') return fail('ERR_SSF_MALFORMED', 'a SET is a compact JWS string');
  if (Buffer.byteLength(jwt, 'utf8') > SET_MAX_BYTES) {
    return fail('ERR_SSF_TOO_LARGE', `the SET is larger than ${SET_MAX_BYTES} bytes`);
  }
  if (!Number.isFinite(options.maxAgeSeconds) || options.maxAgeSeconds <= 0) {
    throw new TypeError('verifySet: maxAgeSeconds must be a positive number');
  }
  const skew = options.clockSkewSeconds ?? DEFAULT_SET_SKEW_SECONDS;
  const now = options.now ?? new Date();
  let verified: Awaited<ReturnType<typeof jwtVerify>>;
  try {
    verified = await jwtVerify(jwt.trim(), options.jwks, {
      typ: SET_TYP,
      algorithms: [...SET_ALGORITHMS],
      issuer: options.issuer,
      audience: options.audience,
      requiredClaims: ['iat', 'jti', 'events'],
      clockTolerance: skew,
      currentDate: now,
    });
  } catch (e) {
    throw mapJoseError(e);
  }
  const { payload: claims, protectedHeader } = verified;
  // jose checks `iss` against a list; RFC 8417 wants one exact issuer — checked again so an array
  // option can never widen it.
  if (claims.iss !== options.issuer) fail('ERR_SSF_BAD_ISSUER', 'iss is not the configured transmitter');

  const iat = claims.iat as number;
  const nowSec = now.getTime() / 1000;
  if (iat < nowSec - options.maxAgeSeconds) {
    fail('ERR_SSF_IAT_STALE', `iat is older than ${options.maxAgeSeconds} s`);
  }
  if (iat > nowSec + skew) fail('ERR_SSF_IAT_FUTURE', 'iat is in the future');
  const jti = claims.jti;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) {
    fail('ERR_SSF_JTI_MISSING', 'jti must be a non-empty string (at most 256 characters)');
  }

  const topSubject = claims.sub_id === undefined ? undefined : parseSubjectId(claims.sub_id, 'sub_id');
  const events: SetEvent[] = parseEvents(claims).map(([type, payload]) => {
    const legacy = payload.subject === undefined ? undefined : parseSubjectId(payload.subject, `${type}: subject`);
    if (topSubject && legacy && !sameSubject(topSubject, legacy)) {
      fail('ERR_SSF_SUBJECT_CONFLICT', `${type}: the event's subject differs from sub_id`);
    }
    const subject = topSubject ?? legacy;
    if (!subject) return fail('ERR_SSF_SUBJECT_MISSING', `${type}: no sub_id and no subject in the event`);
    return { type, subject, payload };
  });

  // Last: the jti is spent only by a SET that passed everything else, so a forgery cannot burn one.
  if (await options.seen.has(jti)) fail('ERR_SSF_REPLAYED', 'this jti was already received');
  // Kept until the SET would be refused as stale anyway.
  const until = new Date((iat + options.maxAgeSeconds + skew) * 1000);
  if ((await options.seen.add(jti, until)) === false) fail('ERR_SSF_REPLAYED', 'this jti was already received');

  return {
    issuer: claims.iss,
    jti,
    issuedAt: new Date(iat * 1000),
    kid: protectedHeader.kid,
    alg: protectedHeader.alg,
    txn: typeof claims.txn === 'string' ? claims.txn : undefined,
    events,
    claims,
  };
}

/** Options of {@link createMemorySeenSet}. */
export interface MemorySeenSetOptions {
  /** Most live `jti`s kept; beyond it new SETs are refused (503) rather than forgetting one. Default 100 000. */
  maxEntries?: number;
  /** Clock; default `Date.now`. */
  now?: () => number;
}

/**
 * An in-process {@link SeenJtis}: entries expire at their `until`. For one receiver process; a
 * cluster of receivers needs the store's (next session).
 */
export function createMemorySeenSet(options: MemorySeenSetOptions = {}): SeenJtis & { readonly size: number } {
  const max = options.maxEntries ?? 100_000;
  const clock = options.now ?? Date.now;
  const entries = new Map<string, number>();
  const prune = (): void => {
    const t = clock();
    for (const [k, until] of entries) if (until <= t) entries.delete(k);
  };
  return {
    get size() {
      return entries.size;
    },
    has(jti) {
      const until = entries.get(jti);
      return until !== undefined && until > clock();
    },
    add(jti, until) {
      const existing = entries.get(jti);
      if (existing !== undefined && existing > clock()) return false;
      if (entries.size >= max) prune();
      if (entries.size >= max) fail('ERR_SSF_REPLAY_CACHE_FULL', 'too many SETs received recently');
      entries.set(jti, until.getTime());
      return true;
    },
  };
}
