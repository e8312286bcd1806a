/**
 * The console's views on a real server: `GET /v1/admin/sessions` over sessions the store really
 * holds (live, ended, expired; bound to a device with posture, or not), on SQLite and PostgreSQL;
 * `GET /v1/admin/svids` from agent records, devices and issuance events; `GET /v1/admin/whoami`;
 * bad query parameters are 400s naming the field.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postureFromMdm } from '../../src/api/devices.js';
import { parseWire } from '../../src/api/parse.js';
import { sessionListSchema, svidExpiryListSchema, whoamiSchema } from '../../src/api/sessions.js';
import { configSchema } from '../../src/config/index.js';
import { ADMIN_TOKEN_FILE } from '../../src/server/admin-auth.js';
import { type RunningServer, type ServerPlugin, startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { sessionsPlugin } from '../../src/server/plugins/sessions.js';
import { createLogger } from '../../src/util/logger.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines = [
  { name: 'sqlite', url: async () => undefined },
  { name: 'postgres', url: async () => createTestDatabase('nt_consess') },
];

const HOUR = 3_600_000;

describe.each(engines)('console views on $name', ({ url }) => {
  let server: RunningServer;
  let token: string;
  let plugins: ServerPlugin[];

  const get = async (path: string, bearer = token) => {
    const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${bearer}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    const dataDir = tempDir();
    const ca = caPlugin();
    plugins = [ca, auditPlugin({ ca: ca.handle, checkpointIntervalMs: 200 }), sessionsPlugin()];
    server = await startServer({
      config: configSchema.parse({
        data_dir: dataDir,
        server: { port: 0, agent_port: 0 },
        database: { url: await url() },
      }),
      logger: createLogger('silent'),
      plugins,
    });
    token = readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
    const now = Date.now();
    const s = server.store;
    await s.devices.create({
      id: 'laptop-1',
      owner: 'alice',
      name: null,
      spiffeId: 'spiffe://example.org/device/laptop-1',
      enrolledAt: now - HOUR,
      certSerial: 'aa01',
      certNotAfter: now + 2 * HOUR,
    });
    await s.devices.addReport('laptop-1', {
      posture: postureFromMdm(
        {
          device_id: 'laptop-1',
          collected_at: new Date(now - 120_000).toISOString(),
          managed: true,
          encrypted: true,
          os_patched: true,
          firewall_active: true,
          edr_active: false,
          vendor: 'test',
        },
        now,
      ),
      report: '{}',
    });
    const session = (id: string, user: string, lastSeen: number, extra: { deviceId?: string } = {}) =>
      s.accessSessions.create(`token-${id}`, {
        id,
        host: 'console.localhost',
        issuer: 'https://idp.example.test',
        sub: `sub-${user}`,
        providerSid: null,
        person: JSON.stringify({
          issuer: 'https://idp.example.test',
          sub: `sub-${user}`,
          groups: [],
          amr: ['pwd'],
          claims: {},
        }),
        tokens: 'sealed',
        tokenExpiresAt: null,
        createdAt: now - HOUR,
        expiresAt: now + HOUR,
        lastSeenAt: lastSeen,
        userName: user,
        ...extra,
      });
    await session('s-alice', 'alice', now - 1000, { deviceId: 'laptop-1' });
    await s.accessSessions.updateMfa('s-alice', JSON.stringify({ at: Math.floor(now / 1000) - 30, methods: ['otp'] }));
    await session('s-bob', 'bob', now - 60_000);
    await session('s-bob-old', 'bob', now - 120_000);
    await session('s-ended', 'carol', now);
    await s.accessSessions.end('s-ended', 'revoked');
    await s.accessSessions.create('token-expired', {
      id: 's-expired',
      host: 'console.localhost',
      issuer: 'https://idp.example.test',
      sub: 'sub-dan',
      providerSid: null,
      person: '{not json',
      tokens: 'sealed',
      tokenExpiresAt: null,
      createdAt: now - 3 * HOUR,
      expiresAt: now - HOUR,
      lastSeenAt: now - 2 * HOUR,
    });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
  });

  it('lists live sessions, newest last-seen first, with MFA and the bound device posture', async () => {
    const r = await get('/v1/admin/sessions');
    expect(r.status).toBe(200);
    const { sessions } = parseWire(sessionListSchema, r.body, 'sessions');
    expect(sessions.map((x) => x.id)).toEqual(['s-alice', 's-bob', 's-bob-old']);
    const alice = sessions[0];
    expect(alice).toMatchObject({ user: 'alice', person: 'sub-alice', host: 'console.localhost' });
    expect(alice?.mfa?.methods).toEqual(['otp']);
    expect(Date.now() - Date.parse(alice?.mfa?.at ?? '')).toBeLessThan(60_000);
    expect(alice?.device).toMatchObject({
      id: 'laptop-1',
      owner: 'alice',
      compliant: false, // EDR not running
      managed: true,
      encrypted: true,
      os_patched: true,
      edr_active: false,
    });
    expect(alice?.device?.posture_age_s).toBeGreaterThanOrEqual(119);
    expect(sessions[1]).toMatchObject({ user: 'bob', mfa: null, device: null });
  });

  it('filters by user and limits; bad parameters are 400s naming the field', async () => {
    const bob = await get('/v1/admin/sessions?user=bob&limit=1');
    expect((bob.body.sessions as { id: string }[]).map((x) => x.id)).toEqual(['s-bob']);
    expect(((await get('/v1/admin/sessions?user=nobody')).body.sessions as unknown[]).length).toBe(0);
    for (const [q, field] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=1e3', 'limit'],
      ['limit=99999999999999999999', 'limit'],
      [`user=${'x'.repeat(300)}`, 'user'],
      ['user=a&user=b', 'user'],
      ['sort=desc', '(root)'],
    ] as const) {
      const r = await get(`/v1/admin/sessions?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error, q).toBe('invalid_query');
      expect(String(r.body.message), q).toContain(field === '(root)' ? 'sort' : field);
    }
    expect((await get('/v1/admin/sessions', 'x'.repeat(40))).status).toBe(401);
  });

  it('svids: agents, devices and workload SVIDs expiring within the window, soonest first', async () => {
    const now = Date.now();
    await server.store.agents.create({
      spiffeId: 'spiffe://example.org/spire/agent/join_token/n1',
      attestation: 'join_token',
      serial: 'bb02',
      svidExpiresAt: now + 30 * 60_000,
      attestedAt: now,
      remoteAddr: '127.0.0.1',
    });
    // A workload SVID issued by an agent (recorded as the agent endpoint does), and a renewal of it.
    const issued = (serial: string, notAfter: number) =>
      server.events.record({
        kind: 'svid.issued',
        outcome: 'allow',
        source: { id: 'spiffe://example.org/spire/agent/join_token/n1' },
        target: { id: 'spiffe://example.org/ns/payments/sa/api' },
        reason: 'entry e1',
        details: { serial, not_after: new Date(notAfter).toISOString() },
      });
    issued('cc01', now + 10 * 60_000);
    issued('cc02', now + 50 * 60_000);
    await expect
      .poll(async () => ((await get('/v1/admin/svids?within=1h')).body.svids as unknown[]).length, { timeout: 10_000 })
      .toBe(2);
    const { svids } = parseWire(svidExpiryListSchema, (await get('/v1/admin/svids?within=1h')).body, 'svids');
    // Soonest first; the first workload SVID was renewed (a newer issuance supersedes it).
    expect(svids.map((x) => [x.kind, x.serial])).toEqual([
      ['agent', 'bb02'],
      ['workload', 'cc02'],
    ]);
    expect(svids[1]?.spiffe_id).toBe('spiffe://example.org/ns/payments/sa/api');
    const later = parseWire(svidExpiryListSchema, (await get('/v1/admin/svids?within=3h')).body, 'svids');
    expect(later.svids.map((x) => x.kind)).toEqual(['agent', 'workload', 'device']);
    // A banned agent or a revoked device is not listed (its SVID will not be renewed anyway).
    await server.store.devices.revoke('laptop-1', 'lost');
    const after = parseWire(svidExpiryListSchema, (await get('/v1/admin/svids?within=3h')).body, 'svids');
    expect(after.svids.map((x) => x.kind)).toEqual(['agent', 'workload']);
  });

  it('whoami for the admin token; svids window bounds', async () => {
    const who = parseWire(whoamiSchema, (await get('/v1/admin/whoami')).body, 'whoami');
    expect(who).toMatchObject({ kind: 'token', mfa_fresh: true });
    expect(who.id).toMatch(/^token:/);
    for (const q of ['within=31d', 'within=soon', 'within=0', 'within=1h&within=2h', 'window=1h']) {
      const r = await get(`/v1/admin/svids?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error).toBe('invalid_query');
    }
    // 30 minutes ahead: only the agent's SVID.
    const soon = (await get('/v1/admin/svids?within=30m')).body.svids as { kind: string }[];
    expect(soon.map((x) => x.kind)).toEqual(['agent']);
  });
});
