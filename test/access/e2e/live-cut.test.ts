/**
 * Continuous evaluation at the access proxy (issue #23) in a real browser: a signed-in Chromium page
 * holds a WebSocket through the proxy to an app; when the policy changes so the person may no longer
 * reach the app, the socket closes with 1008 and a reason within a second, the app's socket is closed,
 * a Node client's keep-alive connection is closed, and each cut is an `access.cut` audit event.
 */
import { X509Certificate } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Browser, BrowserContextOptions, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import {
  cachedDeviceLookup,
  parseAccessProxyConfig,
  type RunningAccessProxy,
  startAccessProxy,
} from '../../../src/access/proxy/index.js';
import { mdmSignature } from '../../../src/server/devices/mdm.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { CHROMIUM, hasChromium, launchBrowser, openPageSocket, socketClosed } from '../../support/browser.js';
import { freePort } from '../../support/cli.js';
import { relay } from '../../support/relay.js';
import { tempDir } from '../../support/tmp.js';
import { startWsApp, type WsApp } from '../../support/ws-app.js';
import { CAEP } from '../../../src/signals/ssf/events.js';
import { type HttpTransmitter, startHttpTransmitter } from '../../signals/ssf-http.js';
import {
  addPeople,
  makeAuthenticator,
  PEOPLE,
  SESSION_COOKIE,
  startBuiltinIdp,
  startTrust,
  TD,
  type Trust,
  until,
} from './harness.js';

const LIVE = 'live.localhost';
/** Our audience at the test SSF transmitter, and the bearer it pushes SETs with. */
const SSF_AUD = 'https://nevertrust.test/ssf';
const PUSH_TOKEN = 'push-token-0123456789abcdef';

/** The policy of the `live` app: the given groups may open its page and its WebSocket. */
const livePolicy = (groups: string[]) => `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: live-app
spec:
  action: ALLOW
  target:
    services: [live]
  rules:
    - name: members
      to:
        - paths: [/, /ws, /slow, /favicon.ico]
      when:
        - key: request.auth.claims[groups]
          values: [${groups.join(', ')}]
`;

/** Where a page signs in: the route's host, and the browser context's options (a device certificate). */
interface Site {
  host: string;
  context?: BrowserContextOptions;
}
const live: Site = { host: LIVE };
/** The device's id in the server's registry and its SPIFFE ID (the certificate it presents). */
const DEVICE = 'bobs-laptop';
const DEVICE_ID = `spiffe://${TD}/device/${DEVICE}`;
const MDM_SECRET = 'mdm-secret-0123456789abcdef0123456789abcdef';

const haveBrowser = hasChromium();
if (!haveBrowser) console.warn(`SKIPPED: the live-connection browser tests need ${CHROMIUM}`);

describe.skipIf(!haveBrowser)('access proxy: live connections are decided again (issue #23)', () => {
  let trust: Trust;
  let store: Store;
  let app: WsApp;
  let idp: RunningIdentityProvider;
  let auth: OidcAuthenticator;
  let proxy: RunningAccessProxy;
  let browser: Browser;
  let origin: string;
  let port: number;
  let policies: string;
  let tx: HttpTransmitter;
  /** The authenticator's directory (its session key): a second proxy's reads the same cookies. */
  let authDir: string;
  const events: AuditEventInput[] = [];
  const decisions: AccessDecisionEvent[] = [];
  /** When each cut was made (the proxy re-decides as the new policy comes into force). */
  const cutAt: number[] = [];

  beforeAll(async () => {
    const dir = tempDir();
    // A transmitter with its own signing key, pushing SETs to our receiver `idp`.
    tx = await startHttpTransmitter(SSF_AUD);
    const pushTokenFile = join(dir, 'push.token');
    writeFileSync(pushTokenFile, PUSH_TOKEN, { mode: 0o600 });
    const mdmSecretFile = join(dir, 'mdm.secret');
    writeFileSync(mdmSecretFile, MDM_SECRET, { mode: 0o600 });
    trust = await startTrust(dir, {
      signals: true,
      devices: { mdmSecretFile },
      ssfReceivers: [
        { name: 'idp', issuer: tx.issuer, audience: SSF_AUD, delivery: 'push', push_token_file: pushTokenFile },
      ],
    });
    store = await openStore({ dataDir: join(dir, 'store') });
    await addPeople(store);
    app = await startWsApp();
    port = await freePort();
    origin = `https://${LIVE}:${port}`;
    idp = await startBuiltinIdp(trust, store, [origin, `https://localhost:${port}`]);
    authDir = join(dir, 'auth');
    auth = await makeAuthenticator(trust, idp.issuer, store, authDir, []);
    policies = join(dir, 'policies');
    cpSync(resolve('examples/policies/people'), policies, { recursive: true });
    writeFileSync(join(policies, 'live.yaml'), livePolicy(['staff', 'admins']));
    const config = parseAccessProxyConfig({
      listen: `127.0.0.1:${port}`,
      svid: { workload_api: 'unused' },
      policies,
      signals: { server: trust.agentUrl, max_disconnected: 5 },
      routes: [
        { name: 'live', from: { host: LIVE }, to: `http://127.0.0.1:${app.port}`, websockets: true },
        // For Chromium with a client certificate: Playwright's certificate proxy resolves names with
        // the system's resolver, which knows `localhost` but not `*.localhost`.
        {
          name: 'live-localhost',
          from: { host: 'localhost' },
          to: `http://127.0.0.1:${app.port}`,
          target: { service: 'live' },
          websockets: true,
        },
      ],
    });
    proxy = await startAccessProxy(config, {
      authenticator: auth,
      source: trust.proxySource([LIVE, 'localhost']),
      devices: cachedDeviceLookup({ get: (id) => trust.server.store.devices.get(id) }),
      recorder: { record: (e) => decisions.push(e) },
      audit: (e) => {
        events.push(e);
        if (e.kind === 'access.cut') cutAt.push(Date.now());
      },
    });
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await idp?.close();
    app?.close();
    await store?.close();
    await trust?.close();
    await tx?.close();
  });

  /** A signed-in page of bob (staff) with an open WebSocket through the proxy; resolves once it greeted. */
  async function openSocket(at: Site = live): Promise<{ page: Page; cookie: string }> {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, ...at.context });
    const page = await context.newPage();
    const origin = `https://${at.host}:${port}`;
    await page.goto(`${origin}/`);
    await page.fill('#username', 'bob');
    await page.fill('#password', PEOPLE.bob.password);
    await Promise.all([page.waitForURL(`${origin}/`), page.click('button[type=submit]')]);
    const greeting = await openPageSocket(page, `wss://${at.host}:${port}/ws`);
    expect(greeting).toBe('hello');
    const session = (await context.cookies(origin)).find((c) => c.name === SESSION_COOKIE);
    return { page, cookie: `${SESSION_COOKIE}=${session?.value}` };
  }

  const closedOf = (page: Page) => socketClosed(page);

  /**
   * A Node client's keep-alive connection with a request in flight (/slow, answered on `app.release`):
   * resolves with its socket once the app has it, and `answer` with what the client got.
   */
  async function inFlight(
    cookie: string,
  ): Promise<{ socket: Duplex; answer: Promise<{ status: number; connection?: string }> }> {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let socket: Duplex | undefined;
    const answer = new Promise<{ status: number; connection?: string }>((res, rej) => {
      const r = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          servername: LIVE,
          ca: trust.caPem,
          path: '/slow',
          agent,
          headers: { host: `${LIVE}:${port}`, cookie, accept: 'text/plain' },
        },
        (m) => {
          m.resume();
          m.on('end', () =>
            res({ status: m.statusCode ?? 0, ...(m.headers.connection ? { connection: m.headers.connection } : {}) }),
          );
        },
      );
      r.on('socket', (s) => {
        socket = s;
      });
      r.on('error', rej);
      r.end();
    });
    await until(() => socket !== undefined && proxy.liveConnections >= 2, 5000);
    return { socket: socket as Duplex, answer };
  }

  it('a policy change that removes the person: the WebSocket closes 1008 within 1 s, keep-alive closed, audited', async () => {
    const { page, cookie } = await openSocket();
    const busy = await inFlight(cookie);
    let sockClosed = false;
    busy.socket.on('close', () => {
      sockClosed = true;
    });
    expect(app.open.size).toBe(1);

    writeFileSync(join(policies, 'live.yaml'), livePolicy(['admins']));
    await until(async () => (await closedOf(page)) !== undefined, 10_000);
    const closed = await closedOf(page);
    expect(closed?.code).toBe(1008);
    expect(closed?.reason).toMatch(/^access revoked \(policy changed\)/);
    expect(Buffer.byteLength(closed?.reason ?? '')).toBeLessThanOrEqual(123);
    // Within a second of the new policy coming into force (the watcher's own pickup, a poll of up
    // to a second and a load on a worker thread, comes before that).
    expect((closed?.at ?? Infinity) - (cutAt[0] ?? 0)).toBeLessThan(1000);
    await until(() => app.open.size === 0, 2000);
    // The request in flight finishes, with Connection: close, and then its connection closes.
    expect(sockClosed).toBe(false);
    app.release();
    expect(await busy.answer).toEqual({ status: 200, connection: 'close' });
    await until(() => sockClosed, 2000);

    const cuts = events.filter((e) => e.kind === 'access.cut');
    // The WebSocket, the Node client's busy connection, and the browser's own keep-alive
    // connection unless the server's keep-alive timeout closed it first.
    const kinds = cuts.map((e) => (e.details as { connection: string }).connection);
    expect(kinds.filter((k) => k === 'websocket')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'keep-alive').length).toBeGreaterThanOrEqual(1);
    for (const c of cuts) {
      expect(c).toMatchObject({
        outcome: 'deny',
        enforcer: 'access-proxy',
        source: { user: 'bob@example.com' },
        target: { host: LIVE, service: 'live' },
      });
      expect((c.details as { policy_version: string }).policy_version).toMatch(/^sha256:/);
    }
    expect(proxy.liveConnections).toBe(0);
    await page.context().close();
    writeFileSync(join(policies, 'live.yaml'), livePolicy(['staff', 'admins']));
  }, 30_000);

  /** A request of the session's owner through the proxy: status and the refusal's error code. */
  async function get(cookie: string, path = '/', via = port): Promise<{ status: number; error?: string }> {
    return new Promise((res, rej) => {
      const r = httpsRequest(
        {
          host: '127.0.0.1',
          port: via,
          servername: LIVE,
          ca: trust.caPem,
          path,
          agent: false,
          headers: { host: `${LIVE}:${port}`, cookie, accept: 'application/json' },
        },
        (m) => {
          let body = '';
          m.setEncoding('utf8');
          m.on('data', (c: string) => {
            body += c;
          });
          m.on('end', () => {
            let error: string | undefined;
            try {
              error = (JSON.parse(body) as { error?: string }).error;
            } catch {}
            res({ status: m.statusCode ?? 0, ...(error ? { error } : {}) });
          });
        },
      );
      r.on('error', rej);
      r.end();
    });
  }

  /**
   * Once the policy lets bob in again: a signed-in page with an open WebSocket, its cookie, and the
   * access session the proxy decided the socket's upgrade for.
   */
  async function openSessionSocket(at: Site = live): Promise<{ page: Page; cookie: string; session: string }> {
    await until(async () => (await get('')).status !== 0, 5000);
    let page: Page | undefined;
    await until(async () => {
      try {
        page = (await openSocket(at)).page;
        return true;
      } catch {
        await page?.context().close();
        return false;
      }
    }, 15_000);
    const p = page as Page;
    const cookie = `${SESSION_COOKIE}=${(await p.context().cookies(`https://${at.host}:${port}`)).find((c) => c.name === SESSION_COOKIE)?.value}`;
    const session = (decisions.findLast((d) => d.target.path === '/ws')?.details as { session?: string })?.session;
    expect(session).toBeTruthy();
    return { page: p, cookie, session: session as string };
  }

  it('a session revoked through the server (admin route): the WebSocket closes 1008 within 1 s, the session is refused', async () => {
    // The new policy (access restored) is in force again before the socket opens.
    const { page: p, cookie, session } = await openSessionSocket();
    expect((await get(cookie)).status).toBe(200);

    const token = readFileSync(join(trust.serverDataDir, 'admin.token'), 'utf8').trim();
    const before = Date.now();
    const r = await fetch(`${trust.server.url}/v1/admin/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session, reason: 'stolen laptop' }),
    });
    expect(r.status).toBeLessThan(300);
    await until(async () => (await closedOf(p)) !== undefined, 3000);
    const closed = await closedOf(p);
    expect(closed?.code).toBe(1008);
    expect(closed?.reason).toMatch(/^access revoked \(session\.revoked\): the session was revoked \(stolen laptop\)/);
    expect((closed?.at ?? Infinity) - before).toBeLessThan(1000);
    await until(() => app.open.size === 0, 2000);

    // Its next request is refused, with the reason.
    expect(await get(cookie)).toEqual({ status: 401, error: 'session_revoked' });
    const cut = events.findLast(
      (e) => e.kind === 'access.cut' && (e.details as { connection: string }).connection === 'websocket',
    );
    expect(
      (cut?.details as { signal?: { kind: string; subject: string; seq: number } } | undefined)?.signal,
    ).toMatchObject({
      kind: 'session.revoked',
      subject: `session:${session}`,
    });
    await p.context().close();
  }, 40_000);

  it('a CAEP session-revoked SET pushed by a transmitter: the WebSocket closes 1008 within 1 s, audited with the signal', async () => {
    const { page: p, cookie, session } = await openSessionSocket();
    expect((await get(cookie)).status).toBe(200);
    // The session as an opaque subject: that is how a session event names one session.
    const set = await tx.mint({
      sub_id: { format: 'opaque', id: session },
      events: {
        [CAEP.sessionRevoked]: { event_timestamp: Math.floor(Date.now() / 1000), reason_admin: { en: 'token theft' } },
      },
    });
    const before = Date.now();
    const r = await fetch(`${trust.server.url}/v1/ssf/push/idp`, {
      method: 'POST',
      headers: { 'content-type': 'application/secevent+jwt', authorization: `Bearer ${PUSH_TOKEN}` },
      body: set,
    });
    expect(r.status).toBe(202);
    await until(async () => (await closedOf(p)) !== undefined, 3000);
    const closed = await closedOf(p);
    expect(closed?.code).toBe(1008);
    expect(closed?.reason).toMatch(/^access revoked \(session\.revoked\): the session was revoked \(token theft\)/);
    expect(Buffer.byteLength(closed?.reason ?? '')).toBeLessThanOrEqual(123);
    expect((closed?.at ?? Infinity) - before).toBeLessThan(1000);
    await until(() => app.open.size === 0, 2000);
    expect(await get(cookie)).toEqual({ status: 401, error: 'session_revoked' });
    const cut = events.findLast(
      (e) => e.kind === 'access.cut' && (e.details as { connection: string }).connection === 'websocket',
    );
    expect(cut).toMatchObject({ outcome: 'deny', source: { user: 'bob@example.com' } });
    expect((cut?.details as { signal?: Record<string, unknown> } | undefined)?.signal).toMatchObject({
      kind: 'session.revoked',
      subject: `session:${session}`,
      seq: expect.any(Number),
    });
    await p.context().close();
  }, 40_000);

  it('the device going non-compliant (MDM webhook): the WebSocket of a page with its certificate closes 1008 within 1 s', async () => {
    // bob's laptop, enrolled at the server; the page presents its certificate.
    const cert = trust.mint(DEVICE_ID);
    await trust.server.store.devices.create({
      id: DEVICE,
      owner: 'bob',
      name: DEVICE,
      spiffeId: DEVICE_ID,
      enrolledAt: Date.now(),
      certSerial: cert.serial,
      certNotAfter: Date.parse(new X509Certificate(cert.cert).validTo),
    });
    const certPath = join(tempDir(), 'device.crt');
    const keyPath = join(tempDir(), 'device.key');
    writeFileSync(certPath, cert.cert);
    writeFileSync(keyPath, cert.key, { mode: 0o600 });
    const laptop: Site = {
      host: 'localhost',
      context: { clientCertificates: [{ origin: `https://localhost:${port}`, certPath, keyPath }] },
    };
    const { page: p } = await openSessionSocket(laptop);
    expect((decisions.findLast((d) => d.target.path === '/ws')?.details as { device?: string })?.device).toBe(DEVICE);

    // The MDM reports the disk no longer encrypted.
    const body = JSON.stringify({
      device_id: DEVICE,
      collected_at: new Date().toISOString(),
      managed: true,
      encrypted: false,
      os_patched: true,
      firewall_active: true,
      edr_active: true,
      vendor: 'intune',
    });
    const ts = String(Math.floor(Date.now() / 1000));
    const r = await fetch(`${trust.server.url}/v1/devices/mdm`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-nevertrust-timestamp': ts,
        'x-nevertrust-signature': mdmSignature(MDM_SECRET, ts, body),
      },
      body,
    });
    const answered = Date.now();
    expect(r.status).toBeLessThan(300);
    await until(async () => (await closedOf(p)) !== undefined, 3000);
    const closed = await closedOf(p);
    expect(closed?.code).toBe(1008);
    expect(closed?.reason).toMatch(
      new RegExp(
        `^access revoked \\(device\\.non-compliant\\): device ${DEVICE} is not compliant \\(device ${DEVICE} is no longer compliant`,
      ),
    );
    expect(Buffer.byteLength(closed?.reason ?? '')).toBeLessThanOrEqual(123);
    expect((closed?.at ?? Infinity) - answered).toBeLessThan(1000);
    await until(() => app.open.size === 0, 2000);
    const cut = events.findLast(
      (e) => e.kind === 'access.cut' && (e.details as { connection: string }).connection === 'websocket',
    );
    expect(cut).toMatchObject({ outcome: 'deny', source: { user: 'bob@example.com' } });
    expect((cut?.details as { signal?: Record<string, unknown> } | undefined)?.signal).toMatchObject({
      kind: 'device.non-compliant',
      subject: `device:${DEVICE}`,
      seq: expect.any(Number),
    });
    await p.context().close();
  }, 40_000);

  it('a proxy cut off from the stream during two revocations catches up on reconnect: both sessions refused', async () => {
    const r = await relay(trust.agentUrl);
    const followerPort = await freePort();
    const followerDecisions: AccessDecisionEvent[] = [];
    const followerEvents: AuditEventInput[] = [];
    const follower = await startAccessProxy(
      parseAccessProxyConfig({
        listen: `127.0.0.1:${followerPort}`,
        svid: { workload_api: 'unused' },
        policies,
        // Long enough that the cut does not turn into signals_unavailable: only the catch-up refuses.
        signals: { server: r.url, max_disconnected: 60 },
        routes: [{ name: 'live', from: { host: LIVE }, to: `http://127.0.0.1:${app.port}`, websockets: true }],
      }),
      {
        // Its own authenticator (closed with it) over the same sessions and session key.
        authenticator: await makeAuthenticator(trust, idp.issuer, store, authDir, []),
        source: trust.proxySource([LIVE]),
        recorder: { record: (e) => followerDecisions.push(e) },
        audit: (e) => followerEvents.push(e),
      },
    );
    try {
      const a = await openSessionSocket();
      // The same page also holds a WebSocket through the proxy that will be cut off (cookies are not
      // bound to a port).
      const greeting = await openPageSocket(a.page, `wss://${LIVE}:${followerPort}/ws`, 'follower');
      expect(greeting).toBe('hello');
      const followerClosed = () => socketClosed(a.page, 'follower');
      const b = await openSessionSocket();
      await b.page.context().close();
      for (const s of [a, b]) await until(async () => (await get(s.cookie, '/', followerPort)).status === 200, 5000);
      expect(r.accepted).toBeGreaterThan(0);

      r.down();
      const token = readFileSync(join(trust.serverDataDir, 'admin.token'), 'utf8').trim();
      for (const s of [a, b]) {
        const res = await fetch(`${trust.server.url}/v1/admin/revoke`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ session: s.session, reason: 'while cut off' }),
        });
        expect(res.status).toBeLessThan(300);
      }
      // The connected proxy refuses them at once; the one cut off knows nothing of them yet.
      for (const s of [a, b]) expect(await get(s.cookie)).toEqual({ status: 401, error: 'session_revoked' });
      for (const s of [a, b]) expect((await get(s.cookie, '/', followerPort)).status).toBe(200);
      expect(await followerClosed()).toBeUndefined();

      r.up();
      const upAt = Date.now();
      await until(async () => (await followerClosed()) !== undefined, 15_000);
      const closed = await followerClosed();
      expect(closed?.code).toBe(1008);
      expect(closed?.reason).toMatch(/^access revoked \(session\.revoked\): the session was revoked \(while cut off\)/);
      // Within the follower's reconnect backoff (at most 5 s) and the 1 s bound after it.
      expect((closed?.at ?? Infinity) - upAt).toBeLessThan(6000);
      const cut = followerEvents.findLast(
        (e) => e.kind === 'access.cut' && (e.details as { connection: string }).connection === 'websocket',
      );
      expect((cut?.details as { signal?: Record<string, unknown> } | undefined)?.signal).toMatchObject({
        kind: 'session.revoked',
        subject: `session:${a.session}`,
      });
      await a.page.context().close();
      for (const s of [a, b]) {
        await until(async () => (await get(s.cookie, '/', followerPort)).status === 401, 15_000);
        expect(await get(s.cookie, '/', followerPort)).toEqual({ status: 401, error: 'session_revoked' });
        const refusal = followerDecisions.findLast(
          (d) => (d.details as { session?: string }).session === s.session && d.outcome === 'deny',
        );
        expect((refusal?.details as { signal?: Record<string, unknown> } | undefined)?.signal).toMatchObject({
          kind: 'session.revoked',
          subject: `session:${s.session}`,
          seq: expect.any(Number),
        });
      }
    } finally {
      await follower.close();
      r.close();
    }
  }, 90_000);

  it('a proxy that cannot reach the signal stream past max_disconnected refuses people: signals_unavailable', async () => {
    const lonePort = await freePort();
    const config = parseAccessProxyConfig({
      listen: `127.0.0.1:${lonePort}`,
      svid: { workload_api: 'unused' },
      policies,
      // Nothing listens there: the stream is never reached.
      signals: { server: `https://127.0.0.1:${await freePort()}`, max_disconnected: 1 },
      routes: [
        { name: 'live', from: { host: LIVE }, to: `http://127.0.0.1:${app.port}` },
        {
          name: 'open',
          from: { host: LIVE, path_prefix: '/open' },
          to: `http://127.0.0.1:${app.port}`,
          target: { service: 'live' },
          on_signals_lost: 'allow',
        },
      ],
    });
    const lone = await startAccessProxy(config, { authenticator: auth, source: trust.proxySource([LIVE]) });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const { cookie } = await (async () => {
        const context = await browser.newContext({ ignoreHTTPSErrors: true });
        const page = await context.newPage();
        await page.goto(`${origin}/`);
        await page.fill('#username', 'bob');
        await page.fill('#password', PEOPLE.bob.password);
        await Promise.all([page.waitForURL(`${origin}/`), page.click('button[type=submit]')]);
        const c = (await context.cookies(origin)).find((x) => x.name === SESSION_COOKIE);
        await context.close();
        return { cookie: `${SESSION_COOKIE}=${c?.value}` };
      })();
      const call = (path: string) =>
        new Promise<{ status: number; body: string }>((res, rej) => {
          const r = httpsRequest(
            {
              host: '127.0.0.1',
              port: lonePort,
              servername: LIVE,
              ca: trust.caPem,
              path,
              agent: false,
              headers: { host: `${LIVE}:${port}`, cookie, accept: 'application/json' },
            },
            (m) => {
              let body = '';
              m.on('data', (c: Buffer) => {
                body += c.toString();
              });
              m.on('end', () => res({ status: m.statusCode ?? 0, body }));
            },
          );
          r.on('error', rej);
          r.end();
        });
      const refused = await call('/');
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'signals_unavailable' });
      // A route set to `allow` goes on deciding (its policy refuses /open/x: a 403, not a 503).
      expect((await call('/open/x')).status).toBe(403);
    } finally {
      await lone.close();
    }
  }, 40_000);
});
