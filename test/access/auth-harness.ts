/**
 * Real parts for the authenticator's tests: an `oidc-provider` 8 instance over HTTPS (ES256 keys, a
 * confidential client, devInteractions), app servers (`node:https`) that put an Authenticator in
 * front of a JSON "who am I" answer, and a small browser (fetch + a cookie jar per origin) that walks
 * the provider's login and consent forms.
 */
import { type KeyObject, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, Agent as HttpsAgent, type Server } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as jose from 'jose';
import Provider, { type Configuration } from 'oidc-provider';
import { Agent, fetch } from 'undici';
import type { AuditEventInput } from '../../src/audit/event.js';
import { type OidcAuthConfigInput, oidcAuthConfigSchema } from '../../src/access/auth/config.js';
import { createOidcAuthenticator, type OidcAuthenticator } from '../../src/access/auth/index.js';
import { OWN_PATH_PREFIX, type RequestContext } from '../../src/access/identity.js';
import type { Store } from '../../src/store/index.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/cli.js';
import { makePki } from '../pep/pki.js';

export const CLIENT_ID = 'access-proxy';
export const CLIENT_SECRET = 'a-long-client-secret-for-tests-only-0123456789';

export interface Account {
  sub: string;
  email: string;
  name: string;
  groups: string[];
  disabled?: boolean;
}

export interface TestIdp {
  issuer: string;
  caFile: string;
  accounts: Map<string, Account>;
  /** The provider's signing key: tests sign bearer and logout tokens as the provider would. */
  privateKey: KeyObject;
  kid: string;
  provider: Provider;
  close(): Promise<void>;
}

export interface AppServer {
  host: string;
  origin: string;
  auth: OidcAuthenticator | undefined;
  close(): Promise<void>;
}

/** TLS material for everything on localhost, from one test CA. */
export async function makeTls(dir: string): Promise<{ cert: string; key: string; caFile: string }> {
  const pki = await makePki(dir);
  const svid = pki.mint('localhost', { dnsNames: ['localhost'] });
  return { cert: svid.certChainPem, key: svid.privateKeyPem, caFile: pki.bundleFile(dir) };
}

/** App servers are started first: their callback URLs must be registered at the provider. */
export async function startApp(tls: { cert: string; key: string }, host: string): Promise<AppServer> {
  const port = await freePort();
  const origin = `https://localhost:${port}`;
  const app: AppServer = { host, origin, auth: undefined, close: async () => {} };
  const server: Server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    void (async () => {
      const auth = app.auth;
      if (!auth) {
        res.writeHead(503).end();
        return;
      }
      const ctx: RequestContext = { host: app.host, origin, ip: req.socket.remoteAddress ?? '' };
      const url = new URL(req.url ?? '/', origin);
      if (url.pathname.startsWith(OWN_PATH_PREFIX)) {
        if (!(await auth.handle(req, res, ctx))) res.writeHead(404).end();
        return;
      }
      if (url.pathname === '/login') {
        // `acr_values`, `max_age`, `prompt`: a step-up at the provider.
        const q = url.searchParams;
        const acr = q.get('acr_values');
        const maxAge = q.get('max_age');
        const prompt = q.get('prompt');
        await auth.startLogin(req, res, ctx, q.get('return_to') ?? '/', {
          ...(acr ? { acrValues: acr.split(' ') } : {}),
          ...(maxAge ? { maxAge: Number(maxAge) } : {}),
          ...(prompt ? { prompt } : {}),
        });
        return;
      }
      const who = await auth.identify(req, ctx);
      res.writeHead(who.kind === 'session' || who.kind === 'bearer' ? 200 : 401, {
        'Content-Type': 'application/json',
      });
      res.end(JSON.stringify(who));
    })().catch((e: unknown) => {
      res.writeHead(500).end(String(e));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  app.close = () => new Promise<void>((r) => server.close(() => r()));
  return app;
}

export async function startIdp(
  tls: { cert: string; key: string; caFile: string },
  apps: AppServer[],
  opts: { accessTokenTtl?: number } = {},
): Promise<TestIdp> {
  const port = await freePort();
  const issuer = `https://localhost:${port}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-es256', alg: 'ES256', use: 'sig' };
  const accounts = new Map<string, Account>();
  const config: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: apps.map((a) => `${a.origin}/.nevertrust/callback`),
        post_logout_redirect_uris: apps.map((a) => `${a.origin}/.nevertrust/signed_out`),
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        id_token_signed_response_alg: 'ES256',
        backchannel_logout_uri: `${apps[0]?.origin}/.nevertrust/backchannel-logout`,
        backchannel_logout_session_required: true,
      },
    ],
    jwks: { keys: [jwk as never] },
    claims: { openid: ['sub'], email: ['email'], profile: ['name', 'groups'] },
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: { AccessToken: opts.accessTokenTtl ?? 3600, IdToken: 3600, RefreshToken: 86400, Session: 86400, Grant: 86400 },
    async findAccount(_ctx, id) {
      const a = accounts.get(id);
      if (!a || a.disabled) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: a.sub, email: a.email, name: a.name, groups: a.groups };
        },
      };
    },
    cookies: { keys: ['cookie-key-for-tests-only'] },
    // The provider's back-channel logout calls reach the apps over TLS from the test CA.
    httpOptions: () => ({ agent: new HttpsAgent({ ca: readFileSync(tls.caFile, 'utf8') }) }),
  };
  const provider = new Provider(issuer, config);
  provider.on('server_error', () => {});
  const server = createServer({ cert: tls.cert, key: tls.key }, provider.callback());
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    issuer,
    caFile: tls.caFile,
    accounts,
    privateKey,
    kid: jwk.kid,
    provider,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** An authenticator on `store` for `app`, with its audit events collected in `events`. */
export async function attach(
  app: AppServer,
  idp: TestIdp,
  store: Store,
  dir: string,
  overrides: Omit<Partial<OidcAuthConfigInput>, 'session'> & { session?: Partial<OidcAuthConfigInput['session']> } = {},
  events: AuditEventInput[] = [],
  logLines: string[] = [],
  cacheSize?: number,
): Promise<OidcAuthenticator> {
  const keyFile = join(dir, 'session.key');
  const cfg = oidcAuthConfigSchema.parse({
    issuer: idp.issuer,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    ca_file: idp.caFile,
    change_feed_interval_ms: 100,
    ...overrides,
    session: { key_file: keyFile, ...overrides.session },
  });
  const logger = createLogger(
    'debug',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString());
        done();
      },
    }),
  );
  const auth = await createOidcAuthenticator(cfg, {
    sessions: store.accessSessions,
    record: (e) => events.push(e),
    logger,
    ...(cacheSize !== undefined ? { cacheSize } : {}),
  });
  app.auth = auth;
  return auth;
}

/** fetch through the test CA, never following redirects. */
export function testFetch(caFile: string) {
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
  return (url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
    fetch(url, { ...init, redirect: 'manual', dispatcher });
}

/** A browser: one cookie jar per origin, manual redirects. */
export class Browser {
  readonly jars = new Map<string, Map<string, string>>();
  readonly fetch: ReturnType<typeof testFetch>;
  constructor(caFile: string) {
    this.fetch = testFetch(caFile);
  }

  jar(origin: string): Map<string, string> {
    let j = this.jars.get(origin);
    if (!j) {
      j = new Map();
      this.jars.set(origin, j);
    }
    return j;
  }

  async request(url: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
    const u = new URL(url);
    const jar = this.jar(u.origin);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await this.fetch(url, {
      ...init,
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(init.body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...init.headers,
      },
    });
    for (const sc of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (gone || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }

  /**
   * Logs in at `app` as `login`, walking the provider's forms, and stops at the app's callback.
   * Returns the callback URL (not yet visited) so tests can tamper with it.
   */
  async toCallback(app: AppServer, login: string, returnTo = '/'): Promise<string> {
    let res = await this.request(`${app.origin}/login?return_to=${encodeURIComponent(returnTo)}`);
    for (let i = 0; i < 20; i++) {
      const location = res.headers.get('location');
      if (location) {
        const next = new URL(location, res.url);
        if (next.origin === app.origin && next.pathname === '/.nevertrust/callback') return next.href;
        res = await this.request(next.href);
        continue;
      }
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
      if (!action) throw new Error(`no form at ${res.url} (${res.status}): ${html.slice(0, 300)}`);
      const form = new URLSearchParams();
      for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g))
        form.set(m[1] ?? '', m[2] ?? '');
      if (/name="login"/.test(html)) {
        form.set('login', login);
        form.set('password', 'any');
      }
      res = await this.request(new URL(action, res.url).href, { method: 'POST', body: form.toString() });
    }
    throw new Error('login did not reach the callback');
  }

  /** The whole login; returns the callback's response (302 to the return path). */
  async login(app: AppServer, login: string, returnTo = '/') {
    return this.request(await this.toCallback(app, login, returnTo));
  }

  async whoami(app: AppServer, headers: Record<string, string> = {}) {
    const res = await this.request(`${app.origin}/whoami`, { headers });
    return {
      status: res.status,
      body: (await res.json()) as Record<string, unknown> & { kind: string; code?: string },
    };
  }
}
