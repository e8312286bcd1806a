/**
 * The built-in OpenID provider (`nevertrust idp`, and `nevertrust up` in-process) on oidc-provider 8:
 * code flow with PKCE S256 only, people from the store's users, its own login page, implicit consent
 * for the configured (first-party) clients, refresh tokens, RP-initiated and back-channel logout.
 * Its models and keys live in the store, so a restart keeps sessions, refresh tokens and key ids.
 */
import { readFormBody } from '../../util/http-body.js';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer } from 'node:https';
import { rootCertificates } from 'node:tls';
import Provider, {
  type Account,
  type ClientMetadata,
  type Configuration,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import { USERNAME_PATTERN } from '../../api/users.js';
import type { AuditEventInput } from '../../audit/index.js';
import { NevertrustError } from '../../errors.js';
import type { Store } from '../../store/index.js';
import { localhostLookup } from '../../util/localhost-lookup.js';
import { storeAdapter } from './adapter.js';
import { type AttemptLimits, clientIp, DEFAULT_ATTEMPT_LIMITS, LoginAttempts } from './attempts.js';
import type { Kek } from '../../ca/kek.js';
import { type IdpKeys, loadOrCreateKeys, rotateSigningKey } from './keys.js';
import { errorPage, loginPage, logoutPage, STYLESHEET, STYLESHEET_PATH, signedOutPage } from './pages.js';
import { verifyPassword } from './password.js';

/** The `acr` of a password login (no second factor yet). */
export const PASSWORD_ACR = 'urn:nevertrust:acr:pwd';

export interface IdpClient {
  client_id: string;
  /** Absent: a public client (PKCE alone, no secret). */
  client_secret?: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  /** Receives a signed logout_token when the person's provider session ends. */
  backchannel_logout_uri?: string;
}

export interface IdentityProviderOptions {
  /** The issuer URL, e.g. `https://idp.example.test:9443` (no path: the provider serves from `/`). */
  issuer: string;
  listen: { host: string; port: number };
  /** PEM certificate chain and key to serve HTTPS; `false` serves plain HTTP (tests, behind TLS only). */
  tls: { cert: string; key: string } | false;
  store: Store;
  /** Seals the provider's signing and cookie keys in the store (the server's KEK: `loadOrCreateKek`). */
  kek: Kek;
  clients: IdpClient[];
  /** Where `idp.login` events go (an AuditRecorder's `record`). */
  record?: (event: AuditEventInput) => void;
  /** Extra CA certificates (PEM) trusted when POSTing back-channel logout tokens to clients. */
  outboundCa?: string;
  attempts?: Partial<AttemptLimits>;
  /** Told about the provider's internal errors (answered 500 without detail); for the log. */
  onError?: (err: Error) => void;
}

export interface RunningIdentityProvider {
  readonly issuer: string;
  /** Where it listens (the bound port, when 0 was asked). */
  readonly url: string;
  /** Adds a new ES256 signing key (it signs from now on); older keys stay in the JWKS. */
  rotateKeys(): Promise<void>;
  close(): Promise<void>;
}

/** The provider's options do not make sense (issuer, clients); names the field. */
export class IdpConfigError extends NevertrustError<'ERR_IDP_CONFIG'> {
  override readonly name = 'IdpConfigError';
  readonly code = 'ERR_IDP_CONFIG';
  constructor(message: string) {
    super(message, { status: 400 });
  }
}

const INTERACTION_PREFIX = '/interaction/';
const BAD_CREDENTIALS = 'Invalid username or password.';
const MAX_FORM_BYTES = 8 * 1024;

function checkOptions(o: IdentityProviderOptions): URL {
  let issuer: URL;
  try {
    issuer = new URL(o.issuer);
  } catch {
    throw new IdpConfigError(`issuer: "${o.issuer}" is not a URL`);
  }
  if (issuer.pathname !== '/' || issuer.search || issuer.hash) {
    throw new IdpConfigError(`issuer: "${o.issuer}" must have no path, query or fragment (the provider serves from /)`);
  }
  if (issuer.protocol !== 'https:' && o.tls !== false)
    throw new IdpConfigError('issuer: must be https:// when tls is set');
  if (o.clients.length === 0) throw new IdpConfigError('clients: at least one client is needed');
  const ids = new Set<string>();
  for (const [i, c] of o.clients.entries()) {
    if (ids.has(c.client_id)) throw new IdpConfigError(`clients.${i}.client_id: "${c.client_id}" appears twice`);
    ids.add(c.client_id);
    if (c.redirect_uris.length === 0) throw new IdpConfigError(`clients.${i}.redirect_uris: at least one is needed`);
  }
  return issuer;
}

function clientMetadata(c: IdpClient): ClientMetadata {
  return {
    client_id: c.client_id,
    ...(c.client_secret !== undefined && { client_secret: c.client_secret }),
    token_endpoint_auth_method: c.client_secret !== undefined ? 'client_secret_basic' : 'none',
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    ...(c.backchannel_logout_uri !== undefined && {
      backchannel_logout_uri: c.backchannel_logout_uri,
      backchannel_logout_session_required: true,
    }),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'ES256',
  };
}

/** The strict CSP of the provider's pages; forms may post (and redirect) only to itself and the clients. */
function contentSecurityPolicy(clients: IdpClient[]): string {
  const origins = new Set<string>();
  for (const c of clients) {
    for (const u of [...c.redirect_uris, ...(c.post_logout_redirect_uris ?? [])]) {
      try {
        origins.add(new URL(u).origin);
      } catch {}
    }
  }
  return [
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self'",
    `form-action 'self' ${[...origins].join(' ')}`.trim(),
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

function securityHeaders(res: ServerResponse, csp: string): void {
  res.setHeader('Content-Security-Policy', csp);
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
}

/**
 * Starts the provider.
 *
 * @example
 * ```ts
 * const idp = await startIdentityProvider({
 *   issuer: 'https://idp.example.test:9443', listen: { host: '0.0.0.0', port: 9443 },
 *   tls: { cert, key }, store, record: (e) => recorder.record(e),
 *   clients: [{ client_id: 'access-proxy', client_secret, redirect_uris: ['https://app.example.test/.nevertrust/callback'] }],
 * });
 * ```
 */
export async function startIdentityProvider(o: IdentityProviderOptions): Promise<RunningIdentityProvider> {
  const issuerUrl = checkOptions(o);
  const issuer = issuerUrl.href.replace(/\/$/, '');
  const { store } = o;
  const record = o.record ?? (() => {});
  const attempts = new LoginAttempts({ ...DEFAULT_ATTEMPT_LIMITS, ...o.attempts });
  const csp = contentSecurityPolicy(o.clients);
  // `*.localhost` clients (the local mesh's proxy) are reached on loopback, as RFC 6761 asks.
  const outboundAgent = o.outboundCa
    ? new HttpsAgent({ ca: [...rootCertificates, o.outboundCa], lookup: localhostLookup })
    : undefined;

  const findAccount = async (_ctx: KoaContextWithOIDC, sub: string): Promise<Account | undefined> => {
    // Consulted on every use (login, code exchange, refresh, userinfo): a disabled or removed person
    // gets nothing more, refresh tokens included.
    const user = await store.users.get(sub);
    if (!user || user.disabled) return undefined;
    return {
      accountId: user.username,
      claims: () => ({
        sub: user.username,
        ...(user.email !== undefined && { email: user.email, email_verified: true }),
        ...(user.name !== undefined && { name: user.name }),
        groups: user.groups,
      }),
    };
  };

  const build = (keys: IdpKeys): Provider => {
    const configuration: Configuration = {
      adapter: storeAdapter(store),
      clients: o.clients.map(clientMetadata),
      jwks: { keys: keys.signing as NonNullable<Configuration['jwks']>['keys'] },
      cookies: { keys: keys.cookies, long: { signed: true }, short: { signed: true } },
      findAccount,
      scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
      // `groups` with `profile` too, so relying parties that ask only for the standard scopes get them.
      claims: {
        acr: null,
        amr: null,
        auth_time: null,
        sid: null,
        // With `openid`, i.e. in every ID token: the proxy's policy sees how the person logged in.
        openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
        email: ['email', 'email_verified'],
        profile: ['name', 'groups'],
        groups: ['groups'],
      },
      // Claims in the ID token itself (the proxy decides on them without a userinfo call).
      conformIdTokenClaims: false,
      responseTypes: ['code'],
      pkce: { required: () => true, methods: ['S256'] },
      acrValues: [PASSWORD_ACR],
      enabledJWA: { idTokenSigningAlgValues: ['ES256', 'RS256'] },
      features: {
        devInteractions: { enabled: false },
        revocation: { enabled: true },
        backchannelLogout: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx, form) => {
            securityHeaders(ctx.res, csp);
            ctx.type = 'html';
            ctx.body = logoutPage(form);
          },
          postLogoutSuccessSource: async (ctx) => {
            securityHeaders(ctx.res, csp);
            ctx.type = 'html';
            ctx.body = signedOutPage();
          },
        },
      },
      interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
      // Consent is implicit: every configured client is first-party. The grant gets what was asked.
      loadExistingGrant: async (ctx) => {
        const { oidc } = ctx;
        if (!oidc.client || !oidc.session?.accountId) return undefined;
        const existing = oidc.session.grantIdFor(oidc.client.clientId);
        const grant = existing
          ? await oidc.provider.Grant.find(existing)
          : new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
        if (!grant) return undefined;
        const scope = oidc.params?.scope;
        if (typeof scope === 'string') grant.addOIDCScope(scope);
        await grant.save();
        return grant;
      },
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      clientBasedCORS: () => false,
      renderError: async (ctx, out) => {
        securityHeaders(ctx.res, csp);
        ctx.type = 'html';
        ctx.body = errorPage(String(out.error), out.error_description ? String(out.error_description) : undefined);
      },
      ...(outboundAgent && { httpOptions: () => ({ agent: outboundAgent }) }),
      ttl: {
        AccessToken: 600,
        AuthorizationCode: 60,
        IdToken: 600,
        Interaction: 600,
        Grant: 14 * 86400,
        Session: 14 * 86400,
        RefreshToken: 14 * 86400,
      },
    };
    const provider = new Provider(issuer, configuration);
    // Plain HTTP is only for running behind a TLS-terminating proxy: trust its X-Forwarded-Proto, so
    // cookies stay Secure and endpoints https.
    provider.proxy = o.tls === false;
    // Every ID token carries `sid` (the proxy ties its session to the provider's), not only those
    // of clients registered for back-channel logout.
    provider.Client.prototype.includeSid = () => true;
    provider.on('server_error', (_ctx: unknown, err: Error) => o.onError?.(err));
    return provider;
  };

  const keys = await loadOrCreateKeys(store, o.kek);
  let provider = build(keys);
  // Built once per provider instance: koa composes its middleware in callback().
  let providerHandler = provider.callback();

  const csrfKey = keys.cookies[0] ?? '';
  // The login form's CSRF token: bound to the interaction (whose cookie the browser holds).
  const csrfFor = (uid: string) => createHmac('sha256', csrfKey).update(`login:${uid}`).digest('base64url');
  const csrfOk = (uid: string, token: string | null) => {
    const want = Buffer.from(csrfFor(uid));
    const got = Buffer.from(token ?? '');
    return got.length === want.length && timingSafeEqual(got, want);
  };

  const loginEvent = (ip: string, username: string, outcome: 'allow' | 'deny', reason: string, client?: string) =>
    record({
      kind: 'idp.login',
      outcome,
      source: { ip, ...(username && { user: username.slice(0, 256) }) },
      target: { service: client ?? 'idp', resource: 'login' },
      reason,
    });

  const interaction = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    securityHeaders(res, csp);
    const html = (status: number, body: string) => {
      res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(body);
    };
    if (path === STYLESHEET_PATH && req.method === 'GET') {
      res.setHeader('Cache-Control', 'public, max-age=3600');
      res.writeHead(200, { 'Content-Type': 'text/css; charset=utf-8' });
      res.end(STYLESHEET);
      return;
    }
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      return html(400, errorPage('This sign-in link has expired', 'start again from the application'));
    }
    const { uid, prompt, params } = details;
    const client = typeof params.client_id === 'string' ? params.client_id : undefined;
    const action = `${INTERACTION_PREFIX}${uid}/login`;
    if (path !== `${INTERACTION_PREFIX}${uid}` && path !== action) return html(404, errorPage('not found'));
    if (prompt.name !== 'login') {
      // Consent is implicit (loadExistingGrant); any other prompt means the grant needs (re)creating.
      await provider.interactionFinished(req, res, { consent: {} }, { mergeWithLastSubmission: true });
      return;
    }
    if (req.method === 'GET' && path === `${INTERACTION_PREFIX}${uid}`) {
      return html(200, loginPage({ action, csrf: csrfFor(uid), client }));
    }
    if (req.method !== 'POST' || path !== action) return html(405, errorPage('method not allowed'));
    const ip = clientIp(req, o.tls === false);
    // Not a form, too large or aborted: no form, which the CSRF check below refuses.
    const form = await readFormBody(req, { limit: MAX_FORM_BYTES, timeoutMs: 10_000 }).catch(() => undefined);
    const username = (form?.get('username') ?? '').trim();
    const password = form?.get('password') ?? '';
    if (!form || !csrfOk(uid, form.get('csrf'))) {
      loginEvent(ip, username, 'deny', 'csrf token missing or wrong', client);
      return html(403, errorPage('This form has expired', 'reload the sign-in page and try again'));
    }
    const limited = attempts.limited(ip, username);
    if (limited) {
      loginEvent(ip, username, 'deny', `too many failed attempts for this ${limited}`, client);
      res.setHeader('Retry-After', '900');
      return html(
        429,
        loginPage({ action, csrf: csrfFor(uid), username, client, error: 'Too many attempts; try again later.' }),
      );
    }
    // Only a well-formed username reaches the store; anything else is an unknown user.
    const user = USERNAME_PATTERN.test(username) ? await store.users.get(username) : undefined;
    // Always one scrypt, user or not, so the answer's timing does not tell which usernames exist.
    const ok = await verifyPassword(password, user?.passwordHash);
    if (!user || !ok || user.disabled) {
      attempts.failed(ip, username);
      const reason = !user ? 'unknown user' : !ok ? 'wrong password' : 'user disabled';
      loginEvent(ip, username, 'deny', reason, client);
      return html(401, loginPage({ action, csrf: csrfFor(uid), username, client, error: BAD_CREDENTIALS }));
    }
    attempts.succeeded(username);
    loginEvent(ip, username, 'allow', 'password', client);
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.username, amr: ['pwd'], acr: PASSWORD_ACR, remember: true } },
      { mergeWithLastSubmission: false },
    );
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith(INTERACTION_PREFIX)) {
      interaction(req, res, path).catch((e: unknown) => {
        o.onError?.(e instanceof Error ? e : new Error(String(e)));
        if (!res.headersSent) {
          res.writeHead(500, { 'Content-Type': 'text/html; charset=utf-8' });
          res.end(errorPage('internal error'));
        } else res.destroy();
      });
      return;
    }
    providerHandler(req, res);
  };

  const server: Server = o.tls === false ? createHttpServer(handler) : createHttpsServer({ ...o.tls }, handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.listen.port;
  const host = o.listen.host.includes(':') ? `[${o.listen.host}]` : o.listen.host;

  return {
    issuer,
    url: `${o.tls === false ? 'http' : 'https'}://${host}:${port}`,
    async rotateKeys() {
      provider = build(await rotateSigningKey(store, o.kek));
      providerHandler = provider.callback();
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      outboundAgent?.destroy();
    },
  };
}
