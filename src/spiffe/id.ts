/**
 * SPIFFE IDs and trust domains, following spiffe/spiffe `standards/SPIFFE-ID.md`.
 * Every rejection names the rule it breaks, with a stable `code`. This is the product's one
 * SPIFFE-ID parser: the policy engine's hot path uses its cached non-throwing form.
 */
import { NevertrustError } from '../errors.js';

/** Stable codes for every SPIFFE-ID rule; one per rule so callers and tests can tell them apart. */
export type SpiffeIdErrorCode =
  | 'ERR_SPIFFEID_EMPTY'
  | 'ERR_SPIFFEID_TOO_LONG'
  | 'ERR_SPIFFEID_WRONG_SCHEME'
  | 'ERR_SPIFFEID_MISSING_TRUST_DOMAIN'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_UPPERCASE'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_CHAR'
  | 'ERR_SPIFFEID_PORT'
  | 'ERR_SPIFFEID_USERINFO'
  | 'ERR_SPIFFEID_PERCENT_ENCODING'
  | 'ERR_SPIFFEID_QUERY'
  | 'ERR_SPIFFEID_FRAGMENT'
  | 'ERR_SPIFFEID_EMPTY_SEGMENT'
  | 'ERR_SPIFFEID_DOT_SEGMENT'
  | 'ERR_SPIFFEID_TRAILING_SLASH'
  | 'ERR_SPIFFEID_PATH_CHAR'
  | 'ERR_SPIFFEID_PATH_REQUIRED';

/**
 * Thrown when a SPIFFE ID or trust domain breaks a rule of the SPIFFE-ID standard.
 * `code` identifies the rule; the message quotes it.
 */
export class SpiffeIdError extends NevertrustError<SpiffeIdErrorCode> {
  override readonly name = 'SpiffeIdError';
  constructor(
    readonly code: SpiffeIdErrorCode,
    message: string,
  ) {
    // A SPIFFE ID always comes from outside (request, file, certificate): a bad one is the caller's fault.
    super(message, { status: 400 });
  }
}

/** Maximum length of a whole SPIFFE ID, in bytes (SPIFFE-ID §2.4: implementations must accept up to 2048). */
export const MAX_SPIFFE_ID_BYTES = 2048;
/** Maximum length of a trust domain name, in bytes (SPIFFE-ID §2.1). */
export const MAX_TRUST_DOMAIN_BYTES = 255;

const SCHEME = 'spiffe://';
// Construction capability: only this module can build IDs, so every instance has been validated.
const VALIDATED: unique symbol = Symbol('validated');

/** A SPIFFE trust domain, e.g. `example.org`. Create with {@link parseTrustDomain}. */
export class TrustDomain {
  private constructor(readonly name: string) {}

  /** @internal only id.ts holds the capability, so no unvalidated instance can exist */
  static fromValidated(key: typeof VALIDATED, name: string): TrustDomain {
    if (key !== VALIDATED) throw new TypeError('use parseTrustDomain()');
    return new TrustDomain(name);
  }

  /** The trust domain's own SPIFFE ID, `spiffe://<name>` (no path). */
  idString(): string {
    return SCHEME + this.name;
  }

  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }
}

/** A parsed SPIFFE ID. `path` is `''` for a trust-domain ID, else starts with `/`. */
export class SpiffeId {
  private constructor(
    readonly trustDomain: TrustDomain,
    readonly path: string,
  ) {}

  /** @internal only id.ts holds the capability, so no unvalidated instance can exist */
  static fromValidated(key: typeof VALIDATED, td: TrustDomain, path: string): SpiffeId {
    if (key !== VALIDATED) throw new TypeError('use parseSpiffeId()');
    return new SpiffeId(td, path);
  }

  /** Path segments, e.g. `['ns', 'prod', 'sa', 'api']`. */
  get segments(): string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }

  /** True when the ID names a trust domain rather than a workload (no path). */
  get isTrustDomainId(): boolean {
    return this.path === '';
  }

  memberOf(td: TrustDomain): boolean {
    return this.trustDomain.equals(td);
  }

  equals(other: SpiffeId): boolean {
    return this.trustDomain.equals(other.trustDomain) && this.path === other.path;
  }

  toString(): string {
    return SCHEME + this.trustDomain.name + this.path;
  }

  toJSON(): string {
    return this.toString();
  }
}

function isTdChar(c: number): boolean {
  // a-z 0-9 . - _
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  // a-z A-Z 0-9 . - _
  return isTdChar(c) || (c >= 0x41 && c <= 0x5a);
}

function checkTrustDomain(name: string): void {
  if (name.length === 0) {
    throw new SpiffeIdError('ERR_SPIFFEID_MISSING_TRUST_DOMAIN', 'SPIFFE-ID §2.1: the trust domain must not be empty');
  }
  if (Buffer.byteLength(name, 'utf8') > MAX_TRUST_DOMAIN_BYTES) {
    throw new SpiffeIdError(
      'ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG',
      `SPIFFE-ID §2.1: the trust domain must be at most ${MAX_TRUST_DOMAIN_BYTES} bytes`,
    );
  }
  // userinfo first: in "user:pw@host" the ':' is not a port
  if (name.includes('@')) {
    throw new SpiffeIdError('ERR_SPIFFEID_USERINFO', 'SPIFFE-ID §2.1: the trust domain must not contain userinfo (@)');
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (isTdChar(c)) continue;
    if (c === 0x40) {
      throw new SpiffeIdError(
        'ERR_SPIFFEID_USERINFO',
        'SPIFFE-ID §2.1: the trust domain must not contain userinfo (@)',
      );
    }
    if (c === 0x3a) {
      throw new SpiffeIdError('ERR_SPIFFEID_PORT', 'SPIFFE-ID §2.1: the trust domain must not contain a port');
    }
    if (c === 0x25) {
      throw new SpiffeIdError(
        'ERR_SPIFFEID_PERCENT_ENCODING',
        'SPIFFE-ID §2.1: the trust domain must not be percent-encoded',
      );
    }
    if (c >= 0x41 && c <= 0x5a) {
      throw new SpiffeIdError(
        'ERR_SPIFFEID_TRUST_DOMAIN_UPPERCASE',
        'SPIFFE-ID §2.1: the trust domain must be lowercase',
      );
    }
    throw new SpiffeIdError(
      'ERR_SPIFFEID_TRUST_DOMAIN_CHAR',
      `SPIFFE-ID §2.1: the trust domain may contain only a-z 0-9 . - _ (found ${JSON.stringify(name[i])})`,
    );
  }
}

function checkPath(path: string): void {
  // path is '' or starts with '/'
  if (path === '') return;
  if (path.endsWith('/')) {
    if (path === '/' || path.endsWith('//')) {
      throw new SpiffeIdError('ERR_SPIFFEID_EMPTY_SEGMENT', 'SPIFFE-ID §2.2: the path must not contain empty segments');
    }
    throw new SpiffeIdError('ERR_SPIFFEID_TRAILING_SLASH', 'SPIFFE-ID §2.2: the path must not end with a slash');
  }
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const seg = path.slice(segStart, i);
      if (seg.length === 0) {
        throw new SpiffeIdError(
          'ERR_SPIFFEID_EMPTY_SEGMENT',
          'SPIFFE-ID §2.2: the path must not contain empty segments',
        );
      }
      if (seg === '.' || seg === '..') {
        throw new SpiffeIdError(
          'ERR_SPIFFEID_DOT_SEGMENT',
          'SPIFFE-ID §2.2: the path must not contain "." or ".." segments',
        );
      }
      segStart = i + 1;
      continue;
    }
    if (isPathChar(c)) continue;
    if (c === 0x25) {
      throw new SpiffeIdError('ERR_SPIFFEID_PERCENT_ENCODING', 'SPIFFE-ID §2.2: the path must not be percent-encoded');
    }
    throw new SpiffeIdError(
      'ERR_SPIFFEID_PATH_CHAR',
      `SPIFFE-ID §2.2: path segments may contain only a-z A-Z 0-9 . - _ (found ${JSON.stringify(path[i])})`,
    );
  }
}

/**
 * Parses and validates a trust domain name (without scheme).
 *
 * @example
 * ```ts
 * const td = parseTrustDomain('example.org');
 * td.idString(); // 'spiffe://example.org'
 * ```
 * @throws {SpiffeIdError} naming the broken rule
 */
export function parseTrustDomain(name: string): TrustDomain {
  checkTrustDomain(name);
  return TrustDomain.fromValidated(VALIDATED, name);
}

/**
 * Parses and validates a SPIFFE ID (`spiffe://<trust-domain>[/<path>]`).
 * The scheme must be exactly `spiffe://` and the trust domain lowercase: a principal has one
 * spelling (go-spiffe and SPIRE refuse `SPIFFE://` too).
 *
 * @example
 * ```ts
 * const id = parseSpiffeId('spiffe://example.org/ns/prod/sa/api');
 * id.trustDomain.name; // 'example.org'
 * id.path;             // '/ns/prod/sa/api'
 * ```
 * @throws {SpiffeIdError} naming the broken rule
 */
export function parseSpiffeId(text: string): SpiffeId {
  if (typeof text !== 'string' || text.length === 0) {
    throw new SpiffeIdError('ERR_SPIFFEID_EMPTY', 'SPIFFE-ID §2: the SPIFFE ID must not be empty');
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_SPIFFE_ID_BYTES) {
    throw new SpiffeIdError(
      'ERR_SPIFFEID_TOO_LONG',
      `SPIFFE-ID §2.4: the SPIFFE ID must be at most ${MAX_SPIFFE_ID_BYTES} bytes`,
    );
  }
  if (!text.startsWith(SCHEME)) {
    throw new SpiffeIdError('ERR_SPIFFEID_WRONG_SCHEME', 'SPIFFE-ID §2: the scheme must be "spiffe://" (lowercase)');
  }
  let rest = text.slice(SCHEME.length);
  // Query and fragment are checked first so "spiffe://td?x" names the query, not a bad character.
  const q = rest.indexOf('?');
  const h = rest.indexOf('#');
  if (q !== -1 && (h === -1 || q < h)) {
    throw new SpiffeIdError('ERR_SPIFFEID_QUERY', 'SPIFFE-ID §2: the SPIFFE ID must not contain a query');
  }
  if (h !== -1) {
    throw new SpiffeIdError('ERR_SPIFFEID_FRAGMENT', 'SPIFFE-ID §2: the SPIFFE ID must not contain a fragment');
  }
  const slash = rest.indexOf('/');
  const tdName = slash === -1 ? rest : rest.slice(0, slash);
  rest = slash === -1 ? '' : rest.slice(slash);
  checkTrustDomain(tdName);
  checkPath(rest);
  return SpiffeId.fromValidated(VALIDATED, TrustDomain.fromValidated(VALIDATED, tdName), rest);
}

// Hot-path IDs repeat endlessly: remember parse results, valid and invalid (bounded, reset when full).
const parseCache = new Map<string, SpiffeId | SpiffeIdError>();
const PARSE_CACHE_MAX = 65_536;

/**
 * {@link parseSpiffeId} without throwing, for hot paths: the parsed ID, or the {@link SpiffeIdError}
 * naming the broken rule. Results are cached (bounded), so a repeated ID costs one map lookup.
 *
 * @example
 * ```ts
 * const r = tryParseSpiffeId(req.source);
 * if (r instanceof SpiffeIdError) return deny(`invalid SPIFFE ID (${r.code}): ${r.message}`);
 * r.path; // '/ns/prod/sa/api'
 * ```
 */
export function tryParseSpiffeId(text: string): SpiffeId | SpiffeIdError {
  // Overlong input is refused before it can become a cache key.
  if (typeof text !== 'string' || text.length > MAX_SPIFFE_ID_BYTES) {
    return catchParse(text);
  }
  let r = parseCache.get(text);
  if (r === undefined) {
    r = catchParse(text);
    if (parseCache.size >= PARSE_CACHE_MAX) parseCache.clear();
    parseCache.set(text, r);
  }
  return r;
}

function catchParse(text: string): SpiffeId | SpiffeIdError {
  try {
    return parseSpiffeId(text);
  } catch (e) {
    if (e instanceof SpiffeIdError) return e;
    throw e;
  }
}

/**
 * Like {@link parseSpiffeId} but also requires a path (a workload ID, not a trust-domain ID).
 *
 * @example
 * ```ts
 * parseWorkloadSpiffeId('spiffe://example.org/api'); // ok
 * parseWorkloadSpiffeId('spiffe://example.org');     // throws ERR_SPIFFEID_PATH_REQUIRED
 * ```
 */
export function parseWorkloadSpiffeId(text: string): SpiffeId {
  const id = parseSpiffeId(text);
  if (id.isTrustDomainId) {
    throw new SpiffeIdError('ERR_SPIFFEID_PATH_REQUIRED', 'SPIFFE-ID §2.2: a workload SPIFFE ID must have a path');
  }
  return id;
}

/**
 * Builds a SPIFFE ID from a trust domain and path segments, validating each.
 *
 * @example
 * ```ts
 * spiffeIdFromSegments(parseTrustDomain('example.org'), 'ns', 'prod', 'sa', 'api').toString();
 * // 'spiffe://example.org/ns/prod/sa/api'
 * ```
 */
export function spiffeIdFromSegments(td: TrustDomain, ...segments: string[]): SpiffeId {
  const path = segments.length === 0 ? '' : `/${segments.join('/')}`;
  checkPath(path);
  const id = SpiffeId.fromValidated(VALIDATED, td, path);
  if (Buffer.byteLength(id.toString(), 'utf8') > MAX_SPIFFE_ID_BYTES) {
    throw new SpiffeIdError(
      'ERR_SPIFFEID_TOO_LONG',
      `SPIFFE-ID §2.4: the SPIFFE ID must be at most ${MAX_SPIFFE_ID_BYTES} bytes`,
    );
  }
  return id;
}

/** Kubernetes-style workload coordinates derived from a SPIFFE ID path. */
export interface WorkloadCoordinates {
  /** From `…/ns/<namespace>/sa/<name>`, else undefined. */
  namespace?: string;
  /** From `…/ns/<namespace>/sa/<name>`, else undefined. */
  serviceAccount?: string;
  /** The service account when present, else the last path segment; undefined for a trust-domain ID. */
  service?: string;
}

/**
 * Derives namespace / service account / service from an ID ending in `/ns/<ns>/sa/<sa>`
 * (the Istio and SPIRE-on-Kubernetes convention); other IDs give the last path segment as service.
 *
 * @example
 * ```ts
 * workloadCoordinates(parseSpiffeId('spiffe://cluster.local/ns/prod/sa/api'));
 * // { namespace: 'prod', serviceAccount: 'api', service: 'api' }
 * workloadCoordinates(parseSpiffeId('spiffe://example.org/billing/worker'));
 * // { service: 'worker' }
 * ```
 */
export function workloadCoordinates(id: SpiffeId): WorkloadCoordinates {
  const segs = id.segments;
  const n = segs.length;
  if (n >= 4 && segs[n - 4] === 'ns' && segs[n - 2] === 'sa') {
    const namespace = segs[n - 3] as string;
    const serviceAccount = segs[n - 1] as string;
    return { namespace, serviceAccount, service: serviceAccount };
  }
  const last = segs[n - 1];
  return last === undefined ? {} : { service: last };
}
