/**
 * The people's-access stack for the end-to-end tests, made of the real parts: a server (CA, assertion
 * key registry and JWKS), the built-in OpenID provider with users in a real store, the OIDC
 * authenticator, the access proxy over HTTPS with a certificate from the server's CA and the example
 * back-office policies, and an upstream app that counts what reaches it and verifies every assertion
 * against the server's JWKS. Each test file builds one stack and shares it across its tests.
 */
import { escapeHtml } from '../../../src/util/html.js';
import { randomBytes } from 'node:crypto';
import { Kek } from '../../../src/ca/kek.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import {
  createOidcAuthenticator,
  type OidcAuthConfigInput,
  type OidcAuthenticator,
  oidcAuthConfigSchema,
} from '../../../src/access/auth/index.js';
import { hashPassword, type RunningIdentityProvider, startIdentityProvider } from '../../../src/access/idp/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { certificatesToPem } from '../../../src/ca/index.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { assertionKeySet, type VerifiedPersonAssertion, verifyPersonAssertion } from '../../../src/pep/assertion.js';
import { MemorySvidSource } from '../../../src/pep/mtls/index.js';
import { type PersonClient, parseForm } from '../../../src/mesh/people-client.js';
import type { RunningServer } from '../../../src/server/index.js';
import type { Store } from '../../../src/store/index.js';
import { type AssertionServer, type AssertionServerOptions, startAssertionServer } from '../../pep/assertion-server.js';
import { freePort } from '../../support/cli.js';

export const TD = 'example.org';
export const PROXY_ID = `spiffe://${TD}/ns/edge/sa/access-proxy`;
/** Browsers (Chromium, and PersonClient) resolve `*.localhost` to the loopback address. */
export const HOST = 'backoffice.localhost';
/** A second app's host on the same proxy (same policies), where back-office sessions must not work. */
export const OTHER_HOST = 'wiki.localhost';
export const POLICIES = resolve('examples/policies/people');
export const CLIENT_ID = 'access-proxy';
export const CLIENT_SECRET = 'e2e-client-secret-0123456789';
/** The KEK the provider's keys are sealed under in these tests' stores. */
export const TEST_KEK = Kek.fromBytes(randomBytes(32));
export const SESSION_COOKIE = '__Host-nevertrust_session';

/** The people of the built-in provider: alice administers, bob is staff. */
export const PEOPLE = {
  alice: { password: 'alice correct horse battery', groups: ['admins', 'staff'] },
  bob: { password: 'bob staple battery horse', groups: ['staff'] },
} as const;

/** The trust domain: a real server with its CA (TLS for everyone here) and the assertion JWKS. */
export interface Trust {
  server: RunningServer;
  agentUrl: string;
  /** The server's data directory (its `admin.token`). */
  serverDataDir: string;
  caPem: string;
  /** The CA bundle as a file (the authenticator's `ca_file`). */
  caFile: string;
  /** A TLS certificate and key from the CA for these DNS names. */
  tlsFor(dnsNames: string[]): { cert: string; key: string };
  /** The proxy's SVID (serving TLS for `hosts`, registering its assertion key). */
  proxySource(hosts: string[]): MemorySvidSource;
  /** An X.509-SVID from the CA (a device's: `spiffe://example.org/device/<id>`), issued at `now`. */
  mint(spiffeId: string, opts?: { ttlSeconds?: number; now?: Date }): { cert: string; key: string; serial: string };
  close(): Promise<void>;
}

export async function startTrust(dir: string, opts: AssertionServerOptions = {}): Promise<Trust> {
  return trustOf(await startAssertionServer(TD, opts), dir);
}

/**
 * The {@link Trust} of a running server of {@link TD} with its CA plugin (the assertion server's, or
 * one with every plugin): the bundle is written to `dir/ca.pem`.
 */
export function trustOf(s: Pick<AssertionServer, 'server' | 'ca' | 'agentUrl' | 'dataDir'>, dir: string): Trust {
  const { server, ca, agentUrl, dataDir } = s;
  const bundle = ca.handle.current().bundle();
  const caPem = bundle.toPem();
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, caPem);
  const mint = (spiffeId: string, dnsNames: string[]) => {
    const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
    return {
      spiffeId,
      certChainPem: certificatesToPem(m.chain),
      privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
  };
  return {
    server,
    agentUrl,
    serverDataDir: dataDir,
    caPem,
    caFile,
    tlsFor(dnsNames) {
      const s = mint(`spiffe://${TD}/ns/people/sa/${dnsNames[0]?.replace(/[^a-z0-9-]/g, '-')}`, dnsNames);
      return { cert: s.certChainPem, key: s.privateKeyPem };
    },
    proxySource: (hosts) => new MemorySvidSource(mint(PROXY_ID, hosts), [bundle]),
    mint(spiffeId, opts = {}) {
      const m = ca.handle.current().mintX509Svid({ spiffeId, ttlSeconds: opts.ttlSeconds ?? 3600 }, opts.now);
      return {
        cert: certificatesToPem(m.chain),
        key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        serial: m.serialHex,
      };
    },
    close: () => server.close(),
  };
}

/** What reached the app: the request, and what the app made of the assertion. */
export interface Hit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The verified assertion; absent when it did not verify (`error` says why). */
  who?: VerifiedPersonAssertion;
  error?: string;
}

export interface App {
  port: number;
  hits: Hit[];
  close(): void;
}

const esc = escapeHtml;

/**
 * The internal app: verifies `X-Nevertrust-Jwt-Assertion` against the server's JWKS (audience by
 * the route its path belongs to), counts every request, and shows who it verified.
 */
export async function startApp(trust: Trust): Promise<App> {
  const keys = assertionKeySet(trust.server.url, PROXY_ID);
  const hits: Hit[] = [];
  const server: Server = createServer((req, res) => {
    const hit: Hit = { method: req.method ?? '', url: req.url ?? '', headers: req.headers };
    hits.push(hit);
    const path = new URL(req.url ?? '/', 'http://app').pathname;
    // The route's host, as the proxy tells it (the Host header is the upstream's).
    const host = String(req.headers['x-forwarded-host'] ?? '').replace(/:\d+$/, '');
    const audience = path === '/app' || path.startsWith('/app/') ? `https://${host}/app` : `https://${host}`;
    const token = req.headers['x-nevertrust-jwt-assertion'];
    void (async () => {
      try {
        if (typeof token !== 'string') throw new Error('no assertion');
        hit.who = await verifyPersonAssertion(token, keys, { issuer: PROXY_ID, audience });
      } catch (e) {
        hit.error = (e as Error).message;
        res.writeHead(401, { 'content-type': 'text/plain' }).end(`assertion refused: ${hit.error}`);
        return;
      }
      const who = hit.who;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><title>back-office</title><h1 id="path">${esc(req.url ?? '')}</h1>` +
          `<p>Signed in as <b id="email">${esc(who.email ?? who.subject)}</b> (<span id="sub">${esc(who.subject)}</span>), ` +
          `groups <span id="groups">${esc(who.groups.join(','))}</span>, decision <span id="decision">${esc(who.decisionId)}</span></p>`,
      );
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    hits,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Adds {@link PEOPLE} to the store (the users the built-in provider logs in). */
export async function addPeople(store: Store): Promise<void> {
  for (const [username, p] of Object.entries(PEOPLE)) {
    await store.users.create({
      username,
      email: `${username}@example.com`,
      name: username,
      groups: [...p.groups],
      passwordHash: await hashPassword(p.password),
    });
  }
}

/** The built-in provider at `https://localhost:<port>`, with the proxy (at `origins`) as its client. */
export async function startBuiltinIdp(
  trust: Trust,
  store: Store,
  origins: string[],
  record?: (e: AuditEventInput) => void,
): Promise<RunningIdentityProvider> {
  const port = await freePort();
  return startIdentityProvider({
    kek: TEST_KEK,
    issuer: `https://localhost:${port}`,
    listen: { host: '127.0.0.1', port },
    tls: trust.tlsFor(['localhost']),
    store,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: origins.map((o) => `${o}/.nevertrust/callback`),
        post_logout_redirect_uris: origins.map((o) => `${o}/.nevertrust/signed_out`),
      },
    ],
    outboundCa: trust.caPem,
    ...(record ? { record } : {}),
  });
}

/** The OIDC authenticator against `issuer` (trusting only the test CA), sessions in `store`. */
export async function makeAuthenticator(
  trust: Trust,
  issuer: string,
  store: Store,
  dir: string,
  events: AuditEventInput[],
  overrides: Omit<Partial<OidcAuthConfigInput>, 'session'> = {},
): Promise<OidcAuthenticator> {
  mkdirSync(dir, { recursive: true });
  const cfg = oidcAuthConfigSchema.parse({
    issuer,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    ca_file: trust.caFile,
    scopes: ['openid', 'email', 'profile', 'groups'],
    change_feed_interval_ms: 100,
    ...overrides,
    session: { key_file: join(dir, 'session.key') },
  });
  return createOidcAuthenticator(cfg, { sessions: store.accessSessions, record: (e) => events.push(e) });
}

/**
 * The access proxy on `port` for {@link HOST} (`/` and `/app`) and {@link OTHER_HOST}, all to the app
 * and all the back-office service of examples/policies/people; decisions into `decisions`.
 */
export async function startProxy(
  trust: Trust,
  opts: { port: number; authenticator: OidcAuthenticator; appPort: number; decisions: AccessDecisionEvent[] },
): Promise<RunningAccessProxy> {
  const config = parseAccessProxyConfig({
    listen: `127.0.0.1:${opts.port}`,
    svid: { workload_api: 'unused' },
    policies: POLICIES,
    assertion: { server: trust.agentUrl, ttl_seconds: 60 },
    limits: { max_header_bytes: 16 * 1024 },
    routes: [
      { name: 'backoffice', from: { host: HOST }, to: `http://127.0.0.1:${opts.appPort}` },
      {
        name: 'wiki',
        from: { host: OTHER_HOST },
        to: `http://127.0.0.1:${opts.appPort}`,
        target: { service: 'backoffice' },
      },
      {
        name: 'backoffice-app',
        from: { host: HOST, path_prefix: '/app' },
        to: `http://127.0.0.1:${opts.appPort}`,
        target: { service: 'backoffice' },
      },
    ],
  });
  return startAccessProxy(config, {
    authenticator: opts.authenticator,
    source: trust.proxySource([HOST, OTHER_HOST]),
    recorder: { record: (e) => opts.decisions.push(e) },
  });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One raw HTTPS request to the proxy (the path is sent exactly as given, which fetch would
 * normalize), trusting the test CA, with `Host` and SNI set to `host`.
 */
export function rawRequest(
  caPem: string,
  port: number,
  path: string,
  headers: Record<string, string> = {},
  opts: { method?: string; host?: string; sni?: string; body?: string } = {},
): Promise<Reply> {
  const host = opts.host ?? HOST;
  return new Promise((res, rej) => {
    const r = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        servername: opts.sni ?? HOST,
        ca: caPem,
        method: opts.method ?? 'GET',
        path,
        agent: false,
        headers: { host: `${host}:${port}`, ...headers },
      },
      (m) => {
        let body = '';
        m.setEncoding('utf8');
        m.on('data', (c: string) => {
          body += c;
        });
        m.on('end', () => res({ status: m.statusCode ?? 0, headers: m.headers, body }));
      },
    );
    r.on('error', rej);
    r.end(opts.body);
  });
}

/** Waits until `check` is true, polling every 10 ms; throws after `ms`. Resolves with the time it took. */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - start;
}

/**
 * Walks a login as a browser does, from `startUrl` (a proxy page) through the provider's login
 * form, and stops at the proxy's callback: returns its URL, not yet visited, so tests can replay or
 * tamper with it. `authUrl` may rewrite the authorization request on its way to the provider.
 */
export async function toCallback(
  client: PersonClient,
  startUrl: string,
  username: string,
  password: string,
  authUrl: (u: URL) => URL = (u) => u,
): Promise<string> {
  const first = await client.send('GET', startUrl);
  const location = first.headers.location;
  if (first.status !== 302 || typeof location !== 'string') throw new Error(`no login redirect (${first.status})`);
  return walkLogin(client, authUrl(new URL(location, startUrl)).href, new URL(startUrl).origin, username, password);
}

/** From the provider's authorization URL through its login form, up to the proxy's callback URL. */
export async function walkLogin(
  client: PersonClient,
  authUrl: string,
  origin: string,
  username: string,
  password: string,
): Promise<string> {
  let at = authUrl;
  let r = await client.send('GET', at);
  for (let i = 0; i < 20; i++) {
    const loc = r.headers.location;
    if (r.status >= 300 && r.status < 400 && typeof loc === 'string') {
      const next = new URL(loc, at);
      if (next.origin === origin) return next.href;
      at = next.href;
      r = await client.send('GET', at);
      continue;
    }
    const form = parseForm(r.body);
    if (!form) throw new Error(`no form at ${at} (${r.status})`);
    // The login form (ours names the field `username`, oidc-provider's dev pages `login`), else a consent form.
    const userField = ['username', 'login'].find((f) => f in form.fields);
    const fields = userField ? { ...form.fields, [userField]: username, password } : form.fields;
    at = new URL(form.action || at, at).href;
    r = await client.send('POST', at, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
  throw new Error('the login did not come back to the proxy');
}
