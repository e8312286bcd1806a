/**
 * Signing identity assertions in a sidecar: a short-lived JWT that tells the app behind it who the
 * verified caller is, verifiable with any JWT library against a JWKS the server publishes.
 *
 * The signing key is an ephemeral P-256 key made with WebCrypto as non-extractable: it exists only
 * in this process's memory and cannot even be exported from it. Its public half is registered with
 * the server over mTLS (our X.509-SVID proves who owns it; the server checks nothing else) before
 * the key signs anything, and is re-registered fresh every `rotateSeconds`:
 *
 * ```
 * key n:    registered ── active (rotateSeconds) ── grace (rotateSeconds/2, only if rotation fails) ── + ttl + 60 s ── expires
 * key n+1:              prepublished P s before ──▶ active
 * ```
 *
 * A key's published lifetime always covers the last token it can sign (a token's `exp` is capped at
 * its key's expiry), so rotation never breaks a token in flight, and a failed rotation keeps the
 * current key while it retries with backoff. Tokens carry no per-request data, so one token per
 * caller is cached and reused for half its lifetime: the sidecar signs per caller, not per request.
 */
import { webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, type JWTPayload, SignJWT } from 'jose';
import { parseSpiffeId } from '../../spiffe/index.js';
import { authorizeId, createMtlsFetch, type MtlsFetch, type X509SvidSource } from '../mtls/index.js';
import { serverIdFor } from '../server-id.js';
import {
  ASSERTION_ALG,
  ASSERTION_KEYS_PATH,
  ASSERTION_TYP,
  type AssertionIdentityKind,
  IdentityAssertionError,
} from './wire.js';

/** The caller to vouch for: the middleware's `CallerIdentity` fits as is. */
export interface AssertionCaller {
  kind: AssertionIdentityKind | 'anonymous';
  spiffeId?: string;
  user?: string;
}

/** The part of a `fetch` the signer uses (tests inject failures through it). */
export type AssertionFetch = (
  url: string,
  init: { method: 'POST'; headers: Record<string, string>; body: string; signal?: AbortSignal },
) => Promise<{ status: number; text(): Promise<string> }>;

/** Options of {@link startAssertionSigner}. */
export interface AssertionSignerOptions {
  /** The sidecar's X.509-SVID (and bundles): authenticates registrations; its SPIFFE ID is `iss`. */
  source: X509SvidSource;
  /** The server's agent port (mTLS), e.g. `https://127.0.0.1:8081`. */
  server: string | URL;
  /** The SPIFFE ID the server must present; default `spiffe://<our trust domain>/nevertrust/server`. */
  serverId?: string;
  /** Token lifetime in seconds (default 60, at most 3600). */
  ttlSeconds?: number;
  /** A new key every this many seconds (default 3600, at most 50 400). */
  rotateSeconds?: number;
  /**
   * How long a new key is published before it signs (default min(300, rotateSeconds/4)): longer
   * than the JWKS max-age (60 s), so apps with a cached JWKS already hold the new key.
   */
  prepublishSeconds?: number;
  /** `startAssertionSigner` rejects when the first key is not registered within this (default 30 000 ms). */
  startTimeoutMs?: number;
  /** Default: an mTLS fetch presenting the source's SVID and checking `serverId`. */
  fetch?: AssertionFetch;
  /** Registrations and failures, for the sidecar's log (never key material). */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Counters, for tests and metrics. */
export interface AssertionSignerStats {
  /** Signatures made (one per caller per half token lifetime, not per request). */
  signed: number;
  /** `assertionFor` calls answered from the cache. */
  cacheHits: number;
  /** Callers with a cached token. */
  cached: number;
  /** Keys registered since start (the first included). */
  keysRegistered: number;
  /** Failed registration attempts since start. */
  registrationFailures: number;
  /** The kid signing now. */
  kid: string;
}

/** A running signer. */
export interface AssertionSigner {
  /** Our SPIFFE ID: `iss` and `aud` of every assertion. */
  readonly issuer: string;
  /**
   * A compact JWS vouching for `caller`, cached per caller for half its lifetime.
   *
   * @throws {IdentityAssertionError} `ERR_ASSERTION_INVALID_CALLER` (anonymous, or no ID),
   *   `ERR_ASSERTION_NO_KEY` (rotation failed long enough that no registered key is valid),
   *   `ERR_ASSERTION_CLOSED`
   */
  assertionFor(caller: AssertionCaller): Promise<string>;
  /**
   * Signs a given claim set with the active key, uncached (per request: the access proxy's person
   * assertions carry a decision id). `iss` is ours, `iat`/`exp` are set here (`exp` capped at the
   * key's published lifetime); `typ` must differ from {@link ASSERTION_TYP} so a verifier of one kind
   * of assertion can never accept the other. Claims named `iss`, `iat`, `exp` or `nbf` are ignored.
   *
   * @example
   * ```ts
   * const jwt = await signer.signClaims({ sub, email, decision_id }, { typ: PERSON_ASSERTION_TYP, audience: 'wiki' });
   * ```
   * @throws {IdentityAssertionError} `ERR_ASSERTION_CONFIG` (the workload `typ`), `ERR_ASSERTION_NO_KEY`, `ERR_ASSERTION_CLOSED`
   */
  signClaims(claims: JWTPayload, opts: { typ: string; audience: string; ttlSeconds?: number }): Promise<string>;
  stats(): AssertionSignerStats;
  /** Stops rotation and drops the keys; tokens already handed out stay valid until they expire. */
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  privateKey: webcrypto.CryptoKey;
  publicJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  /** When it starts (started) signing, ms. */
  activeAt: number;
  /** Published until, ms; no token it signs outlives this. */
  expiresAt: number;
}

interface CachedToken {
  token: Promise<string>;
  refreshAt: number;
}

const MAX_TTL_SECONDS = 3600;
const MAX_ROTATE_SECONDS = 50_400;
const MAX_CACHED_CALLERS = 10_000;
const MAX_SUBJECT_BYTES = 2048;
const REQUEST_TIMEOUT_MS = 10_000;
const KEY_SLACK_SECONDS = 60;

function configError(message: string): never {
  throw new IdentityAssertionError('ERR_ASSERTION_CONFIG', message);
}

function intOption(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < min || n > max) configError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

async function newKey(): Promise<Omit<SigningKey, 'activeAt' | 'expiresAt'>> {
  // extractable=false: the private key can sign, and nothing can read it out (the public half of a
  // WebCrypto pair is always extractable).
  const pair = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const jwk = await webcrypto.subtle.exportKey('jwk', pair.publicKey);
  const publicJwk = { kty: 'EC' as const, crv: 'P-256' as const, x: String(jwk.x), y: String(jwk.y) };
  return { kid: await calculateJwkThumbprint(publicJwk, 'sha256'), privateKey: pair.privateKey, publicJwk };
}

function subjectOf(caller: AssertionCaller): { kind: AssertionIdentityKind; sub: string } {
  const invalid = (why: string): never => {
    throw new IdentityAssertionError('ERR_ASSERTION_INVALID_CALLER', why);
  };
  if (!caller || typeof caller !== 'object') return invalid('caller must be a CallerIdentity');
  const { kind } = caller;
  if (kind === 'user-jwt') {
    const user = caller.user;
    if (typeof user !== 'string' || user.length === 0 || Buffer.byteLength(user) > MAX_SUBJECT_BYTES)
      return invalid('a user-jwt caller needs a user of 1 to 2048 bytes');
    return { kind, sub: user };
  }
  if (kind === 'x509' || kind === 'xfcc' || kind === 'jwt-svid') {
    try {
      return { kind, sub: parseSpiffeId(caller.spiffeId ?? '').toString() };
    } catch {
      return invalid(`a ${kind} caller needs a valid SPIFFE ID`);
    }
  }
  return invalid(`no assertion for an ${String(kind)} caller: only verified callers are vouched for`);
}

/** An error's message with its cause's (undici says only "fetch failed"; the reason is the cause). */
function reason(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
  return `${e.message}${cause}`;
}

const delay = (ms: number, unref: boolean) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    if (unref) t.unref();
  });

/** Exponential backoff with ±20 % jitter, so many sidecars do not retry in step. */
const backoff = (attempt: number, baseMs: number, capMs: number) =>
  Math.min(capMs, baseMs * 2 ** attempt) * (0.8 + Math.random() * 0.4);

/**
 * Starts signing identity assertions: makes a key, registers it with the server, and resolves once
 * it is registered (retrying with backoff until `startTimeoutMs`). Then rotates in the background.
 *
 * @example
 * ```ts
 * import { ASSERTION_HEADER, startAssertionSigner } from 'nevertrust/assertion';
 * const signer = await startAssertionSigner({ source, server: 'https://127.0.0.1:8081' });
 * headers[ASSERTION_HEADER] = await signer.assertionFor({ kind: 'x509', spiffeId: peerId });
 * // … at shutdown
 * await signer.close();
 * ```
 * @throws {IdentityAssertionError} `ERR_ASSERTION_CONFIG` for bad options, `ERR_ASSERTION_REGISTER_TIMEOUT`
 *   when the server did not accept the first key in time (the message carries the last reason)
 */
export async function startAssertionSigner(opts: AssertionSignerOptions): Promise<AssertionSigner> {
  const ttl = intOption('ttlSeconds', opts.ttlSeconds, 60, 1, MAX_TTL_SECONDS);
  const rotate = intOption('rotateSeconds', opts.rotateSeconds, 3600, 1, MAX_ROTATE_SECONDS);
  const prepublish = intOption(
    'prepublishSeconds',
    opts.prepublishSeconds,
    Math.min(300, Math.floor(rotate / 4)),
    0,
    rotate - 1,
  );
  const startTimeoutMs = intOption('startTimeoutMs', opts.startTimeoutMs, 30_000, 1, 3_600_000);
  if (!opts.source) configError('source (an X.509 SVID source) is required');
  let issuer: string;
  let serverId: string;
  try {
    issuer = parseSpiffeId(String(opts.source.svid.spiffeId)).toString();
    serverId = serverIdFor(issuer, opts.serverId);
  } catch (e) {
    return configError(`invalid SPIFFE ID (source SVID or serverId): ${(e as Error).message}`);
  }
  let endpoint: string;
  try {
    const u = new URL(ASSERTION_KEYS_PATH, opts.server);
    if (u.protocol !== 'https:') configError('server must be the https:// URL of the server agent port');
    endpoint = u.toString();
  } catch (e) {
    if (e instanceof IdentityAssertionError) throw e;
    return configError('server must be the https:// URL of the server agent port');
  }
  const log = opts.log ?? (() => {});
  const ownFetch: MtlsFetch | undefined = opts.fetch
    ? undefined
    : createMtlsFetch(opts.source, { authorize: authorizeId(serverId) });
  const doFetch: AssertionFetch = opts.fetch ?? (ownFetch as MtlsFetch);
  const aborter = new AbortController();
  const stats = { signed: 0, cacheHits: 0, keysRegistered: 0, registrationFailures: 0 };
  // Active for `rotate`, then a grace of rotate/2 in which a failing rotation keeps signing, then
  // the last token's lifetime, plus slack for verifiers' clock tolerance and skew.
  const keyLifetimeMs = (rotate + rotate / 2 + ttl + KEY_SLACK_SECONDS) * 1000;

  /** Registers a public key until `expiresAt`; throws with the server's reason. */
  const register = async (key: Omit<SigningKey, 'activeAt' | 'expiresAt'>, expiresAt: number): Promise<void> => {
    const res = await doFetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jwk: key.publicJwk, expires_at: new Date(expiresAt).toISOString() }),
      signal: AbortSignal.any([aborter.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
    });
    const text = await res.text();
    let body: { kid?: unknown; error?: unknown; message?: unknown } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Reported below with the status.
    }
    if (res.status !== 200 && res.status !== 201) {
      throw new Error(
        `the server refused the key: ${res.status} ${String(body.error ?? '')} ${String(body.message ?? '')}`,
      );
    }
    // The server computes the kid itself; a different one would mean it published some other key.
    if (body.kid !== key.kid) throw new Error('the server answered with another kid than our key thumbprint');
    stats.keysRegistered++;
    log('assertion key registered', { kid: key.kid, expires_at: new Date(expiresAt).toISOString() });
  };

  // First key: registered before start resolves, with a deadline.
  let current: SigningKey | undefined;
  {
    const first = await newKey();
    const deadline = Date.now() + startTimeoutMs;
    let lastError = 'no attempt';
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      try {
        await register(first, now + keyLifetimeMs);
        current = { ...first, activeAt: now, expiresAt: now + keyLifetimeMs };
        break;
      } catch (e) {
        stats.registrationFailures++;
        lastError = reason(e);
        log('assertion key registration failed', { attempt, error: lastError });
      }
      const wait = backoff(attempt, 250, 5_000);
      if (Date.now() + wait >= deadline) {
        aborter.abort();
        await ownFetch?.close();
        throw new IdentityAssertionError(
          'ERR_ASSERTION_REGISTER_TIMEOUT',
          `could not register an assertion key with ${endpoint} within ${startTimeoutMs} ms: ${lastError}`,
        );
      }
      await delay(wait, false);
    }
  }

  let active: SigningKey = current as SigningKey;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const cache = new Map<string, CachedToken>();
  const schedule = (at: number, fn: () => void) => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(fn, Math.max(0, at - Date.now()));
    timer.unref();
  };

  // Rotation: register the next key `prepublish` seconds before it is due, switch at its activeAt.
  let pending: Omit<SigningKey, 'activeAt' | 'expiresAt'> | undefined;
  let attempt = 0;
  const prepareNext = async () => {
    if (closed) return;
    try {
      pending ??= await newKey();
      const now = Date.now();
      let activeAt = Math.max(active.activeAt + rotate * 1000, now + prepublish * 1000);
      // Late (rotation failed for a while) and the current key can no longer give full-length
      // tokens: switch as soon as the new key is registered.
      if (activeAt > active.expiresAt - ttl * 1000) activeAt = now;
      const expiresAt = activeAt + keyLifetimeMs;
      await register(pending, expiresAt);
      if (closed) return;
      const next: SigningKey = { ...pending, activeAt, expiresAt };
      pending = undefined;
      attempt = 0;
      schedule(activeAt, () => {
        active = next;
        log('assertion key active', { kid: next.kid });
        schedule(active.activeAt + (rotate - prepublish) * 1000, () => void prepareNext());
      });
    } catch (e) {
      if (closed) return;
      stats.registrationFailures++;
      const wait = backoff(attempt++, 1_000, 30_000);
      log('assertion key rotation failed; keeping the current key and retrying', {
        kid: active.kid,
        error: reason(e),
        retry_in_ms: Math.round(wait),
      });
      schedule(Date.now() + wait, () => void prepareNext());
    }
  };
  schedule(active.activeAt + (rotate - prepublish) * 1000, () => void prepareNext());

  /** The one place a key signs: `iss` ours, the key's kid, the given `typ` and `aud`. */
  const signWith = (key: SigningKey, claims: JWTPayload, typ: string, aud: string, iat: number, exp: number) =>
    new SignJWT({ ...claims, iss: issuer, aud, iat, exp, nbf: undefined })
      .setProtectedHeader({ alg: ASSERTION_ALG, kid: key.kid, typ })
      .sign(key.privateKey);
  const sign = (key: SigningKey, kind: AssertionIdentityKind, sub: string, iat: number, exp: number) =>
    signWith(key, { sub, nevertrust: { identity: kind } }, ASSERTION_TYP, issuer, iat, exp);
  /** The active key and a token lifetime it can still cover, or why not. */
  const lifetime = (now: number, tokenTtl: number) => {
    if (closed) throw new IdentityAssertionError('ERR_ASSERTION_CLOSED', 'the assertion signer is closed');
    const key = active;
    const iat = Math.floor(now / 1000);
    // Never past the key's published lifetime: the app must be able to verify every token we hand out.
    const exp = Math.min(iat + tokenTtl, Math.floor(key.expiresAt / 1000));
    if (exp * 1000 <= now) {
      throw new IdentityAssertionError(
        'ERR_ASSERTION_NO_KEY',
        'no registered assertion key is valid (key rotation has been failing; see the log)',
      );
    }
    return { key, iat, exp };
  };

  return {
    issuer,
    assertionFor(caller) {
      try {
        if (closed) throw new IdentityAssertionError('ERR_ASSERTION_CLOSED', 'the assertion signer is closed');
        const { kind, sub } = subjectOf(caller);
        const cacheKey = `${kind}\n${sub}`;
        const now = Date.now();
        const hit = cache.get(cacheKey);
        if (hit && now < hit.refreshAt) {
          stats.cacheHits++;
          return hit.token;
        }
        const { key, iat, exp } = lifetime(now, ttl);
        const token = sign(key, kind, sub, iat, exp);
        stats.signed++;
        const entry: CachedToken = { token, refreshAt: now + (exp * 1000 - now) / 2 };
        // A failed signature must not be served from the cache.
        token.catch(() => {
          if (cache.get(cacheKey) === entry) cache.delete(cacheKey);
        });
        cache.delete(cacheKey);
        if (cache.size >= MAX_CACHED_CALLERS) cache.delete(cache.keys().next().value as string);
        cache.set(cacheKey, entry);
        return token;
      } catch (e) {
        return Promise.reject(e);
      }
    },
    signClaims(claims, o) {
      try {
        if (o.typ === ASSERTION_TYP) configError(`typ ${ASSERTION_TYP} is the workload assertion's own`);
        const { key, iat, exp } = lifetime(Date.now(), intOption('ttlSeconds', o.ttlSeconds, ttl, 1, MAX_TTL_SECONDS));
        stats.signed++;
        return signWith(key, claims, o.typ, o.audience, iat, exp);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    stats: () => ({ ...stats, cached: cache.size, kid: active.kid }),
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      aborter.abort();
      cache.clear();
      pending = undefined;
      await ownFetch?.close();
    },
  };
}
