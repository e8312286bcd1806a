/**
 * The web console (#24) end to end, in Chromium (Debian's, driven by playwright-core) against a
 * running mesh (./harness.ts): the console reached through the access proxy at console.localhost,
 * people signed in at the built-in provider, MFA by TOTP at the proxy, the admin API behind it.
 *
 * 1. alice (admins) signs in through the real login, enrolls TOTP with a link from the admin API,
 *    signs in anew and steps up with a code; she visits every page, each showing the data this
 *    file created (registration entries through the admin API, decisions through `/v1/decide`, a
 *    device enrolled and reporting posture, a deny spike the anomaly detector flags); screenshots of
 *    every page go to test-output/console/; no console errors, no CSP violations.
 * 2. bob (staff) is refused every console page and admin API call at the proxy (403, nothing of
 *    the server's in the answer, the server never asked).
 * 3. alice revokes bob's session on the People page: bob's WebSocket through the proxy closes
 *    (1008) within 1.5 s of the revocation's answer.
 * 4. A destructive call by alice without a fresh second factor: 401 insufficient_user_authentication;
 *    in the console, the step-up dialog, the proxy's challenge, and the action done when repeated.
 * Also bad input through the proxy (400 naming the field) and the server's CSRF refusals.
 *
 * The browser trusts the proxy's and the provider's certificates by SPKI (no `ignoreHTTPSErrors`).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_CSP } from '../../src/server/plugins/console.js';
import { PEOPLE, rawRequest, SESSION_COOKIE } from '../access/e2e/harness.js';
import { TotpDevice, base32Decode } from '../access/e2e/mfa-harness.js';
import {
  CHROMIUM,
  hasChromium,
  launchBrowser,
  openPageSocket,
  socketClosed,
  trustSpkiArg,
} from '../support/browser.js';
import {
  CONSOLE_HOST,
  type ConsoleMesh,
  TD,
  eventually,
  type Seeded,
  seedMeshData,
  startConsoleMesh,
} from './harness.js';

const haveBrowser = hasChromium();
if (!haveBrowser) console.warn(`SKIPPED: the console's browser test needs ${CHROMIUM}`);

const SHOTS = join(process.cwd(), 'test-output', 'console');

/** What a page reported that it should not have: console errors, uncaught exceptions, CSP violations. */
interface Troubles {
  errors: string[];
  violations: string[];
}

/** Collects a page's console errors, uncaught exceptions and CSP violations (reported from inside the page). */
async function watch(context: BrowserContext, page: Page): Promise<Troubles> {
  const t: Troubles = { errors: [], violations: [] };
  await context.exposeBinding('__reportCsp', (_src, v: string) => {
    t.violations.push(v);
  });
  // As a string: the page's DOM types are not this file's (no DOM lib in the tests' TypeScript).
  await context.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', (e) =>
      globalThis.__reportCsp(e.violatedDirective + ' blocked ' + e.blockedURI + ' (' + e.sourceFile + ':' + e.lineNumber + ')'));`,
  });
  page.on('console', (m) => {
    if (m.type() === 'error') t.errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => t.errors.push(`uncaught: ${e.message}`));
  return t;
}

describe.skipIf(!haveBrowser)(`the console in a real browser (${CHROMIUM}) against a running mesh`, () => {
  let mesh: ConsoleMesh;
  let seeded: Seeded;
  let browser: Browser;
  let totp: TotpDevice;
  let alice: { context: BrowserContext; page: Page; troubles: Troubles };
  let bob: { context: BrowserContext; page: Page };

  beforeAll(async () => {
    mesh = await startConsoleMesh();
    [seeded, browser] = await Promise.all([seedMeshData(mesh), launchBrowser([trustSpkiArg(mesh.servedCerts)])]);
    mkdirSync(SHOTS, { recursive: true });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await seeded?.stop();
    await mesh?.close();
  }, 30_000);

  /** Signs `who` in at `url` (a proxy page) through the provider's login form; resolves on the way back. */
  async function signIn(page: Page, who: 'alice' | 'bob', url: string): Promise<void> {
    await page.goto(url);
    expect(page.url().startsWith(`${mesh.idp.issuer}/`)).toBe(true);
    await page.fill('#username', who);
    await page.fill('#password', PEOPLE[who].password);
    await Promise.all([page.waitForURL(`${new URL(url).origin}/**`), page.click('button[type=submit]')]);
  }

  async function shot(page: Page, name: string): Promise<void> {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }

  /**
   * Waits for the page `name` (its `view`, e.g. one decision; else the list) to be ready (or fail:
   * the test then says why, with the page's alerts).
   */
  async function ready(page: Page, name: string, view?: string): Promise<void> {
    const sel = `main[data-page="${name}"]${view ? `[data-view="${view}"]` : ':not([data-view])'}`;
    // A locator, not waitForFunction: the console's CSP (no 'unsafe-eval') refuses a string predicate.
    await page.locator(`${sel}[data-state="ready"], ${sel}[data-state="error"]`).waitFor();
    const alert = await page.locator('[role=alert]').allTextContents();
    expect(await page.locator(sel).getAttribute('data-state'), `${name}: ${alert.join(' ')}`).toBe('ready');
  }

  /** Opens `hash` in the console and waits for its page. */
  async function open(page: Page, name: string, hash: string, view?: string): Promise<void> {
    await page.goto(`${mesh.consoleOrigin}/console/${hash}`);
    await ready(page, name, view);
  }

  /** A TOTP code of a time step not used yet: the window's (±1 step) may be spent, then the next 30-s step comes. */
  async function totpCode(): Promise<string> {
    const end = Date.now() + 35_000;
    for (;;) {
      try {
        return totp.code();
      } catch (e) {
        if (Date.now() > end) throw e;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * One request to the console route as the holder of the session cookie `session`, outside the
   * browser: JSON, from the console's origin, unless `headers` say otherwise.
   */
  function consoleCall(
    session: string,
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
  ) {
    return rawRequest(
      mesh.trust.caPem,
      Number(new URL(mesh.consoleOrigin).port),
      path,
      {
        cookie: `${SESSION_COOKIE}=${session}`,
        accept: 'application/json',
        origin: mesh.consoleOrigin,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      { method, host: CONSOLE_HOST, sni: CONSOLE_HOST, ...(body ? { body } : {}) },
    );
  }

  it('alice signs in, steps up with TOTP, and every page shows the mesh’s data; no errors, no CSP violations', async () => {
    // 1. The real login at the provider, and a TOTP factor enrolled with a link from the admin API.
    const first = await browser.newContext();
    const p1 = await first.newPage();
    await signIn(p1, 'alice', `${mesh.consoleOrigin}/console/`);
    const link = await mesh.admin<{ path: string }>('POST', '/v1/admin/users/alice/mfa/enroll-link', { ttl: '10m' });
    expect(link.status).toBe(201);
    await p1.goto(`${mesh.consoleOrigin}${link.body.path}`);
    await p1.fill('#totp-name', 'Phone');
    await Promise.all([p1.waitForURL(`${mesh.consoleOrigin}/.nevertrust/mfa/totp`), p1.click('#totp-add')]);
    totp = new TotpDevice(base32Decode((await p1.getAttribute('#totp-secret', 'data-secret')) ?? ''));
    await p1.fill('#totp-code', await totpCode());
    await Promise.all([p1.waitForURL(`${mesh.consoleOrigin}/.nevertrust/mfa?done=added`), p1.click('#totp-confirm')]);
    await first.close();

    // 2. A new session: signed in, then the console's step-up path sends her through the challenge.
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'alice', `${mesh.consoleOrigin}/console/#/graph`);
    await page.goto(`${mesh.consoleOrigin}/console/step-up?return=${encodeURIComponent('/graph')}`);
    expect(new URL(page.url()).pathname).toBe('/.nevertrust/mfa/challenge');
    await page.fill('#totp-code', await totpCode());
    await Promise.all([page.waitForURL(`${mesh.consoleOrigin}/console/#/graph`), page.click('#totp-verify')]);
    // From here on the console's own pages (the proxy's login and challenge pages are not the console's).
    const troubles = await watch(context, page);
    alice = { context, page, troubles };
    const whoami = await page.evaluate(() => fetch('/v1/admin/whoami').then((r) => r.json()));
    expect(whoami).toMatchObject({ kind: 'person', user: 'alice', mfa_fresh: true });

    // The shell, through the proxy, with the console's headers.
    const shell = await page.goto(`${mesh.consoleOrigin}/console/`);
    expect(shell?.status()).toBe(200);
    expect(await shell?.allHeaders()).toMatchObject({
      'content-security-policy': CONSOLE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      'cache-control': 'no-store',
    });

    // 3. Every page, with what this file put in the mesh.
    const { gateway, payments, audit } = seeded;
    const rowIn = (table: string, id: string) =>
      page.locator(`[data-testid="${table}-table"] [data-testid="row"][data-id="${id}"]`);

    // The graph: the two edges with their counts, the policy's unused edge; a row focused by keyboard lists its decisions.
    await open(page, 'graph', '#/graph');
    const edge = (from: string, to: string) => rowIn('graph', `${from} → ${to}`);
    expect(await edge(gateway, payments).locator('td.num').allTextContents()).toEqual([String(seeded.allowed), '0']);
    expect(await edge(gateway, audit).locator('td.num').allTextContents()).toEqual(['0', String(seeded.denied)]);
    expect(await edge(payments, audit).getAttribute('class')).toContain('unused');
    await edge(gateway, payments).focus();
    const listed = page.locator('[data-testid="edge-decisions"] li a');
    await expect.poll(() => listed.count()).toBe(seeded.allowed);
    expect(await listed.first().getAttribute('href')).toBe(`#/decisions/${encodeURIComponent(seeded.decisionEventId)}`);
    expect(await page.locator('.graph-canvas canvas').count()).toBeGreaterThan(0);
    await shot(page, 'graph');

    // One decision (the one the graph linked to): its explanation, and its inclusion proof checked in the browser.
    await listed.first().click();
    await ready(page, 'decisions', 'decision');
    expect(await page.locator('h1').textContent()).toBe(`Decision ${seeded.decisionEventId}`);
    const explanation = (await page.locator('[data-testid="explanation"]').textContent()) ?? '';
    expect(explanation).toContain('payment-service-ingress');
    expect(explanation).toContain('gateway-charges-and-refunds');
    await page.locator('[data-testid="proof-check"][data-ok]').waitFor();
    expect(await page.locator('[data-testid="proof-check"]').getAttribute('data-ok')).toBe('true');
    await shot(page, 'decision');

    // Decisions: the search finds the denials of this file, and nothing else.
    await open(page, 'decisions', '#/decisions');
    const search = page.locator('[data-testid="decisions-search"]');
    await search.locator('input[name="source"]').fill(gateway);
    await search.locator('select[name="outcome"]').selectOption('deny');
    await search.locator('button[type="submit"]').click();
    const found = page.locator('[data-testid="decisions-table"] [data-testid="row"]');
    await expect.poll(() => found.count()).toBe(seeded.denied);
    expect(new Set(await found.locator('td:nth-child(5)').allTextContents())).toEqual(
      new Set([`${audit} POST /v1/events`]),
    );
    await shot(page, 'decisions');

    // People: alice's session with her second factor, and her TOTP factor.
    const mine = await mesh.admin<{ sessions: { id: string; host: string }[] }>('GET', '/v1/admin/sessions?user=alice');
    const current = mine.body.sessions.find((x) => x.host.startsWith(CONSOLE_HOST));
    await open(page, 'people', '#/people');
    expect(await rowIn('people', current?.id ?? 'none').textContent()).toContain('otp');
    expect(await rowIn('users', 'alice').textContent()).toContain('“Phone”');
    await shot(page, 'people');

    // Devices: alice's device, then its posture history.
    await open(page, 'devices', '#/devices');
    expect(await rowIn('devices', seeded.deviceId).textContent()).toContain('alice');
    await shot(page, 'devices');
    await open(page, 'devices', `#/devices/${encodeURIComponent(seeded.deviceId)}`, 'device');
    expect(await page.locator('[data-testid="devices-table"] [data-testid="row"]').count()).toBeGreaterThan(0);
    await shot(page, 'device');

    // Workloads: the entries, and the CA's generation.
    await open(page, 'workloads', '#/workloads');
    for (const id of seeded.entryIds) expect(await rowIn('workloads', id).count(), `entry ${id}`).toBe(1);
    expect(await page.locator('[data-testid="ca-table"] [data-testid="row"]').count()).toBeGreaterThan(0);
    // alice's device certificate (a day long) is among the certificates expiring within 24 h.
    const devices = await mesh.admin<{ devices: { id: string; cert_serial: string }[] }>('GET', '/v1/admin/devices');
    const serial = devices.body.devices.find((d) => d.id === seeded.deviceId)?.cert_serial ?? 'none';
    expect(await rowIn('svids', serial).textContent()).toContain(`spiffe://${TD}/device/${seeded.deviceId}`);
    await shot(page, 'workloads');

    // Policy: the version in force, its documents, and the evaluate form's answer (a read-only POST).
    const inForce = await mesh.admin<{ version: string }>('GET', '/v1/admin/policy');
    await open(page, 'policy', '#/policy');
    expect(await page.locator('[data-testid="policy-version"]').textContent()).toBe(inForce.body.version);
    for (const id of ['payment-service-ingress', 'audit-service-ingress'])
      expect(await rowIn('policy', id).count()).toBe(1);
    const form = page.locator('[data-testid="evaluate-form"]');
    await form.locator('input[name="source"]').fill(gateway);
    await form.locator('input[name="target"]').fill(payments);
    await form.locator('input[name="method"]').fill('POST');
    await form.locator('input[name="path"]').fill('/v1/charges');
    await form.locator('button[type="submit"]').click();
    const result = page.locator('[data-testid="evaluate-result"]');
    await result.waitFor();
    expect(await result.locator('p').first().textContent()).toMatch(
      /^allow — policy payment-service-ingress, rule gateway-charges-and-refunds/,
    );
    await shot(page, 'policy');

    // Anomalies: the deny spike of api-gateway, with its evidence.
    await open(page, 'anomalies', '#/anomalies');
    const spike = page.locator('[data-testid="anomalies-table"] [data-testid="row"]', { hasText: 'deny_spike' });
    expect(await spike.count()).toBeGreaterThan(0);
    const spikeText = (await spike.first().textContent()) ?? '';
    expect(spikeText).toContain(gateway);
    // The detector fires at its 20th denial in a minute: the allowed calls came first, in the same minute.
    expect(spikeText).toContain(`was denied 20 times out of ${seeded.allowed + 20} requests in the last 60 s`);
    await shot(page, 'anomalies');

    expect(troubles.violations).toEqual([]);
    expect(troubles.errors).toEqual([]);
  }, 90_000);

  it('bad input from an admin through the proxy: 400 naming the field; a forged origin or no JSON is refused', async () => {
    const session =
      (await alice.context.cookies(mesh.consoleOrigin)).find((c) => c.name === SESSION_COOKIE)?.value ?? '';
    for (const [path, field] of [
      ['/v1/admin/graph?window=banana', 'window'],
      ['/v1/admin/graph?window=1h&scope=everything', 'scope'],
      [`/v1/admin/audit/events?reason=${'x'.repeat(201)}`, 'reason'],
      ['/v1/admin/audit/events?user=alice&limit=100000', 'limit'],
      ['/v1/admin/sessions?limit=5000', 'limit'],
      ['/v1/admin/svids?within=forever', 'within'],
      ['/v1/admin/policy/dry-run?window=-1h', 'window'],
      ['/console/step-up?return=javascript:alert(1)', 'return'],
    ] as const) {
      const r = await consoleCall(session, 'GET', path);
      expect(r.status, path).toBe(400);
      expect(r.body, path).toContain(field);
    }
    // A person's write needs JSON and the console's own origin (CSRF), even with a fresh second factor.
    const ban = JSON.stringify({ spiffe_id: `spiffe://${TD}/agent/nobody` });
    const cross = await consoleCall(session, 'POST', '/v1/admin/agents/ban', ban, { origin: 'https://evil.example' });
    expect(cross.status).toBe(403);
    expect(cross.body).toContain('cross-site request refused');
    const form = await consoleCall(session, 'POST', '/v1/admin/agents/ban', ban, { 'content-type': 'text/plain' });
    expect(form.status).toBe(403);
    expect(form.body).toContain('content-type: application/json is required');
    expect((await mesh.admin<{ agents: unknown[] }>('GET', '/v1/admin/agents')).body.agents).toEqual([]);
  }, 30_000);

  it('bob (staff) is refused every console page and admin API call at the proxy', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    bob = { context, page };
    await signIn(page, 'bob', `${mesh.backofficeOrigin}/`);
    const refused = await page.goto(`${mesh.consoleOrigin}/console/`);
    expect(refused?.status()).toBe(403);
    const cookie = (await context.cookies(mesh.consoleOrigin)).find((c) => c.name === SESSION_COOKIE);
    expect(cookie).toBeDefined();
    const calls: [string, string, string?][] = [
      ['GET', '/console/'],
      ['GET', '/console/assets/app.js'],
      ['GET', '/console/step-up?return=%2Fgraph'],
      ['GET', '/v1/admin/whoami'],
      ['GET', '/v1/admin/sessions'],
      ['GET', '/v1/admin/svids?within=24h'],
      ['GET', '/v1/admin/graph?window=1h'],
      ['GET', '/v1/admin/audit/events?kind=access.decision&limit=5'],
      ['GET', `/v1/admin/audit/events/${seeded.decisionEventId}`],
      ['GET', '/v1/admin/audit/checkpoints'],
      ['GET', '/v1/admin/policy'],
      ['GET', '/v1/admin/policy/snapshot'],
      ['GET', '/v1/admin/policy/lint'],
      ['GET', '/v1/admin/policy/dry-run?window=24h'],
      ['GET', '/v1/admin/entries'],
      ['GET', '/v1/admin/agents'],
      ['GET', '/v1/admin/ca'],
      ['GET', '/v1/admin/devices'],
      ['GET', '/v1/admin/users'],
      ['GET', '/v1/admin/users/alice/mfa'],
      ['GET', '/v1/admin/signals'],
      ['POST', '/v1/admin/revoke', JSON.stringify({ user: 'alice', reason: 'bob tries' })],
      ['POST', '/v1/admin/agents/ban', JSON.stringify({ spiffe_id: 'spiffe://example.org/agent/x' })],
      ['POST', '/v1/admin/users/alice/mfa/reset', '{}'],
      ['POST', '/v1/admin/users/bob/mfa/enroll-link', '{}'],
      ['POST', '/v1/admin/policy/evaluate', JSON.stringify({ target: { service: 'x' } })],
      ['POST', '/v1/admin/audit/verify', '{}'],
      ['POST', '/v1/admin/entries', '{}'],
      ['DELETE', `/v1/admin/entries/${seeded.entryIds[0]}`],
    ];
    const decisionIds: string[] = [];
    for (const [method, path, body] of calls) {
      const r = await consoleCall(cookie?.value ?? '', method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      const answer = JSON.parse(r.body) as { error: string; reason: string; decision_id: string };
      expect(answer.error).toBe('forbidden');
      expect(Object.keys(answer).sort()).toEqual(['decision_id', 'error', 'reason']);
      for (const secret of [seeded.entryIds[0], 'spiffe://', 'alice@example.com'])
        expect(r.body, `${method} ${path}`).not.toContain(secret);
      decisionIds.push(answer.decision_id);
    }
    // Each refusal is the proxy's decision (in the audit log, shipped by the proxy), naming bob and the console.
    type Decisions = {
      events: { outcome: string; enforcer?: string; source?: { user?: string }; target?: { service?: string } }[];
    };
    for (const id of decisionIds) {
      const [d] = await eventually(`decision ${id} in the audit log`, async () => {
        const r = await mesh.admin<Decisions>('GET', `/v1/admin/audit/events?decision_id=${encodeURIComponent(id)}`);
        return r.body.events.length > 0 ? r.body.events : undefined;
      });
      expect(d).toMatchObject({ outcome: 'deny', source: { user: 'bob' }, target: { service: 'console' } });
    }
    // And nothing reached the server as bob: no admin action, no refusal of the server names him.
    const byBob = await mesh.admin<{ events: unknown[] }>('GET', '/v1/admin/audit/events?source=person%3Abob&limit=10');
    expect(byBob.status).toBe(200);
    expect(byBob.body.events).toEqual([]);
  }, 60_000);

  it('alice revokes bob’s session on the People page: his WebSocket through the proxy closes (1008) within 1.5 s', async () => {
    // From the back-office's page (the proxy's refusal page allows no connection: CSP default-src 'none').
    await bob.page.goto(`${mesh.backofficeOrigin}/`);
    const greeting = await openPageSocket(bob.page, `wss://${new URL(mesh.backofficeOrigin).host}/reports/live`);
    expect(greeting).toBe('hello');
    const live = await mesh.admin<{ sessions: { id: string; host: string }[] }>('GET', '/v1/admin/sessions?user=bob');
    const session = live.body.sessions.find((s) => s.host.startsWith('backoffice.localhost'));
    expect(session).toBeDefined();
    const id = session?.id as string;

    const { page } = alice;
    await open(page, 'people', '#/people');
    await page.locator(`[data-testid="row"][data-id="${id}"] [data-action="revoke-session"]`).click();
    const answering = page.waitForResponse(
      (r) => r.url().endsWith('/v1/admin/revoke') && r.request().method() === 'POST',
    );
    await page.locator('dialog[data-testid="confirm"] [data-action="confirm"]').click();
    const answer = await answering;
    const answeredAt = Date.now();
    expect(answer.status()).toBe(200);
    const closed = await eventually('bob’s WebSocket closed', () => socketClosed(bob.page), 5000);
    expect(closed.code).toBe(1008);
    // The reason the console gave travels with the revocation to the proxy, and to bob's browser.
    expect(closed.reason).toMatch(
      /^access revoked \(session\.revoked\): the session was revoked \(revoked in the console\)/,
    );
    expect(closed.at - answeredAt).toBeLessThanOrEqual(1500);
    // The signal is in the audit log, raised by alice as a person (not by a token).
    const signal = await eventually('the revocation in the audit log', async () => {
      const r = await mesh.admin<{ events: { target?: { user?: string } }[] }>(
        'GET',
        `/v1/admin/audit/events?kind=signal&source=${encodeURIComponent('admin:person:alice')}&limit=50`,
      );
      return r.body.events.find((e) => JSON.stringify(e.target ?? {}).includes(id));
    });
    expect(signal).toMatchObject({ outcome: 'allow', reason: 'session.revoked: revoked in the console' });
    await shot(page, 'people-revoked');
    expect(alice.troubles.violations).toEqual([]);
    expect(alice.troubles.errors).toEqual([]);
  }, 60_000);

  it('alice without a fresh second factor: a destructive call gets 401 insufficient_user_authentication; the step-up dialog, the challenge, and the action done when repeated', async () => {
    // A new session of alice: signed in, no second factor in it yet.
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'alice', `${mesh.consoleOrigin}/console/`);
    await open(page, 'people', '#/people');
    const ban = JSON.stringify({ spiffe_id: `spiffe://${TD}/agent/nobody` });
    const r = await page.evaluate(async (body) => {
      const res = await fetch('/v1/admin/agents/ban', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      return { status: res.status, www: res.headers.get('www-authenticate') ?? '' };
    }, ban);
    expect(r.status).toBe(401);
    expect(r.www).toContain('error="insufficient_user_authentication"');
    expect((await mesh.admin<{ agents: unknown[] }>('GET', '/v1/admin/agents')).body.agents).toEqual([]);

    // In the console: reset bob's MFA → confirm → the step-up dialog; nothing was reset.
    const resetBob = async () => {
      await page
        .locator('[data-testid="users-table"] [data-testid="row"][data-id="bob"] [data-action="reset-mfa"]')
        .click();
      const answering = page.waitForResponse((x) => x.url().endsWith('/v1/admin/users/bob/mfa/reset'));
      await page.locator('dialog[data-testid="confirm"] [data-action="confirm"]').click();
      return answering;
    };
    expect((await resetBob()).status()).toBe(401);
    const dialog = page.locator('dialog[data-testid="step-up"]');
    await dialog.waitFor();
    await shot(page, 'step-up');
    // "Verify now": the proxy's challenge, a TOTP code, and back to the same view; the action is not replayed.
    await dialog.locator('[data-action="step-up"]').click();
    await page.waitForURL(/\/\.nevertrust\/mfa\/challenge/);
    await page.fill('#totp-code', await totpCode());
    await Promise.all([page.waitForURL(`${mesh.consoleOrigin}/console/#/people`), page.click('#totp-verify')]);
    await ready(page, 'people');
    const done = await resetBob();
    expect(done.status()).toBe(200);
    expect(await done.json()).toMatchObject({ user: 'bob', factors: 0 });
    await context.close();
  }, 60_000);
});
