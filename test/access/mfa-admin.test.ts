/**
 * Admin of people's second factors through a real server (in-process, real SQLite, the real audit
 * log) and the built CLI: `GET /v1/admin/users/<name>/mfa`, `POST …/mfa/reset`, `POST
 * …/mfa/enroll-link`; `nevertrust user mfa list|reset` and `nevertrust user enroll-link`. Factors
 * are enrolled as an access proxy does (the MFA service with its sealing key, on the same store).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMfaService, type MfaService, type MfaSubject } from '../../src/access/mfa/index.js';
import { queryAuditLog } from '../../src/audit/query.js';
import { Kek } from '../../src/ca/kek.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { usersPlugin } from '../../src/server/plugins/users.js';
import { createLogger } from '../../src/util/logger.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { code } from './mfa/rfc6238.js';

let server: RunningServer;
let dataDir: string;
let token: string;
let proxy: MfaService;
const audit = auditPlugin({ checkpointEvery: 100, checkpointIntervalMs: 0 });

async function api(method: string, path: string, body?: unknown, auth = true) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(auth && { authorization: `Bearer ${token}` }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Enrolls a confirmed TOTP factor the way the access proxy does. */
async function enrollTotp(s: MfaSubject, name: string): Promise<string> {
  const t = await proxy.beginTotp(s, name);
  expect(await proxy.confirmTotp(s, t.factorId, code(t.secret, Date.now()), '203.0.113.7')).toMatchObject({
    ok: true,
  });
  return t.factorId;
}

/** A live access-proxy session of `s`; returns its id. */
async function session(s: MfaSubject): Promise<string> {
  const id = randomUUID();
  const now = Date.now();
  await server.store.accessSessions.create(randomBytes(16).toString('hex'), {
    id,
    host: 'app.example.test',
    issuer: s.issuer,
    sub: s.sub,
    providerSid: null,
    person: JSON.stringify({ user: s.user }),
    tokens: '{}',
    tokenExpiresAt: null,
    createdAt: now,
    expiresAt: now + 3_600_000,
    lastSeenAt: now,
  });
  return id;
}

const auditOf = async (kind: string) => {
  await audit.handle.recorder().flush();
  return (await queryAuditLog(server.store, { kind, limit: 100 })).events;
};

beforeAll(async () => {
  dataDir = tempDir();
  server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0 } }),
    logger: createLogger('silent'),
    plugins: [usersPlugin(), audit],
  });
  token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  proxy = createMfaService({ store: server.store, kek: Kek.fromBytes(randomBytes(32)) });
});
afterAll(() => server.close());

describe('MFA admin API', () => {
  // A person known to the access proxy by an email: not a user of the built-in provider.
  const alice = { issuer: 'https://idp.example.test', sub: 'sub-alice', user: 'alice@example.com' };
  // The same person through a second provider: the same user name, another identity.
  const alice2 = { issuer: 'https://login.partner.test', sub: 'a-7', user: 'alice@example.com' };
  const bob = { issuer: 'https://idp.example.test', sub: 'sub-bob', user: 'bob@example.com' };
  const enc = encodeURIComponent;

  it('lists factors without secrets; a reset deletes factors and codes, ends sessions, is audited', async () => {
    const phone = await enrollTotp(alice, 'phone');
    await proxy.beginTotp(alice, 'pending one');
    await enrollTotp(alice2, 'partner phone');
    await enrollTotp(bob, 'bob phone');
    const codes = await proxy.newRecoveryCodes(alice);
    const [s1, s2, sBob] = [await session(alice), await session(alice2), await session(bob)];

    const list = await api('GET', `/v1/admin/users/${enc(alice.user)}/mfa`);
    expect(list.status).toBe(200);
    expect(list.body.user).toBe(alice.user);
    const factors = list.body.factors as Record<string, unknown>[];
    expect(factors.map((f) => [f.name, f.confirmed, f.issuer])).toEqual(
      expect.arrayContaining([
        ['phone', true, alice.issuer],
        ['pending one', false, alice.issuer],
        ['partner phone', true, alice2.issuer],
      ]),
    );
    expect(factors).toHaveLength(3);
    expect(factors.find((f) => f.id === phone)).toMatchObject({ kind: 'totp', sub: 'sub-alice' });
    expect(Object.keys(factors[0] ?? {}).sort()).toEqual(
      ['confirmed', 'created_at', 'id', 'issuer', 'kind', 'last_used_at', 'name', 'sub'].sort(),
    );

    const reset = await api('POST', `/v1/admin/users/${enc(alice.user)}/mfa/reset`, {});
    expect(reset).toEqual({ status: 200, body: { user: alice.user, factors: 3, sessions: 2 } });
    expect((await api('GET', `/v1/admin/users/${enc(alice.user)}/mfa`)).body.factors).toEqual([]);
    expect(await proxy.factors(alice)).toEqual([]);
    expect(await proxy.verifyRecoveryCode(alice, codes[0] as string, '203.0.113.7')).toMatchObject({ ok: false });
    for (const id of [s1, s2]) expect((await server.store.accessSessions.findById(id))?.endedAt).not.toBeNull();
    // Nobody else is touched.
    expect((await server.store.accessSessions.findById(sBob))?.endedAt).toBeNull();
    expect(await proxy.factors(bob)).toHaveLength(1);

    const [ev] = await auditOf('mfa.reset');
    expect(ev).toMatchObject({
      kind: 'mfa.reset',
      outcome: 'allow',
      source: { user: expect.stringMatching(/^token:/) },
      details: { user: alice.user, factors: 3, sessions: 2 },
    });
    const actions = (await auditOf('admin.action')).map((e) => `${e.target?.resource}:${e.outcome}`);
    expect(actions).toEqual(expect.arrayContaining(['alice@example.com user.mfa.reset:allow']));
  });

  it('an enrollment link is for that person, works once, and its token is never recorded', async () => {
    const r = await api('POST', `/v1/admin/users/${enc('carol@example.com')}/mfa/enroll-link`, { ttl: '2h' });
    expect(r.status).toBe(201);
    const t = r.body.token as string;
    expect(t).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(r.body.path).toBe(`/.nevertrust/mfa/enroll?token=${t}`);
    const expires = Date.parse(r.body.expires_at as string);
    expect(Math.abs(expires - (Date.now() + 7_200_000))).toBeLessThan(60_000);
    expect(await proxy.checkEnrollLink(t, 'bob@example.com')).toBe(false);
    expect(await proxy.consumeEnrollLink(t, 'carol@example.com')).toBe(true);
    expect(await proxy.consumeEnrollLink(t, 'carol@example.com')).toBe(false);
    // Default: 24 hours.
    const d = await api('POST', `/v1/admin/users/carol/mfa/enroll-link`, {});
    expect(Math.abs(Date.parse(d.body.expires_at as string) - (Date.now() + 86_400_000))).toBeLessThan(60_000);
    const everything = JSON.stringify(await auditOf('mfa.enroll_link')) + JSON.stringify(await auditOf('admin.action'));
    expect(everything).toContain('carol@example.com');
    expect(everything).not.toContain(t);
    expect(everything).not.toContain(d.body.token as string);
  });

  it('refuses bad input and callers without the admin credential, changing nothing', async () => {
    await enrollTotp(bob, 'second');
    for (const ttl of ['90d', '10s', 'soon', -5]) {
      const r = await api('POST', '/v1/admin/users/bob%40example.com/mfa/enroll-link', { ttl });
      expect(r.status, String(ttl)).toBe(400);
      expect(r.body.message).toMatch(/^ttl: /);
    }
    expect((await api('POST', '/v1/admin/users/bob/mfa/enroll-link', { ttl: '1h', user: 'x' })).status).toBe(400);
    expect((await api('GET', '/v1/admin/users/bad%00name/mfa')).status).toBe(400);
    expect((await api('GET', `/v1/admin/users/${'x'.repeat(300)}/mfa`)).status).toBe(400);
    expect((await api('GET', '/v1/admin/users/%E0%A4%A/mfa')).status).toBe(400);
    expect((await api('POST', '/v1/admin/users/bob%40example.com/mfa/delete', {})).status).toBe(404);
    expect((await api('GET', '/v1/admin/users/bob%40example.com/mfa/reset')).status).toBe(405);
    const anon = await api('POST', '/v1/admin/users/bob%40example.com/mfa/reset', {}, false);
    expect(anon.status).toBe(401);
    expect((await api('GET', '/v1/admin/users/bob%40example.com/mfa', undefined, false)).status).toBe(401);
    expect(await proxy.factors(bob)).toHaveLength(2);
    // The provider's user routes are as before.
    expect((await api('GET', '/v1/admin/users/nobody')).status).toBe(404);
  });
});

describe('nevertrust user mfa / enroll-link (CLI)', () => {
  const dave = { issuer: 'https://idp.example.test', sub: 'sub-dave', user: 'dave@example.com' };
  const cli = (args: string[]) =>
    runCli([...args, '--server', server.url], { env: { NEVERTRUST_ADMIN_TOKEN: token }, cwd: dataDir });

  it('lists, asks before a reset (nothing changes without a yes), resets, and prints an enrollment link', async () => {
    await enrollTotp(dave, 'dave phone');
    const live = await session(dave);

    const list = await cli(['user', 'mfa', 'list', dave.user]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+KIND\s+NAME\s+STATUS/);
    expect(list.stdout).toMatch(/totp\s+dave phone\s+confirmed/);
    const json = JSON.parse((await cli(['user', 'mfa', 'list', dave.user, '--json'])).stdout);
    expect(json).toEqual([expect.objectContaining({ name: 'dave phone', kind: 'totp', confirmed: true })]);

    // No terminal, no answer: a no.
    const asked = await cli(['user', 'mfa', 'reset', dave.user]);
    expect(asked.code).toBe(1);
    expect(asked.stderr).toMatch(/Reset MFA for "dave@example.com".*\[y\/N\]/);
    expect(asked.stderr).toMatch(/aborted: nothing changed/);
    expect(await proxy.factors(dave)).toHaveLength(1);
    expect((await server.store.accessSessions.findById(live))?.endedAt).toBeNull();

    const reset = await cli(['user', 'mfa', 'reset', dave.user, '--yes']);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toBe('reset MFA for dave@example.com: 1 factor(s) removed, 1 session(s) ended\n');
    expect(await proxy.factors(dave)).toEqual([]);
    expect((await server.store.accessSessions.findById(live))?.endReason).toBe('mfa_reset');
    expect((await auditOf('mfa.reset')).some((e) => e.details?.user === dave.user)).toBe(true);
    expect((await cli(['user', 'mfa', 'list', dave.user])).stdout).toBe('(none)\n');

    const link = await cli(['user', 'enroll-link', dave.user, '--ttl', '2h', '--url', 'https://app.example:8443/x']);
    expect(link.code, link.stderr).toBe(0);
    const m = /^https:\/\/app\.example:8443\/\.nevertrust\/mfa\/enroll\?token=([A-Za-z0-9_-]+)\n$/.exec(link.stdout);
    expect(m, link.stdout).not.toBeNull();
    expect(link.stderr).toMatch(/valid once until 20\d\d-/);
    expect(await proxy.consumeEnrollLink(m?.[1] as string, dave.user)).toBe(true);
    expect(await proxy.consumeEnrollLink(m?.[1] as string, dave.user)).toBe(false);

    const bare = await cli(['user', 'enroll-link', dave.user]);
    expect(bare.stdout).toMatch(/^\/\.nevertrust\/mfa\/enroll\?token=[A-Za-z0-9_-]+\n$/);
    const badUrl = await cli(['user', 'enroll-link', dave.user, '--url', 'ftp://x']);
    expect(badUrl.code).toBe(2);
    const badTtl = await cli(['user', 'enroll-link', dave.user, '--ttl', '90d']);
    expect(badTtl.code).not.toBe(0);
    expect(badTtl.stderr).toMatch(/ttl: between 1 minute and 30 days/);
    // Seven CLI processes: on a loaded 2-core machine each start can take seconds.
  }, 120_000);
});
