/**
 * Two access proxies (two Authenticators, two stores) on one real PostgreSQL: a session made on one
 * works on the other, a logout on one kills it on the other within the change-feed interval, and
 * requests read no database once the session is cached.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';
import { type AppServer, attach, Browser, makeTls, startApp, startIdp, type TestIdp } from './auth-harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('two access proxies on one PostgreSQL', () => {
  const dir = tempDir();
  let s1: Store;
  let s2: Store;
  let idp: TestIdp;
  let p1: AppServer;
  let p2: AppServer;

  beforeAll(async () => {
    const tls = await makeTls(dir);
    p1 = await startApp(tls, 'app.test');
    p2 = await startApp(tls, 'app.test');
    idp = await startIdp(tls, [p1, p2]);
    idp.accounts.set('alice', { sub: 'alice', email: 'alice@example.test', name: 'Alice', groups: ['eng'] });
    const url = await createTestDatabase();
    [s1, s2] = await Promise.all([openStore({ url, dataDir: dir }), openStore({ url, dataDir: dir })]);
    // Both proxies share the session key file (as they would share a mounted secret).
    await attach(p1, idp, s1, dir);
    await attach(p2, idp, s2, dir);
  });
  afterAll(async () => {
    await p1.auth?.close();
    await p2.auth?.close();
    await p1.close();
    await p2.close();
    await idp.close();
    await s1.close();
    await s2.close();
  });

  it('a session from one proxy works on the other, with no database read per request', async () => {
    const b = new Browser(idp.caFile);
    await b.login(p1, 'alice');
    const cookie = `__Host-nevertrust_session=${b.jar(p1.origin).get('__Host-nevertrust_session')}`;
    const onP2 = async () => {
      const res = await b.fetch(`${p2.origin}/whoami`, { headers: { cookie } });
      return { status: res.status, body: (await res.json()) as { kind: string; code?: string } };
    };
    expect(await onP2()).toMatchObject({ status: 200, body: { kind: 'session', person: { sub: 'alice' } } });
    const reads = s2.accessSessions.sessionReads;
    for (let i = 0; i < 50; i++) expect((await onP2()).status).toBe(200);
    expect(s2.accessSessions.sessionReads).toBe(reads);
    const reads1 = s1.accessSessions.sessionReads;
    for (let i = 0; i < 20; i++) expect((await b.whoami(p1)).status).toBe(200);
    expect(s1.accessSessions.sessionReads - reads1).toBeLessThanOrEqual(1);
  });

  it('a logout on one proxy kills the session on the other within the feed interval', async () => {
    const b = new Browser(idp.caFile);
    await b.login(p1, 'alice');
    const cookie = `__Host-nevertrust_session=${b.jar(p1.origin).get('__Host-nevertrust_session')}`;
    const onP2 = async () => {
      const res = await b.fetch(`${p2.origin}/whoami`, { headers: { cookie } });
      return (await res.json()) as { kind: string; code?: string };
    };
    expect((await onP2()).kind).toBe('session'); // now cached on p2
    const page = await (await b.request(`${p1.origin}/.nevertrust/sign_out`)).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
    const out = await b.request(`${p1.origin}/.nevertrust/sign_out`, { method: 'POST', body: `csrf=${csrf}` });
    expect(out.status).toBe(302);
    const t0 = Date.now();
    let dead: { kind: string; code?: string } | undefined;
    while (Date.now() - t0 < 2000) {
      const r = await onP2();
      if (r.kind !== 'session') {
        dead = r;
        break;
      }
      await sleep(20);
    }
    const took = Date.now() - t0;
    expect(dead).toMatchObject({ kind: 'invalid', code: 'session_ended' });
    // Interval 100 ms; allow for one poll in flight and a loaded machine.
    expect(took).toBeLessThan(600);
  });

  it('a session kept alive on one proxy is not refused as idle by another that cached it earlier', async () => {
    await p1.auth?.close();
    await p2.auth?.close();
    await attach(p1, idp, s1, dir, { session: { idle_lifetime: '1s' } });
    await attach(p2, idp, s2, dir, { session: { idle_lifetime: '1s' } });
    const b = new Browser(idp.caFile);
    await b.login(p1, 'alice');
    const cookie = `__Host-nevertrust_session=${b.jar(p1.origin).get('__Host-nevertrust_session')}`;
    const onP2 = async () => {
      const res = await b.fetch(`${p2.origin}/whoami`, { headers: { cookie } });
      return (await res.json()) as { kind: string; code?: string };
    };
    expect((await onP2()).kind).toBe('session');
    for (let i = 0; i < 6; i++) {
      await sleep(250);
      expect((await b.whoami(p1)).status).toBe(200);
    }
    // p2's copy was last seen 1.5 s ago; the store knows better.
    expect((await onP2()).kind).toBe('session');
    await sleep(1300);
    expect(await onP2()).toMatchObject({ kind: 'invalid', code: 'session_idle' });
  });

  it('a login state is consumed exactly once even when two proxies race for it', async () => {
    for (let i = 0; i < 10; i++) {
      const state = `race-state-${i}`;
      await s1.accessSessions.putLoginState(state, 'app.test', 'sealed', Date.now() + 60_000);
      const [a, b] = await Promise.all([
        s1.accessSessions.takeLoginState(state, 'app.test'),
        s2.accessSessions.takeLoginState(state, 'app.test'),
      ]);
      expect([a, b].filter((x) => x !== undefined)).toEqual(['sealed']);
    }
    await s1.accessSessions.putLoginState('expired', 'app.test', 'sealed', Date.now() - 1);
    expect(await s2.accessSessions.takeLoginState('expired', 'app.test')).toBeUndefined();
    await s1.accessSessions.putLoginState('other-host', 'app.test', 'sealed', Date.now() + 60_000);
    expect(await s2.accessSessions.takeLoginState('other-host', 'evil.test')).toBeUndefined();
    // The purge drops spent states; a live one stays.
    await s1.accessSessions.putLoginState('stale', 'app.test', 'sealed', Date.now() - 1);
    await s1.accessSessions.purge(Date.now() - 86_400_000);
    const left = await s1.db.selectFrom('access_login_states').select('expires_at').execute();
    expect(left.length).toBeGreaterThan(0);
    expect(left.every((r) => r.expires_at > Date.now())).toBe(true);
  });
});
