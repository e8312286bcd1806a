/**
 * A person in a real browser (Debian chromium through playwright-core) through the whole stack: the
 * access proxy sends them to the built-in provider's login page, back to the page they asked for,
 * the app shows the verified assertion, the policy refuses /admin to a non-admin with a page, and
 * sign-out ends both the proxy session and the provider's.
 */
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import type { RunningAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { CHROMIUM, hasChromium, launchBrowser } from '../../support/browser.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import {
  type App,
  addPeople,
  HOST,
  makeAuthenticator,
  PEOPLE,
  SESSION_COOKIE,
  startApp,
  startBuiltinIdp,
  startProxy,
  startTrust,
  type Trust,
} from './harness.js';

const haveBrowser = hasChromium();
if (!haveBrowser)
  console.warn(`SKIPPED: the people's-access browser tests need ${CHROMIUM} (apt-get install chromium)`);

describe.skipIf(!haveBrowser)(`people's access in a real browser (${CHROMIUM})`, () => {
  let trust: Trust;
  let store: Store;
  let app: App;
  let idp: RunningIdentityProvider;
  let proxy: RunningAccessProxy;
  let browser: Browser;
  let origin: string;
  const decisions: AccessDecisionEvent[] = [];
  const authEvents: AuditEventInput[] = [];
  /** What reached the app, minus the browser's own favicon fetches (staff may read /favicon.ico). */
  const pageHits = () => app.hits.filter((h) => h.url !== '/favicon.ico');

  beforeAll(async () => {
    const dir = tempDir();
    trust = await startTrust(dir);
    store = await openStore({ dataDir: join(dir, 'store') });
    await addPeople(store);
    app = await startApp(trust);
    const port = await freePort();
    origin = `https://${HOST}:${port}`;
    idp = await startBuiltinIdp(trust, store, [origin]);
    const auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents);
    proxy = await startProxy(trust, { port, authenticator: auth, appPort: app.port, decisions });
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await idp?.close();
    app?.close();
    await store?.close();
    await trust?.close();
  });

  it('logs in through the provider, returns to the page asked for, is refused /admin, signs out', async () => {
    // The test CA is not the browser's; the other e2e tests check the certificates with it.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const blocked: string[] = [];
    page.on('console', (m) => {
      // CSP violations are console errors (a missing favicon is not one).
      if (m.type() === 'error' && /Content Security Policy|Refused/i.test(m.text())) blocked.push(m.text());
    });
    const wanted = `${origin}/reports?month=2026-11&q=a%20b`;

    // 1. Not signed in: the provider's login page.
    await page.goto(wanted);
    expect(page.url().startsWith(`${idp.issuer}/interaction/`)).toBe(true);
    await page.fill('#username', 'bob');
    await page.fill('#password', PEOPLE.bob.password);
    await Promise.all([page.waitForURL(`${origin}/reports**`), page.click('button[type=submit]')]);

    // 2. Back on the page asked for, query kept; the app shows the assertion it verified.
    expect(page.url()).toBe(wanted);
    expect(await page.textContent('#email')).toBe('bob@example.com');
    expect(await page.textContent('#groups')).toBe('staff');
    const hit = pageHits().at(-1);
    expect(hit?.url).toBe('/reports?month=2026-11&q=a%20b');
    expect(hit?.who).toMatchObject({ subject: 'bob', amr: ['pwd'], idp: idp.issuer });
    expect(await page.textContent('#decision')).toBe(hit?.who?.decisionId);

    // 3. The session cookie: __Host- (host-only, Path=/), Secure, HttpOnly, SameSite=Lax; the login cookie is gone.
    const cookies = await context.cookies(origin);
    const session = cookies.find((c) => c.name === SESSION_COOKIE);
    expect(session).toMatchObject({ domain: HOST, path: '/', secure: true, httpOnly: true, sameSite: 'Lax' });
    expect(cookies.map((c) => c.name)).toEqual([SESSION_COOKIE]);

    // 4. /admin is for admins: the 403 page with the reason and the decision id; the app saw nothing.
    const hits = pageHits().length;
    const denied = await page.goto(`${origin}/admin`);
    expect(denied?.status()).toBe(403);
    expect(await page.textContent('h1')).toBe('Access denied');
    const d = decisions.findLast((e) => e.target.path === '/admin') as AccessDecisionEvent;
    expect(d).toMatchObject({ outcome: 'deny', enforcer: 'access-proxy' });
    const text = (await page.textContent('body')) ?? '';
    expect(text).toContain(d.reason);
    expect(await page.textContent('code')).toBe(d.decision_id);
    expect(pageHits().length).toBe(hits);

    // 5. Sign out: the proxy's form, the provider's confirmation, the signed-out page.
    await page.goto(`${origin}/.nevertrust/sign_out`);
    await Promise.all([page.waitForURL(`${idp.issuer}/**`), page.click('button[type=submit]')]);
    await Promise.all([page.waitForURL(`${origin}/.nevertrust/signed_out**`), page.click('button[name=logout]')]);
    expect(await page.textContent('body')).toContain('You are signed out.');
    expect((await context.cookies(origin)).find((c) => c.name === SESSION_COOKIE)).toBeUndefined();
    expect(authEvents.filter((e) => e.kind === 'access.logout')).toHaveLength(1);

    // 6. The provider's session ended too: the next visit asks for the password again.
    await page.goto(`${origin}/reports`);
    expect(page.url().startsWith(`${idp.issuer}/interaction/`)).toBe(true);
    expect(await page.isVisible('#password')).toBe(true);
    expect(pageHits().length).toBe(hits);
    // Nothing on the way was blocked by a page's CSP (the sign-out post's redirect once was).
    expect(blocked).toEqual([]);
    await context.close();
  });
});
