/**
 * The OIDC relying party behind the access proxy: login (code + PKCE S256, state bound to the browser,
 * nonce) through openid-client, server-side sessions in the store behind an opaque `__Host-` cookie,
 * a cache kept honest by the change feed, provider token refresh, bearer JWTs, RP-initiated and
 * back-channel logout. Every login, logout and ended session is an audit event; no token, code,
 * cookie value, state or nonce reaches an event or a log line.
 *
 * @example
 * ```ts
 * const auth = await createOidcAuthenticator(oidcAuthConfigSchema.parse(yaml.oidc), {
 *   sessions: store.accessSessions,
 *   record: (e) => recorder.record(e),
 * });
 * const who = await auth.identify(req, { host, origin, ip });
 * ```
 */
import { readFormBody } from '../../util/http-body.js';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import type { AuditEventInput } from '../../audit/event.js';
import { type Kek, loadOrCreateKek, type SealedKey } from '../../ca/kek.js';
import { type AccessSessionRecord, type AccessSessionRepository, sha256Hex } from '../../store/access-sessions.js';
import type { Logger } from '../../util/logger.js';
import {
  type Authenticator,
  type Identification,
  type LoginOptions,
  OWN_PATH_PREFIX,
  type PersonIdentity,
  type RequestContext,
} from '../identity.js';
import type { OidcAuthConfig } from './config.js';
import { clearCookie, hostCookie, readCookie } from './cookies.js';
import { AccessAuthError, LoginRefusedError } from './errors.js';
import { parseSessionMfa, type SessionMfa, withProviderMfa, withSessionMfa } from './mfa-mapping.js';
import { escapeHtml, redirect, sendJson, sendPage } from './pages.js';
import { discoverProvider, type Provider } from './provider.js';
import { safeReturnTo } from './return-to.js';
import { ChangeFollower, Lru } from './session-cache.js';

export interface OidcAuthenticatorDeps {
  /** The store's session repository (`store.accessSessions`). */
  sessions: AccessSessionRepository;
  /** The `record` of an AuditRecorder. */
  record: (e: AuditEventInput) => void;
  logger?: Logger;
  /** Sessions kept in memory (default 10,000). */
  cacheSize?: number;
}

/** The Authenticator, plus who a person is for policy and audit (`source.user`, from `user_claim`). */
export interface OidcAuthenticator extends Authenticator {
  userOf(person: PersonIdentity): string;
  elevate(sessionId: string, methods: readonly string[]): Promise<boolean>;
  csrfToken(req: IncomingMessage, purpose: string): string | undefined;
  /**
   * The sealing key of `session.key_file`: the MFA service seals TOTP secrets under it (one key
   * file per proxy deployment, shared by its proxies like the sessions are).
   */
  readonly kek: Kek;
}

export const CALLBACK_PATH = `${OWN_PATH_PREFIX}callback`;
export const SIGN_OUT_PATH = `${OWN_PATH_PREFIX}sign_out`;
export const SIGNED_OUT_PATH = `${OWN_PATH_PREFIX}signed_out`;
export const BACKCHANNEL_LOGOUT_PATH = `${OWN_PATH_PREFIX}backchannel-logout`;
export const LOGIN_COOKIE = '__Host-nevertrust_login';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** How long a browser has to come back from the provider. */
const LOGIN_TTL_S = 600;
/**
 * Logins one browser may have in flight (two tabs sent to sign in at once): the login cookie holds
 * their states, newest first, `.`-separated (a state is base64url, so never contains a dot).
 */
const MAX_LOGINS_IN_FLIGHT = 3;
const STATE_SHAPE = /^[A-Za-z0-9_-]{16,128}$/;

/** The states of the logins this browser started, from its login cookie (malformed parts ignored). */
function loginStates(req: IncomingMessage): string[] {
  const v = readCookie(req, LOGIN_COOKIE);
  return v
    ? v
        .split('.')
        .filter((s) => STATE_SHAPE.test(s))
        .slice(0, MAX_LOGINS_IN_FLIGHT)
    : [];
}

/** The login cookie after `state` is spent: the others stay, or the cookie goes. */
function withoutState(states: string[], state: string): string {
  const rest = states.filter((s) => s !== state);
  return rest.length ? hostCookie(LOGIN_COOKIE, rest.join('.'), LOGIN_TTL_S) : clearCookie(LOGIN_COOKIE);
}
const CLOCK_SKEW_S = 30;
/** The sign-out and back-channel logout forms: a CSRF token, or one logout token. */
const FORM_LIMIT = 16 * 1024;
const PURGE_EVERY_MS = 10 * 60_000;
const PURGE_AFTER_MS = 24 * 3600_000;
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
/** ID token claims that are about the token, not the person: not handed to policy. */
const TOKEN_CLAIMS = new Set(['nonce', 'at_hash', 'c_hash', 's_hash', 'jti']);

interface CachedSession {
  record: AccessSessionRecord;
  person: PersonIdentity;
  /** When the record was read from the store. */
  loadedAt: number;
}

/** Sealed provider tokens (`tokens` column). */
interface ProviderTokens {
  refresh_token?: string;
  id_token?: string;
}

/** A login in flight (`access_login_states.sealed`). */
interface LoginState {
  verifier: string;
  nonce: string;
  returnTo: string;
  host: string;
  /** The `max_age` asked for: the callback checks the token's `auth_time` against it. */
  maxAge?: number;
}

const invalid = (code: string, reason: string): Identification => ({ kind: 'invalid', code, reason });

/** Reads the client secret from the config or its file (trailing newline dropped). */
function clientSecretOf(cfg: OidcAuthConfig): string {
  if (cfg.client_secret !== undefined) return cfg.client_secret;
  try {
    return readFileSync(cfg.client_secret_file as string, 'utf8').trim();
  } catch (e) {
    throw new AccessAuthError(
      'ERR_ACCESS_AUTH_CONFIG',
      `client_secret_file ${cfg.client_secret_file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { cause: e },
    );
  }
}

/** Maps verified claims to a person; `claims` keeps everything but token bookkeeping. */
export function personFromClaims(claims: jose.JWTPayload, groupsClaim: string): PersonIdentity {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const list = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims)) if (!TOKEN_CLAIMS.has(k)) kept[k] = v;
  const email = str(claims.email);
  const name = str(claims.name);
  const acr = str(claims.acr);
  return {
    issuer: String(claims.iss),
    sub: String(claims.sub),
    ...(email !== undefined ? { email } : {}),
    ...(name !== undefined ? { name } : {}),
    groups: list(claims[groupsClaim]),
    amr: list(claims.amr),
    ...(acr !== undefined ? { acr } : {}),
    ...(typeof claims.auth_time === 'number' ? { authTime: claims.auth_time } : {}),
    claims: kept,
  };
}

/** A reason safe to show and record: the oauth error code or the library's check, no values. */
function failureReason(e: unknown): string {
  if (e instanceof LoginRefusedError) return e.loginReason;
  if (e instanceof oidc.ResponseBodyError) return `token_endpoint_${e.error}`.slice(0, 80);
  if (e instanceof oidc.AuthorizationResponseError) return `provider_${e.error}`.slice(0, 80);
  const code = (e as { code?: unknown }).code;
  // Which check failed: openid-client wraps oauth4webapi's error, whose message names the claim or
  // parameter (never its value: those stay in its `cause`).
  if (typeof code === 'string' && code.startsWith('OAUTH_') && e instanceof Error) {
    const inner = e.cause instanceof Error && (e.cause as { code?: unknown }).code === code ? e.cause : e;
    return `${code.toLowerCase()}: ${inner.message.replace(/[^\x20-\x7e]/g, '').slice(0, 120)}`;
  }
  return typeof code === 'string' ? code.toLowerCase() : 'login_failed';
}

/**
 * Creates the authenticator: loads (or creates, 0600) the sealing key, discovers the provider,
 * and starts the change-feed follower at the newest change.
 *
 * @throws {AccessAuthError} ERR_ACCESS_AUTH_CONFIG (secret or key file), ERR_ACCESS_AUTH_PROVIDER (discovery)
 */
export async function createOidcAuthenticator(
  cfg: OidcAuthConfig,
  deps: OidcAuthenticatorDeps,
): Promise<OidcAuthenticator> {
  const secret = clientSecretOf(cfg);
  let kek: Kek;
  try {
    // env {}: NEVERTRUST_KEK is the CA's key, never this one.
    kek = (await loadOrCreateKek({ file: cfg.session.key_file, env: {} })).kek;
  } catch (e) {
    throw new AccessAuthError('ERR_ACCESS_AUTH_CONFIG', `session.key_file: ${(e as Error).message}`, { cause: e });
  }
  let provider: Provider;
  try {
    provider = await discoverProvider(cfg, secret);
  } catch (e) {
    throw new AccessAuthError(
      'ERR_ACCESS_AUTH_PROVIDER',
      `OpenID provider discovery at ${cfg.issuer} failed: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const repo = deps.sessions;
  const log = deps.logger;
  const absoluteMs = cfg.session.absolute_lifetime * 1000;
  const idleMs = cfg.session.idle_lifetime * 1000;
  const touchEveryMs = idleMs / 10;
  const cookieName = cfg.session.cookie_name;
  const bearerAudience = cfg.bearer.audience ?? cfg.client_id;

  // Keyed by SHA-256 of the cookie token; `byId` lets the change feed find an entry by public id.
  const byId = new Map<string, string>();
  const cache = new Lru<string, CachedSession>(deps.cacheSize ?? 10_000, (_key, v) => byId.delete(v.record.id));
  // Cookies the store does not know (forged, or long purged), apart: a flood of them cannot push
  // live sessions out of the cache, and each costs one read only.
  const unknown = new Lru<string, true>(deps.cacheSize ?? 10_000);
  const refreshing = new Map<string, Promise<Identification>>();
  // When each session was last evicted: a store read that began before an eviction may hold the
  // state from before the change, and must not be cached (see `reload`).
  const evictedAt = new Map<string, number>();

  const evict = (sessionId: string) => {
    const at = performance.now();
    evictedAt.delete(sessionId);
    evictedAt.set(sessionId, at);
    // Only the last few seconds matter; Map order is eviction order.
    for (const [id, t] of evictedAt) {
      if (t > at - 10_000 && evictedAt.size <= 10_000) break;
      evictedAt.delete(id);
    }
    const key = byId.get(sessionId);
    if (key === undefined) return;
    byId.delete(sessionId);
    cache.delete(key);
  };
  const follower = new ChangeFollower(repo, evict, (e) =>
    log?.warn({ err: e }, 'access session change feed: poll failed'),
  );
  await follower.start(cfg.change_feed_interval_ms);
  // Spent login states, seen logout tokens, and sessions a day past their absolute lifetime.
  const purge = setInterval(() => {
    repo.purge(Date.now() - PURGE_AFTER_MS).catch((e) => log?.warn({ err: e }, 'access session purge failed'));
  }, PURGE_EVERY_MS);
  purge.unref();

  const seal = (value: unknown, aad: string) => JSON.stringify(kek.seal(Buffer.from(JSON.stringify(value)), aad));
  const unseal = <T>(text: string, aad: string): T =>
    JSON.parse(kek.open(JSON.parse(text) as SealedKey, aad).toString('utf8')) as T;

  const userOf = (p: PersonIdentity): string => {
    const v = cfg.user_claim === 'sub' ? p.sub : p.claims[cfg.user_claim];
    return typeof v === 'string' && v !== '' ? v : p.sub;
  };

  // The proxy decides with `user`: the same name as this authenticator's audit events. MFA at the
  // provider by the config's mapping (its time is `auth_time`, or unknown).
  const personOf = (claims: jose.JWTPayload): PersonIdentity => {
    const p = personFromClaims(claims, cfg.groups_claim);
    return withProviderMfa({ ...p, user: userOf(p) }, cfg.mfa);
  };

  /** The session's person: as at login, plus a step-up at the proxy. */
  const sessionPerson = (record: AccessSessionRecord): PersonIdentity =>
    withSessionMfa(JSON.parse(record.person) as PersonIdentity, cfg.mfa, parseSessionMfa(record.mfa));

  const audit = (e: AuditEventInput) => {
    try {
      deps.record({ enforcer: 'access-proxy', ...e });
    } catch (err) {
      log?.error({ err, kind: e.kind }, 'access auth: audit record failed');
    }
  };

  const sessionEnded = (id: string, reason: string, ctx: { host?: string; ip?: string }, user?: string) =>
    audit({
      kind: 'access.session.ended',
      outcome: 'deny',
      reason,
      source: { ...(user ? { user } : {}), ...(ctx.ip ? { ip: ctx.ip } : {}) },
      ...(ctx.host ? { target: { host: ctx.host } } : {}),
      details: { session: id },
    });

  const cacheEntry = (key: string, record: AccessSessionRecord): CachedSession => {
    const entry: CachedSession = { record, person: sessionPerson(record), loadedAt: Date.now() };
    cache.set(key, entry);
    byId.set(record.id, key);
    return entry;
  };

  const csrfFor = (token: string, purpose = 'sign-out') =>
    createHmac('sha256', token).update(`nevertrust-${purpose}`).digest('base64url');

  const csrfToken = (req: IncomingMessage, purpose: string): string | undefined => {
    const token = readCookie(req, cookieName);
    return token !== undefined && TOKEN_RE.test(token) ? csrfFor(token, purpose) : undefined;
  };

  // ---------- step-up ----------

  const elevate = async (sessionId: string, methods: readonly string[]): Promise<boolean> => {
    const mfa: SessionMfa = { at: Math.floor(Date.now() / 1000), methods: [...new Set(methods)] };
    const json = JSON.stringify(mfa);
    if (!(await repo.updateMfa(sessionId, json))) return false;
    // This proxy sees it at once: a read begun before the write must not be cached (evict marks
    // that), and the cached entry is replaced by the updated one. Other proxies reload it when
    // their change feed brings the `updated` row.
    const key = byId.get(sessionId);
    const entry = key === undefined ? undefined : cache.get(key);
    evict(sessionId);
    if (key !== undefined && entry !== undefined) cacheEntry(key, { ...entry.record, mfa: json });
    return true;
  };

  // ---------- identify ----------

  const check = (
    entry: CachedSession,
    key: string,
    token: string,
    ctx: RequestContext,
  ): Identification | Promise<Identification> => {
    const s = entry.record;
    const now = Date.now();
    if (s.endedAt !== null) return invalid('session_ended', `the session was ended (${s.endReason ?? 'ended'})`);
    if (s.host !== ctx.host) return invalid('session_wrong_host', 'the session belongs to another host');
    if (s.deviceId !== null && ctx.deviceId !== s.deviceId) return deviceMismatch(entry, ctx);
    if (now >= s.expiresAt) return invalid('session_expired', 'the session reached its absolute lifetime');
    if (now - s.lastSeenAt > idleMs) {
      // Another proxy may have seen the person since this copy was read: look once before refusing.
      if (entry.loadedAt < now - 1000) return reload(key, token, ctx);
      void repo.end(s.id, 'idle').catch((e) => log?.warn({ err: e }, 'access session: ending an idle session failed'));
      evict(s.id);
      sessionEnded(s.id, 'idle', ctx, userOf(entry.person));
      return invalid('session_idle', 'the session was idle too long');
    }
    if (now - s.lastSeenAt >= touchEveryMs) {
      s.lastSeenAt = now;
      void repo.touch(s.id, now).catch((e) => log?.warn({ err: e }, 'access session: last-seen write failed'));
    }
    if (s.tokenExpiresAt !== null && now >= s.tokenExpiresAt) {
      const tokens = unseal<ProviderTokens>(s.tokens, `session:${s.id}`);
      if (tokens.refresh_token) return refresh(entry, tokens, ctx);
    }
    return { kind: 'session', person: entry.person, sessionId: s.id, startedAt: s.createdAt };
  };

  // A session bound to a device is used only with that device's certificate: a copied cookie is
  // useless on another machine (or in a browser without the certificate).
  const deviceMismatch = (entry: CachedSession, ctx: RequestContext): Identification => {
    const bound = entry.record.deviceId as string;
    const reason =
      ctx.deviceId === undefined
        ? `the session is bound to device ${bound}, and no device certificate came with the request`
        : `the session is bound to device ${bound}, not ${ctx.deviceId}`;
    audit({
      kind: 'device.refused',
      outcome: 'deny',
      reason: `device_mismatch: ${reason}`,
      source: { user: userOf(entry.person), ip: ctx.ip, ...(ctx.deviceId ? { device_id: ctx.deviceId } : {}) },
      target: { host: ctx.host },
      details: { session: entry.record.id, bound_device: bound },
    });
    return invalid('device_mismatch', reason);
  };

  const reload = async (key: string, token: string, ctx: RequestContext, again = true): Promise<Identification> => {
    const began = performance.now();
    const record = await repo.findByToken(token);
    if (!record) {
      unknown.set(key, true);
      return invalid('session_unknown', 'no such session');
    }
    // The session changed while it was being read: the row may predate the change, so read again.
    const fresh = (evictedAt.get(record.id) ?? -1) < began;
    if (!fresh && again) return reload(key, token, ctx, false);
    const entry: CachedSession = fresh
      ? cacheEntry(key, record)
      : { record, person: sessionPerson(record), loadedAt: Date.now() };
    // A fresh read cannot reload again (loadedAt is now).
    return check(entry, key, token, ctx);
  };

  /** Single-flight per session: concurrent requests wait on one refresh. */
  const refresh = (entry: CachedSession, tokens: ProviderTokens, ctx: RequestContext): Promise<Identification> => {
    const id = entry.record.id;
    const running = refreshing.get(id);
    if (running) return running;
    const p = (async (): Promise<Identification> => {
      try {
        const t = await oidc.refreshTokenGrant(provider.config, tokens.refresh_token as string);
        const next: ProviderTokens = {
          refresh_token: t.refresh_token ?? tokens.refresh_token,
          id_token: t.id_token ?? tokens.id_token,
        };
        const expiresIn = t.expiresIn();
        const tokenExpiresAt = expiresIn === undefined ? null : Date.now() + expiresIn * 1000;
        await repo.updateTokens(id, seal(next, `session:${id}`), tokenExpiresAt);
        entry.record.tokens = seal(next, `session:${id}`);
        entry.record.tokenExpiresAt = tokenExpiresAt;
        return { kind: 'session', person: entry.person, sessionId: id, startedAt: entry.record.createdAt };
      } catch (e) {
        // The provider refused (user disabled, refresh token revoked) or is unreachable: fail closed.
        log?.warn(
          { session: id, reason: failureReason(e) },
          'access session: token refresh failed, ending the session',
        );
        await repo.end(id, 'refresh_failed').catch(() => {});
        evict(id);
        sessionEnded(id, 'refresh_failed', ctx, userOf(entry.person));
        return invalid('session_refresh_failed', 'the provider refused to refresh the session');
      } finally {
        refreshing.delete(id);
      }
    })();
    refreshing.set(id, p);
    return p;
  };

  const identifyBearer = async (token: string): Promise<Identification> => {
    try {
      const { payload } = await jose.jwtVerify(token, provider.jwks, {
        issuer: provider.issuer,
        audience: bearerAudience,
        algorithms: provider.algorithms,
        clockTolerance: CLOCK_SKEW_S,
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      // A back-channel logout token is signed by the same keys for the same audience: it says a
      // session ended, and must never open one (RFC 8725 §2.8, cross-JWT confusion).
      if (payload.events !== undefined) return invalid('bearer_invalid', 'a security event token is not a credential');
      const aud = payload.aud;
      if (Array.isArray(aud) && aud.length > 1 && payload.azp !== cfg.client_id) {
        return invalid('bearer_invalid', 'several audiences and azp is not this client');
      }
      if ((payload.iat as number) > Date.now() / 1000 + CLOCK_SKEW_S)
        return invalid('bearer_invalid', 'iat in the future');
      return { kind: 'bearer', person: personOf(payload) };
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'ERR_JWT_INVALID';
      return invalid('bearer_invalid', `bearer token refused (${code})`);
    }
  };

  // Fail closed: a store or provider error refuses the credential.
  const storeFailed = (e: unknown): Identification => {
    log?.error({ err: e }, 'access session: store read failed');
    return invalid('session_store_error', 'the session store is unavailable');
  };

  const identify = (req: IncomingMessage, ctx: RequestContext): Identification | Promise<Identification> => {
    try {
      const token = readCookie(req, cookieName);
      if (token !== undefined) {
        if (!TOKEN_RE.test(token)) return invalid('session_cookie_malformed', 'the session cookie is malformed');
        const key = sha256Hex(token);
        const hit = cache.get(key);
        if (hit === undefined && unknown.get(key)) return invalid('session_unknown', 'no such session');
        const found = hit !== undefined ? check(hit, key, token, ctx) : reload(key, token, ctx);
        return found instanceof Promise ? found.catch(storeFailed) : found;
      }
      const auth = req.headers.authorization;
      if (auth !== undefined && /^bearer /i.test(auth)) {
        if (!cfg.bearer.enabled) return invalid('bearer_disabled', 'bearer tokens are not accepted here');
        return identifyBearer(auth.slice(7).trim());
      }
      return { kind: 'none' };
    } catch (e) {
      log?.error({ err: e }, 'access identify failed');
      return invalid('identify_error', 'the credential could not be checked');
    }
  };

  // ---------- login ----------

  const startLogin = async (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    returnTo: string,
    opts: LoginOptions = {},
  ) => {
    try {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const maxAge = opts.maxAge === undefined ? undefined : Math.max(0, Math.floor(opts.maxAge));
      const login: LoginState = {
        verifier,
        nonce,
        returnTo: safeReturnTo(returnTo),
        host: ctx.host,
        ...(maxAge !== undefined ? { maxAge } : {}),
      };
      const prompts = [
        ...(opts.prompt ? [opts.prompt] : []),
        ...(cfg.scopes.includes('offline_access') ? ['consent'] : []),
      ];
      await repo.putLoginState(
        state,
        ctx.host,
        seal(login, `login:${sha256Hex(state)}`),
        Date.now() + LOGIN_TTL_S * 1000,
      );
      const url = oidc.buildAuthorizationUrl(provider.config, {
        redirect_uri: `${ctx.origin}${CALLBACK_PATH}`,
        scope: cfg.scopes.join(' '),
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        ...(prompts.length ? { prompt: prompts.join(' ') } : {}),
        ...(opts.acrValues?.length ? { acr_values: opts.acrValues.join(' ') } : {}),
        ...(maxAge !== undefined ? { max_age: String(maxAge) } : {}),
      });
      // Earlier logins of this browser stay valid (another tab may be on the provider's page).
      const states = [state, ...loginStates(req)].slice(0, MAX_LOGINS_IN_FLIGHT);
      redirect(res, url.href, [hostCookie(LOGIN_COOKIE, states.join('.'), LOGIN_TTL_S)]);
    } catch (e) {
      log?.error({ err: e }, 'access login: could not start');
      sendPage(res, 503, 'Sign-in unavailable', '<p>Sign-in cannot start right now. Try again shortly.</p>');
    }
  };

  const callback = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => {
    const url = new URL(req.url ?? '/', ctx.origin);
    // The login cookie is cleared once its state is spent; a forged callback must not break a login in flight.
    let spent = false;
    const states = loginStates(req);
    const state = url.searchParams.get('state');
    try {
      if (!state) throw new LoginRefusedError('missing_state');
      if (states.length === 0) throw new LoginRefusedError('missing_login_cookie');
      // Compared as hashes, each in constant time, and all of them: no early exit tells which matched.
      const a = Buffer.from(sha256Hex(state));
      let match = false;
      for (const s of states) match = timingSafeEqual(a, Buffer.from(sha256Hex(s))) || match;
      if (!match) throw new LoginRefusedError('state_mismatch');
      spent = true;
      const sealed = await repo.takeLoginState(state, ctx.host);
      if (sealed === undefined) throw new LoginRefusedError('unknown_or_used_state');
      const login = unseal<LoginState>(sealed, `login:${sha256Hex(state)}`);
      if (login.host !== ctx.host) throw new LoginRefusedError('state_wrong_host');
      const tokens = await oidc.authorizationCodeGrant(
        provider.config,
        new URL(`${ctx.origin}${CALLBACK_PATH}${url.search}`),
        {
          pkceCodeVerifier: login.verifier,
          expectedState: state,
          expectedNonce: login.nonce,
          idTokenExpected: true,
          // With max_age asked, the ID token must carry an auth_time within it (OIDC Core §3.1.3.7).
          ...(login.maxAge !== undefined ? { maxAge: login.maxAge } : {}),
        },
      );
      const claims = tokens.claims();
      if (!claims) throw new LoginRefusedError('no_id_token');
      const person = personOf(claims as jose.JWTPayload);
      const token = randomBytes(32).toString('base64url');
      const id = `s_${randomBytes(16).toString('hex')}`;
      const now = Date.now();
      const expiresIn = tokens.expiresIn();
      const provTokens: ProviderTokens = {
        ...(tokens.refresh_token ? { refresh_token: tokens.refresh_token } : {}),
        ...(tokens.id_token ? { id_token: tokens.id_token } : {}),
      };
      await repo.create(token, {
        id,
        host: ctx.host,
        issuer: person.issuer,
        sub: person.sub,
        userName: person.user ?? userOf(person),
        providerSid: typeof claims.sid === 'string' ? claims.sid : null,
        person: JSON.stringify(person),
        tokens: seal(provTokens, `session:${id}`),
        tokenExpiresAt: expiresIn === undefined ? null : now + expiresIn * 1000,
        createdAt: now,
        expiresAt: now + absoluteMs,
        lastSeenAt: now,
        deviceId: ctx.deviceId ?? null,
      });
      audit({
        kind: 'access.login',
        outcome: 'allow',
        source: { user: userOf(person), ip: ctx.ip },
        target: { host: ctx.host },
        details: {
          session: id,
          amr: person.amr,
          ...(person.acr !== undefined ? { acr: person.acr } : {}),
          mfa: person.mfa === true,
          ...(ctx.deviceId !== undefined ? { device: ctx.deviceId } : {}),
        },
      });
      // The browser's previous session on this host (a provider step-up, or another person signing in
      // here) is replaced by this one: it ends now instead of living on unseen until it expires.
      const previous = readCookie(req, cookieName);
      if (previous !== undefined && TOKEN_RE.test(previous)) {
        const old = cache.get(sha256Hex(previous))?.record ?? (await repo.findByToken(previous));
        if (old && old.endedAt === null && old.host === ctx.host && (await repo.end(old.id, 'replaced'))) {
          evict(old.id);
          audit({
            kind: 'access.logout',
            outcome: 'allow',
            reason: 'replaced by a new sign-in',
            source: { user: old.userName ?? old.sub, ip: ctx.ip },
            target: { host: ctx.host },
            details: { session: old.id, replaced_by: id },
          });
        }
      }
      redirect(res, `${ctx.origin}${login.returnTo}`, [
        hostCookie(cookieName, token, absoluteMs / 1000),
        withoutState(states, state),
      ]);
    } catch (e) {
      const reason = failureReason(e);
      if (!(e instanceof LoginRefusedError))
        log?.warn({ reason, err: e instanceof Error ? e.message : String(e) }, 'access login refused');
      audit({ kind: 'access.login', outcome: 'deny', reason, source: { ip: ctx.ip }, target: { host: ctx.host } });
      sendPage(
        res,
        400,
        'Sign-in failed',
        `<p>Sign-in could not be completed (${escapeHtml(reason)}).</p><p><a href="/">Start again</a></p>`,
        spent && state ? [withoutState(states, state)] : [],
      );
    }
  };

  // ---------- logout ----------

  // Not a form, too large or aborted: an empty form, which the CSRF or token check refuses.
  const readForm = (req: IncomingMessage): Promise<URLSearchParams | undefined> =>
    readFormBody(req, { limit: FORM_LIMIT, timeoutMs: 10_000 }).catch(() => undefined);

  const signOut = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => {
    const token = readCookie(req, cookieName);
    const who = token === undefined ? undefined : await identify(req, ctx);
    if (!token || who?.kind !== 'session') {
      if (token) {
        redirect(res, `${ctx.origin}${SIGNED_OUT_PATH}`, [clearCookie(cookieName)]);
        return;
      }
      sendPage(res, 200, 'Not signed in', '<p>You are not signed in.</p>');
      return;
    }
    const csrf = csrfFor(token);
    const endSession = provider.config.serverMetadata().end_session_endpoint;
    if (req.method === 'GET') {
      sendPage(
        res,
        200,
        'Sign out',
        `<form method="post" action="${SIGN_OUT_PATH}"><input type="hidden" name="csrf" value="${csrf}">` +
          '<button type="submit">Sign out</button></form>',
        [],
        // The post is answered with a redirect to the provider's logout.
        endSession ? [new URL(endSession).origin] : [],
      );
      return;
    }
    const form = (await readForm(req)) ?? new URLSearchParams();
    const given = Buffer.from(sha256Hex(form.get('csrf') ?? ''));
    if (!timingSafeEqual(given, Buffer.from(sha256Hex(csrf)))) {
      sendPage(res, 403, 'Sign out refused', '<p>The sign-out form expired. Open the sign-out page again.</p>');
      return;
    }
    const cached = cache.get(sha256Hex(token));
    const record = cached ? cached.record : await repo.findByToken(token);
    await repo.end(who.sessionId, 'logout');
    evict(who.sessionId);
    audit({
      kind: 'access.logout',
      outcome: 'allow',
      source: { user: userOf(who.person), ip: ctx.ip },
      target: { host: ctx.host },
      details: { session: who.sessionId },
    });
    let location = `${ctx.origin}${SIGNED_OUT_PATH}`;
    if (endSession) {
      const idToken = record ? unseal<ProviderTokens>(record.tokens, `session:${record.id}`).id_token : undefined;
      location = oidc.buildEndSessionUrl(provider.config, {
        post_logout_redirect_uri: location,
        ...(idToken ? { id_token_hint: idToken } : {}),
      }).href;
    }
    redirect(res, location, [clearCookie(cookieName)]);
  };

  const backchannelLogout = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => {
    const refuse = (why: string) => {
      log?.warn({ reason: why }, 'access back-channel logout refused');
      sendJson(res, 400, { error: 'invalid_request', error_description: why });
    };
    const form = await readForm(req);
    const logoutToken = form?.get('logout_token');
    if (!logoutToken) return refuse('logout_token missing');
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(logoutToken, provider.jwks, {
        issuer: provider.issuer,
        audience: cfg.client_id,
        algorithms: provider.algorithms,
        clockTolerance: CLOCK_SKEW_S,
        maxTokenAge: '5m',
        requiredClaims: ['iat', 'jti'],
      }));
    } catch (e) {
      return refuse(`logout_token refused (${(e as { code?: string }).code ?? 'invalid'})`);
    }
    const events = payload.events;
    if (typeof events !== 'object' || events === null || !(BACKCHANNEL_EVENT in events)) {
      return refuse('logout_token has no back-channel logout event');
    }
    if ('nonce' in payload) return refuse('logout_token must not carry a nonce');
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    if (!sid && !sub) return refuse('logout_token has neither sid nor sub');
    if (!(await repo.rememberLogoutToken(payload.jti as string, Date.now() + 10 * 60_000))) {
      return refuse('logout_token replayed');
    }
    const ended = sid
      ? await repo.endByProviderSid(provider.issuer, sid, 'backchannel_logout')
      : await repo.endBySub(provider.issuer, sub as string, 'backchannel_logout');
    for (const id of ended) {
      evict(id);
      sessionEnded(id, 'backchannel_logout', { ip: ctx.ip, host: ctx.host }, sub);
    }
    res.setHeader('Cache-Control', 'no-store');
    res.writeHead(200);
    res.end();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<boolean> => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const method = req.method ?? 'GET';
    const only = (allowed: string[]) => {
      if (allowed.includes(method)) return true;
      res.setHeader('Allow', allowed.join(', '));
      sendPage(res, 405, 'Method not allowed', '');
      return false;
    };
    try {
      if (path === CALLBACK_PATH) {
        if (only(['GET'])) await callback(req, res, ctx);
      } else if (path === SIGN_OUT_PATH) {
        if (only(['GET', 'POST'])) await signOut(req, res, ctx);
      } else if (path === SIGNED_OUT_PATH) {
        if (only(['GET'])) sendPage(res, 200, 'Signed out', '<p>You are signed out.</p>');
      } else if (path === BACKCHANNEL_LOGOUT_PATH) {
        if (only(['POST'])) await backchannelLogout(req, res, ctx);
      } else return false;
    } catch (e) {
      log?.error({ err: e, path }, 'access own endpoint failed');
      if (!res.headersSent) sendPage(res, 500, 'Something went wrong', '<p>Try again shortly.</p>');
      else res.destroy();
    }
    return true;
  };

  return {
    identify,
    handle,
    startLogin,
    userOf,
    elevate,
    csrfToken,
    kek,
    evict,
    // The proxy strips these before forwarding: an app must never hold a session it could replay.
    credentialCookies: [cookieName, LOGIN_COOKIE],
    async close() {
      clearInterval(purge);
      await follower.stop();
    },
  };
}
