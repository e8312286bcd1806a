/**
 * The access proxy with a provider that is not the built-in one: an `oidc-provider` configured here
 * with RS256 keys only and other claim names (groups in `roles`, no `email`, the person named by
 * `preferred_username`, an opaque `sub`). The proxy knows only its issuer and client (discovery);
 * `user_claim` and `groups_claim` map the claims, and the example policies (which match
 * `request.auth.claims[groups]`) decide with the mapped groups.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import Provider, { type Configuration } from 'oidc-provider';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import { PersonClient } from '../../../src/mesh/people-client.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import {
  type App,
  CLIENT_ID,
  CLIENT_SECRET,
  HOST,
  makeAuthenticator,
  startApp,
  startProxy,
  startTrust,
  type Trust,
  toCallback,
} from './harness.js';

/** login → the provider's account: an opaque subject, a username, roles. */
const ACCOUNTS: Record<string, { sub: string; preferred_username: string; roles: string[] }> = {
  carol: { sub: 'u-4f1c9a', preferred_username: 'carol', roles: ['staff'] },
  dave: { sub: 'u-88d2e0', preferred_username: 'dave', roles: ['admins'] },
};

let trust: Trust;
let store: Store;
let app: App;
let idpServer: Server;
let issuer: string;
let proxy: RunningAccessProxy;
let origin: string;
const decisions: AccessDecisionEvent[] = [];
const authEvents: AuditEventInput[] = [];
const clients: PersonClient[] = [];

beforeAll(async () => {
  const dir = tempDir();
  trust = await startTrust(dir);
  store = await openStore({ dataDir: join(dir, 'store') });
  app = await startApp(trust);
  const port = await freePort();
  origin = `https://${HOST}:${port}`;

  const idpPort = await freePort();
  issuer = `https://localhost:${idpPort}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const config: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${origin}/.nevertrust/callback`],
        post_logout_redirect_uris: [`${origin}/.nevertrust/signed_out`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'rsa-only', alg: 'RS256', use: 'sig' } as never] },
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'roles'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    async findAccount(_ctx, id) {
      const a = ACCOUNTS[id];
      return a ? { accountId: id, claims: async () => ({ ...a }) } : undefined;
    },
    cookies: { keys: ['other-provider-cookie-key-for-tests'] },
  };
  const provider = new Provider(issuer, config);
  provider.on('server_error', () => {});
  idpServer = createServer(trust.tlsFor(['localhost']), provider.callback());
  await new Promise<void>((r) => idpServer.listen(idpPort, '127.0.0.1', r));

  // Issuer and client only: everything else is discovered.
  const auth = await makeAuthenticator(trust, issuer, store, join(dir, 'auth'), authEvents, {
    scopes: ['openid', 'profile'],
    user_claim: 'preferred_username',
    groups_claim: 'roles',
  });
  proxy = await startProxy(trust, { port, authenticator: auth, appPort: app.port, decisions });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await proxy?.close();
  idpServer?.closeAllConnections();
  await new Promise((r) => idpServer?.close(r));
  app?.close();
  await store?.close();
  await trust?.close();
});

async function signIn(login: string): Promise<PersonClient> {
  const c = new PersonClient({ ca: trust.caPem });
  clients.push(c);
  const cb = await toCallback(c, `${origin}/reports`, login, 'any password');
  const back = await c.send('GET', cb);
  expect(back.status).toBe(302);
  return c;
}

describe('a provider with RS256 only and its own claim names', () => {
  it('advertises RS256 only: the proxy discovered it and signs people in with RS256 ID tokens', async () => {
    const dispatcher = new Agent({ connect: { ca: trust.caPem } });
    const meta = (await (await undiciFetch(`${issuer}/.well-known/openid-configuration`, { dispatcher })).json()) as {
      id_token_signing_alg_values_supported: string[];
    };
    await dispatcher.close();
    expect(meta.id_token_signing_alg_values_supported).toEqual(['RS256']);
    const carol = await signIn('carol');
    expect(authEvents.at(-1)).toMatchObject({ kind: 'access.login', outcome: 'allow', source: { user: 'carol' } });
    const r = await carol.get(`${origin}/reports`);
    expect(r.status).toBe(200);
  });

  it('policy sees the mapped groups and the mapped user; the app gets them in the assertion', async () => {
    const carol = await signIn('carol');
    const reports = await carol.get(`${origin}/reports`);
    expect(reports.status).toBe(200);
    expect(app.hits.at(-1)?.who).toMatchObject({ subject: 'u-4f1c9a', groups: ['staff'], idp: issuer });
    expect(app.hits.at(-1)?.who?.email).toBeUndefined();
    expect(decisions.at(-1)).toMatchObject({
      outcome: 'allow',
      source: { user: 'carol' },
      target: { path: '/reports' },
    });
    // roles [staff] is no admin.
    const before = app.hits.length;
    const admin = await carol.get(`${origin}/admin`, { accept: 'application/json' });
    expect(admin.status).toBe(403);
    expect(app.hits.length).toBe(before);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'deny', source: { user: 'carol' }, target: { path: '/admin' } });

    // roles [admins] is an admin: /admin is his, after a second factor (this provider sends no amr).
    const dave = await signIn('dave');
    const step = await dave.get(`${origin}/admin`, { accept: 'application/json' });
    expect(step.status).toBe(401);
    expect(step.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication"/);
    expect(app.hits.length).toBe(before);
    expect(decisions.at(-1)).toMatchObject({
      outcome: 'step_up',
      source: { user: 'dave' },
      target: { path: '/admin' },
    });
    const ok = await dave.get(`${origin}/reports`);
    expect(ok.status).toBe(200);
    expect(app.hits.at(-1)?.who).toMatchObject({ subject: 'u-88d2e0', groups: ['admins'] });
    expect(decisions.at(-1)).toMatchObject({
      outcome: 'allow',
      source: { user: 'dave' },
      target: { path: '/reports' },
    });
  });
});
