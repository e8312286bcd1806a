/**
 * A real browser (Debian chromium, headless) logs in at the built-in provider and signs out: the
 * login page works under its strict CSP (no script; the form's post and the redirects to the client
 * are allowed by `form-action`), and nothing on the pages is blocked.
 */
import { randomBytes } from 'node:crypto';
import { Kek } from '../../src/ca/kek.js';
import { createServer, type Server } from 'node:https';
import { type Browser, chromium } from 'playwright-core';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningIdentityProvider, startIdentityProvider } from '../../src/access/idp/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { AFTER_LOGOUT, addUser, CLIENT_ID, CLIENT_SECRET, REDIRECT, relyingParty, tlsKit } from './idp-harness.js';

describe('built-in provider in a real browser', () => {
  const dir = tempDir();
  let store: Store;
  let kit: Awaited<ReturnType<typeof tlsKit>>;
  let idp: RunningIdentityProvider;
  let browser: Browser;
  let issuer: string;
  let app: Server;
  /** What the browser asked the app for (the callback, the post-logout page). */
  const reached: string[] = [];

  beforeAll(async () => {
    store = await openStore({ dataDir: dir });
    kit = await tlsKit(dir);
    const port = await freePort();
    issuer = `https://localhost:${port}`;
    await addUser(store, 'alice', 'correct horse battery');
    idp = await startIdentityProvider({
      kek: Kek.fromBytes(randomBytes(32)),
      issuer,
      listen: { host: '127.0.0.1', port },
      tls: kit.tls,
      store,
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [REDIRECT],
          post_logout_redirect_uris: [AFTER_LOGOUT],
        },
      ],
    });
    // The app: app.example.test resolves to this server in the browser (redirects cannot be routed).
    app = createServer(kit.tls, (req, res) => {
      if (req.url !== '/favicon.ico') reached.push(`https://app.example.test${req.url}`);
      res.writeHead(200, { 'content-type': 'text/html' }).end('<p>app</p>');
    });
    const appPort = await freePort();
    await new Promise<void>((r) => app.listen(appPort, '127.0.0.1', r));
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        `--host-resolver-rules=MAP app.example.test 127.0.0.1:${appPort}`,
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    app?.close();
    await idp?.close();
    await kit?.close();
    await store?.close();
  });

  it('logs in through the form and reaches the client with a code; signs out through the confirmation', async () => {
    const config = await relyingParty(issuer, kit.fetchTls);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid email groups',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    // The test CA is not the browser's; the provider's certificate is checked by the other tests.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      // CSP violations are console errors (a missing favicon, 404, is not a problem).
      if (m.type() === 'error' && /Content Security Policy|Refused/i.test(m.text())) problems.push(m.text());
    });

    await page.goto(authUrl.href);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'correct horse battery');
    await Promise.all([page.waitForURL(`${REDIRECT}**`), page.click('button[type=submit]')]);
    const callback = new URL(reached.at(-1) ?? '');
    expect(callback.searchParams.get('state')).toBe(state);
    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    expect(tokens.claims()).toMatchObject({ sub: 'alice', amr: ['pwd'], groups: ['admins', 'staff'] });

    const end = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token ?? '',
      post_logout_redirect_uri: AFTER_LOGOUT,
    });
    await page.goto(end.href);
    await Promise.all([page.waitForURL(`${AFTER_LOGOUT}**`), page.click('button[name=logout]')]);
    expect(reached.at(-1)).toMatch(new RegExp(`^${AFTER_LOGOUT}`));
    expect(problems).toEqual([]);
    await context.close();
  }, 90_000);
});
