/**
 * A running mesh for the console's end-to-end test, made of the real parts in this process: the
 * server with every plugin `nevertrust server` loads (the console's among them), its admin token and
 * the payments policies; the built-in OpenID provider on the server's store with alice (admins) and
 * bob (staff); the access proxy over HTTPS (a certificate from the server's CA) with local MFA,
 * following the server's signal stream, shipping its decisions to the audit log with its SVID, and
 * the people's example policies, routing `console.localhost` to the server's API port and
 * `backoffice.localhost` to an app with a WebSocket.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { OidcAuthenticator } from '../../src/access/auth/index.js';
import type { RunningIdentityProvider } from '../../src/access/idp/index.js';
import type { EntryWire } from '../../src/api/entries.js';
import { createMfaService } from '../../src/access/mfa/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../src/audit/event.js';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { configSchema } from '../../src/config/index.js';
import { MeshDevice } from '../../src/mesh/people-device.js';
import { createSvidShipper } from '../../src/pep/audit-shipping.js';
import { readAdminToken } from '../../src/server/admin-auth.js';
import { type RunningServer, type ServerPlugin, startServer } from '../../src/server/index.js';
import type { agentEndpointPlugin } from '../../src/server/plugins/agent-endpoint.js';
import type { auditPlugin } from '../../src/server/plugins/audit.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import { createLogger } from '../../src/util/logger.js';
import { packageRoot } from '../../src/util/package-root.js';
import {
  addPeople,
  HOST as BACKOFFICE_HOST,
  makeAuthenticator,
  PROXY_ID,
  startBuiltinIdp,
  TD,
  type Trust,
  trustOf,
} from '../access/e2e/harness.js';
import { freePort } from '../support/cli.js';
import { startWsApp, type WsApp } from '../support/ws-app.js';
import { tempDir } from '../support/tmp.js';

export { BACKOFFICE_HOST, PROXY_ID, TD };
export const CONSOLE_HOST = 'console.localhost';
/** The console route's audience in the person assertion (`https://<route host><path prefix>`). */
export const CONSOLE_AUDIENCE = `https://${CONSOLE_HOST}`;
/** The services' policies the server decides `/v1/decide` with. */
export const WORKLOAD_POLICIES = resolve('examples/policies/payments');
/** The people's policies at the proxy: the back-office's and the console's. */
export const PEOPLE_POLICIES = resolve('examples/policies/people');

/** The running mesh. */
export interface ConsoleMesh {
  trust: Trust;
  server: RunningServer;
  idp: RunningIdentityProvider;
  auth: OidcAuthenticator;
  proxy: RunningAccessProxy;
  app: WsApp;
  /** `https://console.localhost:<port>` */
  consoleOrigin: string;
  /** `https://backoffice.localhost:<port>` */
  backofficeOrigin: string;
  /** The certificates (PEM) the proxy and the provider serve: Chromium trusts them by SPKI. */
  servedCerts: string[];
  /** The authenticator's events (logins, logouts). */
  authEvents: AuditEventInput[];
  /** The admin API with the server's bootstrap token (the CLI's way in), straight to the API port. */
  admin<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

function plugin<T extends ServerPlugin>(plugins: readonly ServerPlugin[], name: string): T {
  const p = plugins.find((x) => x.name === name);
  if (!p) throw new Error(`no ${name} plugin in serverPlugins()`);
  return p as T;
}

/** The certificate chain's leaf a TLS server on 127.0.0.1:`port` presents for `servername`, as PEM. */
export function servedCertificate(port: number, servername: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const raw = s.getPeerCertificate().raw;
      s.destroy();
      res(new X509Certificate(raw).toString());
    });
    s.on('error', rej);
  });
}

/**
 * Builds the console's assets (`node scripts/build-console.mjs`, what `npm run build` runs) when
 * dist/console/app.js is missing or older than a source of src/console/web: the page under test is
 * the current source's.
 */
export function buildConsoleIfStale(): void {
  const root = packageRoot();
  const built = join(root, 'dist', 'console', 'app.js');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((d) =>
        d.isDirectory() ? newest(join(dir, d.name)) : statSync(join(dir, d.name)).mtimeMs,
      ),
    );
  if (existsSync(built) && statSync(built).mtimeMs >= newest(join(root, 'src', 'console', 'web'))) return;
  execFileSync(process.execPath, [join(root, 'scripts', 'build-console.mjs')], { stdio: 'pipe', timeout: 60_000 });
}

/** Starts the mesh; {@link ConsoleMesh.close} stops it. */
export async function startConsoleMesh(): Promise<ConsoleMesh> {
  buildConsoleIfStale();
  const dir = tempDir('nevertrust-console-');
  const dataDir = join(dir, 'server');
  mkdirSync(dataDir);
  const config = configSchema.parse({
    data_dir: dataDir,
    trust_domain: TD,
    log_level: 'silent',
    server: { port: 0, agent_port: 0 },
    policies: WORKLOAD_POLICIES,
    // The proxy below vouches for people at the console route; the rest are the defaults
    // (group admins, a second factor within 5 minutes for a destructive call).
    console: { proxies: [PROXY_ID], audience: CONSOLE_AUDIENCE },
  });
  const plugins = serverPlugins(config);
  const server = await startServer({ config, logger: createLogger('silent'), plugins });
  const closers: (() => Promise<void> | void)[] = [() => server.close()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c();
  };
  try {
    const agent = plugin<ReturnType<typeof agentEndpointPlugin>>(plugins, 'agent-endpoint');
    const ca = plugin<ReturnType<typeof caPlugin>>(plugins, 'ca');
    const audit = plugin<ReturnType<typeof auditPlugin>>(plugins, 'audit').handle;
    const agentUrl = `https://127.0.0.1:${agent.address()?.port}`;
    const trust = trustOf({ server, ca, agentUrl, dataDir }, dir);
    const store = server.store;
    await addPeople(store);

    const app = await startWsApp();
    closers.push(() => app.close());
    const port = await freePort();
    const consoleOrigin = `https://${CONSOLE_HOST}:${port}`;
    const backofficeOrigin = `https://${BACKOFFICE_HOST}:${port}`;
    const record = (e: AuditEventInput) => audit.record(e);
    const idp = await startBuiltinIdp(trust, store, [consoleOrigin, backofficeOrigin], record);
    closers.push(() => idp.close());
    const authEvents: AuditEventInput[] = [];
    // `sub` is the user name at the built-in provider: the name enrollment links and revocations use.
    const auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents, {
      user_claim: 'sub',
    });
    const tls = trust.tlsFor([CONSOLE_HOST, BACKOFFICE_HOST]);
    writeFileSync(join(dir, 'proxy.crt'), tls.cert);
    writeFileSync(join(dir, 'proxy.key'), tls.key);
    const proxyConfig = parseAccessProxyConfig({
      listen: `127.0.0.1:${port}`,
      svid: { workload_api: 'unused' },
      tls: { cert_file: join(dir, 'proxy.crt'), key_file: join(dir, 'proxy.key') },
      policies: PEOPLE_POLICIES,
      assertion: { server: agentUrl, ttl_seconds: 60 },
      signals: { server: agentUrl },
      mfa: {},
      routes: [
        { name: 'console', from: { host: CONSOLE_HOST }, to: server.url },
        { name: 'backoffice', from: { host: BACKOFFICE_HOST }, to: `http://127.0.0.1:${app.port}`, websockets: true },
      ],
    });
    const mfa = createMfaService({ store, kek: auth.kek, record });
    const proxy = await startAccessProxy(proxyConfig, {
      authenticator: auth,
      source: trust.proxySource([CONSOLE_HOST, BACKOFFICE_HOST]),
      mfa: { service: mfa, record },
      audit: record,
      ship: (source) => {
        const shipper = createSvidShipper(source, { server: agentUrl, spillDir: join(dir, 'spill') });
        return { recorder: shipper, close: () => shipper.close(5000) };
      },
    });
    closers.push(() => proxy.close());

    const token = readAdminToken(dataDir);
    if (!token) throw new Error('the server wrote no admin token');
    const admin = async <T>(method: string, path: string, body?: unknown) => {
      const r = await fetch(`${server.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await r.text();
      return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
    };
    return {
      trust,
      server,
      idp,
      auth,
      proxy,
      app,
      consoleOrigin,
      backofficeOrigin,
      servedCerts: [
        readFileSync(join(dir, 'proxy.crt'), 'utf8'),
        await servedCertificate(Number(new URL(idp.issuer).port), 'localhost'),
      ],
      authEvents,
      admin,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** What {@link seedMeshData} put in the mesh, for the pages to show. */
export interface Seeded {
  gateway: string;
  payments: string;
  audit: string;
  /** Decisions gateway → payment-service (allowed) and gateway → audit-service (denied), through `/v1/decide`. */
  allowed: number;
  denied: number;
  /** The audit event of one allowed decision (the decision page's subject). */
  decisionEventId: string;
  /** Registration entries created through the admin API. */
  entryIds: string[];
  /** alice's device, enrolled with a token from the admin API, its posture reported. */
  deviceId: string;
  stop(): Promise<void>;
}

const sa = (name: string) => `spiffe://${TD}/ns/payments/sa/${name}`;

/** Waits until `check` gives a value, polling every 100 ms; throws after `ms`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Real data through the real interfaces: registration entries through the admin API, decisions
 * through the decision API (enough denials from one caller for the anomaly detector's deny spike),
 * alice's device enrolled and reporting this machine's posture.
 */
export async function seedMeshData(mesh: ConsoleMesh, dir = tempDir('nevertrust-console-device-')): Promise<Seeded> {
  const gateway = sa('api-gateway');
  const payments = sa('payment-service');
  const audit = sa('audit-service');
  const device = MeshDevice.start({
    apiUrl: mesh.server.url,
    agentUrl: mesh.trust.agentUrl,
    dataDir: mesh.trust.serverDataDir,
    dir,
    trustDomain: TD,
    owner: 'alice',
    store: mesh.server.store,
    logger: createLogger('silent'),
  });
  const entryIds: string[] = [];
  for (const name of ['api-gateway', 'payment-service', 'audit-service']) {
    const r = await mesh.admin<EntryWire>('POST', '/v1/admin/entries', {
      spiffe_id: sa(name),
      parent_id: `spiffe://${TD}/agent/console-e2e`,
      selectors: [`unix:uid:${1000 + entryIds.length}`],
      hint: name,
    });
    if (r.status !== 201) throw new Error(`entry ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    entryIds.push(r.body.id);
  }
  const decide = async (from: string, to: string, path: string) => {
    const r = await fetch(`${mesh.server.url}/v1/decide`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        source: { spiffe_id: from },
        target: { spiffe_id: to },
        request: { method: 'POST', path },
      }),
    });
    return (await r.json()) as { allow: boolean; decision_id: string };
  };
  const allowed = 6;
  const denied = 25;
  for (let i = 0; i < allowed; i++)
    if (!(await decide(gateway, payments, '/v1/charges')).allow) throw new Error('not allowed');
  for (let i = 0; i < denied; i++)
    if ((await decide(gateway, audit, '/v1/events')).allow) throw new Error('not denied');
  type Events = { events: { id: string; reason?: string; details?: Record<string, unknown> }[] };
  const q = (query: string) => mesh.admin<Events>('GET', `/v1/admin/audit/events?${query}`).then((r) => r.body.events);
  const decisionEventId = await eventually('the allowed decisions in the audit log', async () => {
    const events = await q(`kind=access.decision&source=${encodeURIComponent(gateway)}&outcome=allow&limit=100`);
    return events.length === allowed ? events[0]?.id : undefined;
  });
  await eventually('the deny spike', async () => {
    const events = await q('kind=anomaly&limit=10');
    return events.some((e) => e.details?.signal === 'deny_spike') ? true : undefined;
  });
  const d = await device;
  await d.reported(30_000);
  return { gateway, payments, audit, allowed, denied, decisionEventId, entryIds, deviceId: d.id, stop: () => d.stop() };
}
