/**
 * A route that meets a step-up at the provider (`step_up: {via: provider}`), through the whole stack
 * over HTTPS: the built-in provider, the OIDC authenticator whose `mfa.acr` mapping counts the
 * provider's login as a second factor, and a rule asking for one within 2 s. Once it lapses the
 * browser is sent to the provider with acr_values, max_age and prompt=login, logs in again, and the
 * new session reaches the page; an API client gets the route's acr_values in the 401.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import { PASSWORD_ACR, type RunningIdentityProvider } from '../../../src/access/idp/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { PersonClient } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
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
  startTrust,
  type Trust,
  walkLogin,
} from './harness.js';

const POLICY = `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: reports }
spec:
  action: ALLOW
  target: { services: [backoffice] }
  rules:
    - to: [{ methods: [GET], paths: [/reports, /reports/*] }]
      when:
        - key: request.auth.claims[groups]
          values: [staff]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: reports-fresh }
spec:
  action: STEP_UP
  target: { services: [backoffice] }
  rules:
    - to: [{ paths: [/reports/fresh, /reports/fresh/*] }]
      when: [{ key: auth.mfa_age, gt: 2 }]
`;

describe('step_up via the provider', () => {
  let trust: Trust;
  let store: Store;
  let app: App;
  let idp: RunningIdentityProvider;
  let auth: OidcAuthenticator;
  let proxy: RunningAccessProxy;
  let origin: string;
  const decisions: AccessDecisionEvent[] = [];
  const authEvents: AuditEventInput[] = [];
  const client = () => new PersonClient({ ca: trust.caPem });

  beforeAll(async () => {
    const dir = tempDir();
    trust = await startTrust(dir);
    store = await openStore({ dataDir: join(dir, 'store') });
    await addPeople(store);
    app = await startApp(trust);
    const port = await freePort();
    origin = `https://${HOST}:${port}`;
    idp = await startBuiltinIdp(trust, store, [origin]);
    // This deployment counts the provider's login as a second factor (as with a provider that does MFA).
    auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents, {
      mfa: { amr: ['otp'], acr: { [PASSWORD_ACR]: ['otp'] } },
    });
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
    proxy = await startAccessProxy(
      parseAccessProxyConfig({
        listen: `127.0.0.1:${port}`,
        svid: { workload_api: 'unused' },
        policies: join(dir, 'policies'),
        assertion: { server: trust.agentUrl, ttl_seconds: 60 },
        routes: [
          {
            name: 'backoffice',
            from: { host: HOST },
            to: `http://127.0.0.1:${app.port}`,
            step_up: { via: 'provider', acr_values: [PASSWORD_ACR] },
          },
        ],
      }),
      { authenticator: auth, source: trust.proxySource([HOST]), recorder: { record: (e) => decisions.push(e) } },
    );
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await idp?.close();
    app?.close();
    await store?.close();
    await trust?.close();
  });

  it('a lapsed provider MFA sends the browser to log in again (acr_values, max_age, prompt=login), then the page', async () => {
    const bob = client();
    try {
      expect((await bob.signIn(`${origin}/reports`, 'bob', PEOPLE.bob.password)).status).toBe(200);
      const first = bob.cookies(HOST).get(SESSION_COOKIE);
      expect(app.hits.at(-1)?.who?.amr).toContain('otp');
      await new Promise((r) => setTimeout(r, 3000));

      const r = await bob.send('GET', `${origin}/reports/fresh?x=1`);
      expect(r.status).toBe(302);
      expect(decisions.at(-1)).toMatchObject({ outcome: 'step_up' });
      const to = new URL(String(r.headers.location));
      expect(to.origin).toBe(idp.issuer);
      expect(to.searchParams.get('acr_values')).toBe(PASSWORD_ACR);
      expect(to.searchParams.get('max_age')).toBe('2');
      expect(to.searchParams.get('prompt')?.split(' ')).toContain('login');

      const logins = authEvents.filter((e) => e.kind === 'access.login' && e.outcome === 'allow').length;
      const callback = await walkLogin(bob, to.href, origin, 'bob', PEOPLE.bob.password);
      const back = await bob.send('GET', callback);
      expect(back.status).toBe(302);
      expect(back.headers.location).toBe(`${origin}/reports/fresh?x=1`);
      // A new login, a new session: the provider authenticated bob again.
      expect(authEvents.filter((e) => e.kind === 'access.login' && e.outcome === 'allow').length).toBe(logins + 1);
      expect(bob.cookies(HOST).get(SESSION_COOKIE)).not.toBe(first);
      const page = await bob.send('GET', `${origin}/reports/fresh?x=1`);
      expect(page.status).toBe(200);
      expect(app.hits.at(-1)?.url).toBe('/reports/fresh?x=1');
    } finally {
      await bob.close();
    }
  });

  it("an API client is told the route's acr_values and the max age", async () => {
    const bob = client();
    try {
      await bob.signIn(`${origin}/reports`, 'bob', PEOPLE.bob.password);
      await new Promise((r) => setTimeout(r, 3000));
      const cookie = `${SESSION_COOKIE}=${bob.cookies(HOST).get(SESSION_COOKIE)}`;
      const r = await rawRequest(trust.caPem, proxy.port, '/reports/fresh', { cookie, accept: 'application/json' });
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(
        new RegExp(`error="insufficient_user_authentication".*acr_values="${PASSWORD_ACR}", max_age=2$`),
      );
    } finally {
      await bob.close();
    }
  });
});
