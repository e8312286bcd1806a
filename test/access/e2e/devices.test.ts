/**
 * Devices at the access proxy end to end with real parts: the server's CA issues device certificates
 * (`spiffe://example.org/device/<id>`), the devices are enrolled in a real SQLite store
 * (`store.devices`), people sign in through the built-in provider over real TLS presenting the
 * device certificate (a Node client), and the portal's seed rules (portal.yaml, device.yaml) decide
 * with the device's posture.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevicePosture, isCompliant } from '../../../src/api/devices.js';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import {
  cachedDeviceLookup,
  parseAccessProxyConfig,
  type RunningAccessProxy,
  startAccessProxy,
} from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { CertificateAuthority, certificatesToPem, loadOrCreateKek, MemoryCaStateStore } from '../../../src/ca/index.js';
import { PersonClient } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import type { MemorySvidSource } from '../../../src/pep/mtls/index.js';
import { TrustBundle } from '../../../src/spiffe/index.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { CHROMIUM, hasChromium, launchBrowser } from '../../support/browser.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import { acceptableCaNames } from '../../support/tls.js';
import {
  type App,
  addPeople,
  makeAuthenticator,
  PEOPLE,
  type Reply,
  SESSION_COOKIE,
  startApp,
  startBuiltinIdp,
  startTrust,
  TD,
  type Trust,
  until,
} from './harness.js';

const SEEDS = resolve('examples/policies/conditional-access');
const PORTAL = 'portal.localhost';
const PORTAL_ID = `spiffe://${TD}/ns/corp/sa/portal`;

let trust: Trust;
let store: Store;
let app: App;
let idp: RunningIdentityProvider;
let auth: OidcAuthenticator;
let proxy: RunningAccessProxy;
let origin: string;
let port: number;
let dir: string;
let source: MemorySvidSource;
const authEvents: AuditEventInput[] = [];
const proxyEvents: AuditEventInput[] = [];
const decisions: AccessDecisionEvent[] = [];
const clients: PersonClient[] = [];

interface DeviceCert {
  id: string;
  cert: string;
  key: string;
  serial: string;
}

const deviceId = (id: string) => `spiffe://${TD}/device/${id}`;

/** A device enrolled for `owner` with a certificate from the trust domain's CA. */
async function enroll(id: string, owner: string): Promise<DeviceCert> {
  const c = trust.mint(deviceId(id));
  await store.devices.create({
    id,
    owner,
    name: id,
    spiffeId: deviceId(id),
    enrolledAt: Date.now(),
    certSerial: c.serial,
    certNotAfter: Date.parse(new X509Certificate(c.cert).validTo),
  });
  return { id, ...c };
}

/** A posture report kept for the device, collected `ageS` seconds ago. */
async function report(id: string, ageS: number, facts: Partial<DevicePosture> = {}): Promise<void> {
  const now = Date.now();
  const f = { managed: true, encrypted: true, os_patched: true, firewall_active: true, edr_active: true, ...facts };
  const posture: DevicePosture = {
    source: 'collector',
    collected_at: new Date(now - ageS * 1000).toISOString(),
    received_at: new Date(now).toISOString(),
    ...f,
    unknown: [],
    compliant: isCompliant(f),
  };
  expect(await store.devices.addReport(id, { posture, report: '{}' })).toBeDefined();
}

/** One JSON request to the portal, optionally with a client certificate; no redirect followed. */
function call(path: string, opts: { cookie?: string; cert?: { cert: string; key: string }; method?: string } = {}) {
  return new Promise<Reply>((res, rej) => {
    const r = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        servername: PORTAL,
        ca: trust.caPem,
        method: opts.method ?? 'GET',
        path,
        agent: false,
        ...(opts.cert ? { cert: opts.cert.cert, key: opts.cert.key } : {}),
        headers: {
          host: `${PORTAL}:${port}`,
          accept: 'application/json',
          ...(opts.cookie ? { cookie: opts.cookie } : {}),
        },
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
    r.end();
  });
}

/** alice signs in through the provider with `device`'s certificate (or none). */
async function signIn(device?: { cert: string; key: string }): Promise<{ client: PersonClient; cookie: string }> {
  const client = new PersonClient({ ca: trust.caPem, ...(device ? { cert: device.cert, key: device.key } : {}) });
  clients.push(client);
  await client.signIn(`${origin}/home`, 'alice', PEOPLE.alice.password);
  const session = client.cookies(PORTAL).get(SESSION_COOKIE);
  expect(session).toBeTruthy();
  return { client, cookie: `${SESSION_COOKIE}=${session}` };
}

const json = (r: Reply) => JSON.parse(r.body) as { error: string; reason: string; decision_id?: string };

beforeAll(async () => {
  dir = tempDir();
  trust = await startTrust(dir);
  store = await openStore({ dataDir: join(dir, 'store') });
  await addPeople(store);
  app = await startApp(trust);
  port = await freePort();
  origin = `https://${PORTAL}:${port}`;
  idp = await startBuiltinIdp(trust, store, [origin, `https://localhost:${port}`]);
  auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents);
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  for (const f of ['portal.yaml', 'device.yaml']) {
    writeFileSync(
      join(policies, f),
      readFileSync(join(SEEDS, f), 'utf8').replaceAll('https://idp.example.org', idp.issuer),
    );
  }
  const config = parseAccessProxyConfig({
    listen: `127.0.0.1:${port}`,
    svid: { workload_api: 'unused' },
    policies,
    assertion: { server: trust.agentUrl, ttl_seconds: 60 },
    devices: { max_posture_age: '15m' },
    routes: [
      { name: 'portal', from: { host: PORTAL }, to: `http://127.0.0.1:${app.port}`, target: { spiffe_id: PORTAL_ID } },
      // For Chromium: Playwright's client-certificate proxy resolves names with the system's
      // resolver, which knows `localhost` but not `*.localhost`.
      {
        name: 'portal-localhost',
        from: { host: 'localhost' },
        to: `http://127.0.0.1:${app.port}`,
        target: { spiffe_id: PORTAL_ID },
      },
    ],
  });
  source = trust.proxySource([PORTAL, 'localhost']);
  proxy = await startAccessProxy(config, {
    authenticator: auth,
    source,
    recorder: { record: (e) => decisions.push(e) },
    devices: cachedDeviceLookup({ get: (id) => store.devices.get(id) }),
    audit: (e) => proxyEvents.push(e),
  });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await proxy?.close();
  await idp?.close();
  app?.close();
  await store?.close();
  await trust?.close();
});

/** The CA names the proxy's CertificateRequest lists. */
const proxyCaNames = () => acceptableCaNames(port, ['-servername', PORTAL, '-CAfile', trust.caFile]);

/** What tells a root's name apart (its subject's serialNumber, as OpenSSL prints it). */
const rootName = (pem: string) => /serialNumber=([0-9a-f]+)/.exec(new X509Certificate(pem).subject)?.[1] ?? pem;

describe('the TLS handshake', () => {
  it('asks for a client certificate naming the trust domain roots, and does not require one', async () => {
    expect(await proxyCaNames()).toContain(rootName(trust.caPem));
    // Without a certificate the handshake completes (the login page stays reachable).
    await new Promise<void>((res, rej) => {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: PORTAL, ca: trust.caPem }, () => {
        s.end();
        res();
      });
      s.on('error', rej);
    });
    const r = await call('/home');
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('unauthenticated');
  });

  it('resumes no TLS session: a resumed one would keep only the leaf, not the intermediates', async () => {
    const c = trust.mint(deviceId('never-enrolled'));
    const connect = (session?: Buffer) =>
      new Promise<{ reused: boolean; session?: Buffer }>((res, rej) => {
        let got: Buffer | undefined;
        const s = tlsConnect(
          { host: '127.0.0.1', port, servername: PORTAL, ca: trust.caPem, cert: c.cert, key: c.key, session },
          () => {
            // TLS 1.3 sends its tickets after the handshake.
            setTimeout(() => {
              res({ reused: s.isSessionReused(), ...(got ? { session: got } : {}) });
              s.end();
            }, 100);
          },
        );
        s.on('session', (x: Buffer) => {
          got = x;
        });
        s.on('error', rej);
      });
    const first = await connect();
    const second = await connect(first.session);
    expect(second.reused).toBe(false);
  });

  it("follows the SVID source's bundle: a new root is asked for and verifies at once", async () => {
    const kek = (await loadOrCreateKek({ file: join(dir, 'next.kek'), env: {} })).kek;
    const next = await CertificateAuthority.open({ trustDomain: TD, store: new MemoryCaStateStore(), kek });
    const nextRoot = certificatesToPem(next.bundle().x509Authorities as Buffer[]);
    const m = next.mintX509Svid({ spiffeId: deviceId('never-enrolled'), ttlSeconds: 3600 });
    const cert = {
      cert: certificatesToPem(m.chain),
      key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
    expect(json(await call('/home', { cert })).error).toBe('device_certificate_invalid');
    const before = await proxyCaNames();
    source.set(source.svid, [TrustBundle.fromPem(TD, `${trust.caPem}\n${nextRoot}`)]);
    try {
      const after = await proxyCaNames();
      expect(after).not.toBe(before);
      expect(after).toContain(rootName(nextRoot));
      expect(after).toContain(rootName(trust.caPem));
      // Verified against the new bundle: now only its enrollment is missing.
      expect(json(await call('/home', { cert })).error).toBe('device_unknown');
    } finally {
      source.set(source.svid, [TrustBundle.fromPem(TD, trust.caPem)]);
    }
  });
});

describe('a device-bound session', () => {
  let laptop: DeviceCert;
  let other: DeviceCert;
  let cookie: string;

  beforeAll(async () => {
    laptop = await enroll('alice-laptop', 'alice');
    other = await enroll('bob-laptop', 'bob');
    await report(laptop.id, 30);
    await report(other.id, 30);
    ({ cookie } = await signIn(laptop));
  });

  it('login with the device certificate binds the session; fresh compliant posture allows', async () => {
    const token = cookie.slice(SESSION_COOKIE.length + 1);
    const rec = await store.accessSessions.findByToken(token);
    expect(rec?.deviceId).toBe(laptop.id);
    expect(authEvents.find((e) => e.kind === 'access.login' && e.outcome === 'allow')?.details).toMatchObject({
      device: laptop.id,
    });
    const before = app.hits.length;
    const r = await call('/home', { cookie, cert: laptop });
    expect(r.status, r.body).toBe(200);
    expect(app.hits.length).toBe(before + 1);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'allow', details: { device: laptop.id } });
  });

  it('the cookie replayed without the certificate is refused (device_mismatch), audited', async () => {
    const before = app.hits.length;
    const r = await call('/home', { cookie });
    expect(r.status).toBe(401);
    expect(json(r)).toMatchObject({ error: 'device_mismatch' });
    expect(json(r).reason).toContain('bound to device alice-laptop');
    expect(authEvents.at(-1)).toMatchObject({
      kind: 'device.refused',
      outcome: 'deny',
      details: { bound_device: laptop.id },
    });
    expect(app.hits.length).toBe(before);
  });

  it("the cookie replayed with another enrolled device's certificate is refused", async () => {
    const r = await call('/home', { cookie, cert: other });
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('device_mismatch');
    expect(json(r).reason).toContain('not bob-laptop');
    expect(authEvents.at(-1)).toMatchObject({ kind: 'device.refused', source: { device_id: other.id } });
  });

  it('stale posture: the DENY rule of device.yaml fails closed, naming why', async () => {
    await report(laptop.id, 20 * 60);
    // The lookup is cached for at most a second.
    await until(async () => (await call('/home', { cookie, cert: laptop })).status === 403, 3000);
    const r = await call('/home', { cookie, cert: laptop });
    const body = json(r);
    expect(body.error).toBe('forbidden');
    expect(body.reason).toMatch(/could not be evaluated \(request lacks device\.os_patched[:)]/);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'deny', policy: 'portal-unpatched-device' });
    // Fresh and unpatched: the rule denies on the fact itself.
    await report(laptop.id, 5, { os_patched: false });
    await until(async () => json(await call('/home', { cookie, cert: laptop })).reason.includes('os-not-patched'));
    await report(laptop.id, 5);
    await until(async () => (await call('/home', { cookie, cert: laptop })).status === 200, 3000);
  });

  it('a revoked device is refused within a second, audited', async () => {
    expect((await call('/home', { cookie, cert: laptop })).status).toBe(200);
    expect(await store.devices.revoke(laptop.id, 'lost')).toBe(true);
    const took = await until(async () => (await call('/home', { cookie, cert: laptop })).status === 403, 3000);
    expect(took).toBeLessThan(1500);
    const r = await call('/home', { cookie, cert: laptop });
    expect(json(r)).toMatchObject({ error: 'device_revoked' });
    expect(json(r).reason).toContain('revoked (lost)');
    expect(proxyEvents.at(-1)).toMatchObject({
      kind: 'device.refused',
      outcome: 'deny',
      source: { device_id: laptop.id },
    });
  });
});

describe('certificates that are refused', () => {
  it('an expired device certificate: 401 device_certificate_invalid', async () => {
    const d = await enroll('old-laptop', 'alice');
    const c = trust.mint(deviceId(d.id), { ttlSeconds: 60, now: new Date(Date.now() - 3600_000) });
    const r = await call('/home', { cert: c });
    expect(r.status).toBe(401);
    expect(json(r)).toMatchObject({ error: 'device_certificate_invalid' });
    expect(json(r).reason).toMatch(/expired/);
    expect(proxyEvents.at(-1)).toMatchObject({
      kind: 'device.refused',
      reason: expect.stringMatching(/^device_certificate_invalid/),
    });
  });

  it('a certificate of another CA for the same trust domain: 401', async () => {
    const kek = (await loadOrCreateKek({ file: join(dir, 'rogue.kek'), env: {} })).kek;
    const rogue = await CertificateAuthority.open({ trustDomain: TD, store: new MemoryCaStateStore(), kek });
    const d = await enroll('rogue-laptop', 'alice');
    const m = rogue.mintX509Svid({ spiffeId: deviceId(d.id), ttlSeconds: 3600 });
    const r = await call('/home', {
      cert: { cert: certificatesToPem(m.chain), key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() },
    });
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('device_certificate_invalid');
    expect(json(r).reason).toMatch(/UNKNOWN_AUTHORITY|BAD_SIGNATURE/);
  });

  it('a workload SVID (not a device ID): 401', async () => {
    const r = await call('/home', { cert: trust.mint(`spiffe://${TD}/ns/corp/sa/portal`) });
    expect(r.status).toBe(401);
    expect(json(r).reason).toContain('not a device ID');
  });

  it('a device that is not enrolled: 403 device_unknown; a replaced certificate: 403 device_revoked', async () => {
    const r = await call('/home', { cert: trust.mint(deviceId('never-enrolled')) });
    expect(r.status).toBe(403);
    expect(json(r).error).toBe('device_unknown');
    const d = await enroll('renewed-laptop', 'alice');
    // The device renewed: its old certificate (another serial) no longer counts.
    const oldCert = trust.mint(deviceId(d.id));
    const s = await call('/home', { cert: oldCert });
    expect(s.status).toBe(403);
    expect(json(s)).toMatchObject({ error: 'device_revoked' });
    expect(json(s).reason).toContain('replaced');
  });

  it('a browser page gets the refusal as a page, not a login redirect', async () => {
    const c = trust.mint(deviceId('never-enrolled'));
    const r = await new Promise<Reply>((res, rej) => {
      const q = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          servername: PORTAL,
          ca: trust.caPem,
          path: '/home',
          agent: false,
          cert: c.cert,
          key: c.key,
          headers: { host: `${PORTAL}:${port}`, accept: 'text/html' },
        },
        (m) => {
          let body = '';
          m.on('data', (x: Buffer) => {
            body += x.toString();
          });
          m.on('end', () => res({ status: m.statusCode ?? 0, headers: m.headers, body }));
        },
      );
      q.on('error', rej);
      q.end();
    });
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toContain('text/html');
    expect(r.body).toContain('is not enrolled');
  });
});

describe('without a device', () => {
  it('a session without a device keeps working; policy sees no device and the DENY rule fails closed', async () => {
    const { cookie } = await signIn();
    const token = cookie.slice(SESSION_COOKIE.length + 1);
    expect((await store.accessSessions.findByToken(token))?.deviceId).toBeNull();
    const r = await call('/home', { cookie });
    expect(r.status).toBe(403);
    expect(json(r).reason).toMatch(/request lacks device\.os_patched[:)]/);
  });
});

const haveBrowser = hasChromium();
if (!haveBrowser) console.warn(`SKIPPED: the device browser test needs ${CHROMIUM} (apt-get install chromium)`);

describe.skipIf(!haveBrowser)(`Chromium with a device certificate (${CHROMIUM})`, () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('signs in with the certificate (the session is bound); the cookie in a browser without it gets no access', async () => {
    const desktop = await enroll('alice-desktop', 'alice');
    await report(desktop.id, 10);
    const certPath = join(dir, 'desktop.crt');
    const keyPath = join(dir, 'desktop.key');
    writeFileSync(certPath, desktop.cert);
    writeFileSync(keyPath, desktop.key, { mode: 0o600 });
    // The test CA is not the browser's; the Node clients above check the proxy's certificate with it.
    const local = `https://localhost:${port}`;
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      clientCertificates: [{ origin: local, certPath, keyPath }],
    });
    const page = await context.newPage();
    await page.goto(`${local}/home`);
    expect(page.url().startsWith(`${idp.issuer}/interaction/`)).toBe(true);
    await page.fill('#username', 'alice');
    await page.fill('#password', PEOPLE.alice.password);
    await Promise.all([page.waitForURL(`${local}/home`), page.click('button[type=submit]')]);
    expect(await page.textContent('#email')).toBe('alice@example.com');
    const session = (await context.cookies(local)).find((c) => c.name === SESSION_COOKIE);
    expect((await store.accessSessions.findByToken(session?.value ?? ''))?.deviceId).toBe(desktop.id);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'allow', details: { device: desktop.id } });

    // The same cookie in a browser without the certificate: sent to sign in again, the app sees nothing.
    const bare = await browser.newContext({ ignoreHTTPSErrors: true });
    await bare.addCookies([{ ...(session as NonNullable<typeof session>) }]);
    const pageHits = () => app.hits.filter((h) => h.url !== '/favicon.ico').length;
    const hits = pageHits();
    const p2 = await bare.newPage();
    await p2.goto(`${local}/home`);
    expect(p2.url().startsWith(`${idp.issuer}/interaction/`)).toBe(true);
    expect(pageHits()).toBe(hits);
    expect(authEvents.at(-1)).toMatchObject({ kind: 'device.refused', details: { bound_device: desktop.id } });
    await bare.close();
    await context.close();
  }, 60_000);
});

describe('the device registry unavailable', () => {
  it('a request with a device certificate is refused 503 (fail closed), and one without still reaches login', async () => {
    const broken = await openStore({ dataDir: join(dir, 'broken-store') });
    await broken.close();
    const p2 = await freePort();
    const config = parseAccessProxyConfig({
      listen: `127.0.0.1:${p2}`,
      svid: { workload_api: 'unused' },
      policies: join(dir, 'policies'),
      routes: [{ name: 'portal', from: { host: PORTAL }, to: `http://127.0.0.1:${app.port}` }],
    });
    const other = await startAccessProxy(config, {
      // The shared authenticator stays open for the other tests.
      authenticator: { ...auth, close: async () => {} },
      source: trust.proxySource([PORTAL]),
      devices: cachedDeviceLookup({ get: (id) => broken.devices.get(id) }),
    });
    try {
      const saved = port;
      port = p2;
      try {
        const r = await call('/home', { cert: trust.mint(deviceId('any-laptop')) });
        expect(r.status).toBe(503);
        expect(json(r).error).toBe('device_lookup_unavailable');
        expect((await call('/home')).status).toBe(401);
      } finally {
        port = saved;
      }
    } finally {
      await other.close();
    }
  });
});
