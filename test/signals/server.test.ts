/**
 * Signals on a real server (in process) over real TLS, on SQLite and PostgreSQL: raise → kept with a
 * seq → streamed in order; a follower that disconnects during raises resumes and misses none; a gap
 * after pruning; the stream refuses callers without an SVID or from another trust domain; revoking a
 * session or a person ends them in the store; the admin routes refuse bad input and change nothing.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SequencedSignal, Signal } from '../../src/api/signals.js';
import { CertificateAuthority, certificatesToPem, Kek, MemoryCaStateStore } from '../../src/ca/index.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { agentEndpointPlugin, SERVER_SVID_PATH } from '../../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { registrationPlugin } from '../../src/server/plugins/registration.js';
import { signalsPlugin } from '../../src/server/plugins/signals.js';
import { usersPlugin } from '../../src/server/plugins/users.js';
import { followSignals, SIGNAL_STREAM_PATH, type SignalGap } from '../../src/signals/follow.js';
import { RevocationState } from '../../src/signals/state.js';
import { createLogger } from '../../src/util/logger.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const TD = 'example.org';
const SERVER_ID = `spiffe://${TD}${SERVER_SVID_PATH}`;
const engines = [
  { name: 'sqlite', url: async () => undefined },
  { name: 'postgres', url: async () => createTestDatabase('nt_sigsrv') },
];

const revoked = (sessionId: string): Signal => ({
  kind: 'session.revoked',
  sessionId,
  reason: 'test',
  source: 'admin',
  at: new Date().toISOString(),
});

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(engines)('signals on a server ($name)', ({ url }) => {
  let server: RunningServer;
  let agentPort: number;
  let ca: ReturnType<typeof caPlugin>;
  let signals: ReturnType<typeof signalsPlugin>;
  let token: string;
  const events: ServerEvent[] = [];

  beforeAll(async () => {
    const dataDir = tempDir();
    ca = caPlugin();
    signals = signalsPlugin({ ca: ca.handle, pollMs: 50, pingMs: 300 });
    const agent = agentEndpointPlugin({ ca: ca.handle, routes: signals.agentRoutes });
    server = await startServer({
      config: configSchema.parse({
        data_dir: dataDir,
        trust_domain: TD,
        server: { port: 0, agent_port: 0 },
        database: { url: await url() },
      }),
      logger: createLogger('silent'),
      plugins: [ca, signals, registrationPlugin(), usersPlugin(), agent],
    });
    server.events.on('event', (e) => events.push(e));
    agentPort = agent.address()?.port ?? 0;
    token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  });
  afterAll(async () => {
    await server?.close();
  });

  /** TLS material of a workload SVID minted by `authority` (default: the server's CA). */
  function svid(name: string, authority?: CertificateAuthority, td = TD) {
    const a = authority ?? ca.handle.current();
    const m = a.mintX509Svid({ spiffeId: `spiffe://${td}/ns/edge/sa/${name}`, ttlSeconds: 600 });
    return {
      cert: certificatesToPem(m.chain),
      key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      ca: ca.handle.current().bundle().toPem(),
    };
  }

  function follow(after: number, got: SequencedSignal[], extra: { onGap?: (g: SignalGap) => void } = {}) {
    const material = svid('proxy');
    return followSignals({
      url: `https://127.0.0.1:${agentPort}`,
      serverId: SERVER_ID,
      tls: () => material,
      after,
      onSignal: (m) => {
        got.push(m);
      },
      ...extra,
    });
  }

  async function admin(method: string, path: string, body?: unknown) {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  }

  it('keeps a raised signal with a seq, audits it, and streams signals in order to a follower', async () => {
    const start = await server.store.signals.head();
    const got: SequencedSignal[] = [];
    const f = follow(start, got);
    await f.ready();
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await signals.handle.raise(revoked(`order-${i}`)));
    await until(() => got.length === 5);
    expect(got.map((m) => m.seq)).toEqual(seqs);
    expect(got.map((m) => (m.signal.kind === 'session.revoked' ? m.signal.sessionId : ''))).toEqual(
      [0, 1, 2, 3, 4].map((i) => `order-${i}`),
    );
    expect((await server.store.signals.after(start)).map((m) => m.seq)).toEqual(seqs);
    const audited = events.find((e) => e.kind === 'signal' && e.details?.seq === seqs[0]);
    expect(audited).toMatchObject({
      outcome: 'allow',
      target: { id: 'session:order-0' },
      details: { kind: 'session.revoked', subject: 'session:order-0', source: 'admin', reason: 'test' },
    });
    expect(f.lastContactAt()).toBeGreaterThan(Date.now() - 5000);
    await f.stop();
  });

  it('a follower that disconnects during several raises resumes from its last seq and misses none', async () => {
    const state = new RevocationState({ after: await server.store.signals.head() });
    const got: SequencedSignal[] = [];
    const f = followSignals({
      url: `https://127.0.0.1:${agentPort}`,
      serverId: SERVER_ID,
      tls: (() => {
        const m = svid('sidecar');
        return () => m;
      })(),
      after: state.lastSeq,
      onSignal: (m) => {
        got.push(m);
        state.apply(m.seq, m.signal, m.received_at);
      },
    });
    await f.ready();
    const first = await signals.handle.raise(revoked('before-cut'));
    await until(() => got.length === 1);
    await f.stop();
    // Raised while nobody follows.
    const missed: number[] = [];
    for (let i = 0; i < 4; i++) missed.push(await signals.handle.raise(revoked(`while-away-${i}`)));
    const again = followSignals({
      url: `https://127.0.0.1:${agentPort}`,
      serverId: SERVER_ID,
      tls: () => svid('sidecar'),
      after: state.lastSeq,
      onSignal: (m) => {
        got.push(m);
        state.apply(m.seq, m.signal, m.received_at);
      },
    });
    await again.ready();
    const after = await signals.handle.raise(revoked('after-return'));
    await until(() => got.length === 6);
    expect(got.map((m) => m.seq)).toEqual([first, ...missed, after]);
    for (let i = 0; i < 4; i++) expect(state.sessionRevoked(`while-away-${i}`)).toBeDefined();
    expect(state.lastSeq).toBe(after);
    await again.stop();
  });

  it('reports a gap when the signals after the follower were pruned', async () => {
    const before = await signals.handle.raise(revoked('old-1'));
    await signals.handle.raise(revoked('old-2'));
    const newest = await signals.handle.raise(revoked('newest'));
    // Everything but the newest goes.
    await server.store.signals.prune(Date.now() + 60_000);
    const gaps: SignalGap[] = [];
    const got: SequencedSignal[] = [];
    const f = follow(before - 1, got, { onGap: (g) => void gaps.push(g) });
    await f.ready();
    await until(() => got.length === 1);
    expect(gaps).toEqual([{ after: before - 1, oldest: newest, head: newest, why: 'pruned' }]);
    expect(got.map((m) => m.seq)).toEqual([newest]);
    await f.stop();
  });

  /** One raw request to the agent port's stream; the status and the body's start. */
  function rawStream(tls: { cert?: string; key?: string; ca: string }): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        `https://127.0.0.1:${agentPort}${SIGNAL_STREAM_PATH}?after=0`,
        { ...tls, checkServerIdentity: () => undefined },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
            if (res.statusCode === 200) req.destroy();
          });
          const done = () => resolve({ status: res.statusCode ?? 0, body });
          res.on('end', done);
          res.on('close', done);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses a follower without an SVID and one from another trust domain; sends nothing to them', async () => {
    const bundle = ca.handle.current().bundle().toPem();
    const none = await rawStream({ ca: bundle });
    expect(none.status).toBe(401);
    expect(none.body).toMatch(/no client certificate/);
    const other = await CertificateAuthority.open({
      trustDomain: 'evil.example',
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    const foreign = await rawStream(svid('proxy', other, 'evil.example'));
    expect(foreign.status).toBe(401);
    expect(foreign.body).not.toContain('"signal"');
    const ours = await rawStream(svid('proxy'));
    expect(ours.status).toBe(200);
    expect(ours.body).toMatch(/^\{"type":"hello"/);
    // And on the API port, only with the admin token.
    expect((await fetch(`${server.url}${SIGNAL_STREAM_PATH}`)).status).toBe(401);
    expect(events.some((e) => e.outcome === 'deny' && /signal stream refused/.test(e.reason))).toBe(true);
  });

  it('revoking a session or a person ends them in the store; the answer names the signal', async () => {
    const now = Date.now();
    const session = (id: string, userName: string) =>
      server.store.accessSessions.create(`tok-${id}`, {
        id,
        host: 'app.example.org',
        issuer: 'https://idp',
        sub: `sub-${userName}`,
        providerSid: null,
        person: '{}',
        tokens: 'sealed',
        tokenExpiresAt: null,
        createdAt: now,
        expiresAt: now + 3_600_000,
        lastSeenAt: now,
        userName,
      });
    await session('s-alice', 'alice');
    await session('s-bob-1', 'bob');
    await session('s-bob-2', 'bob');
    await session('s-carol', 'carol');

    const r1 = await admin('POST', '/v1/admin/revoke', { session: 's-alice', reason: 'stolen laptop' });
    expect(r1.status).toBe(200);
    expect(r1.body).toMatchObject({ kind: 'session.revoked', subject: 'session:s-alice', ended_sessions: 1 });
    expect((await server.store.accessSessions.findById('s-alice'))?.endedAt).toBeTypeOf('number');

    const r2 = await admin('POST', '/v1/admin/revoke', { user: 'bob' });
    expect(r2.body).toMatchObject({ kind: 'user.logged-out', subject: 'user:bob', ended_sessions: 2 });
    expect((await server.store.accessSessions.findById('s-bob-2'))?.endReason).toMatch(/user.logged-out/);
    expect((await server.store.accessSessions.findById('s-carol'))?.endedAt).toBeNull();

    const [kept] = await server.store.signals.after(Number(r1.body.seq) - 1, 1);
    expect(kept?.signal).toMatchObject({ kind: 'session.revoked', reason: 'stolen laptop', source: 'admin' });
    const r3 = await admin('POST', '/v1/admin/revoke', { svid: '0A:1B' });
    expect(r3.body).toMatchObject({ kind: 'svid.revoked', subject: 'svid:0a1b' });
    const r4 = await admin('POST', '/v1/admin/risk', { device: 'laptop-7', score: 0.8 });
    expect(r4.body).toMatchObject({ kind: 'risk.set', subject: 'device:laptop-7' });

    await server.store.devices.create({
      id: 'laptop-alice',
      owner: 'alice',
      name: null,
      spiffeId: 'spiffe://example.org/device/laptop-alice',
      enrolledAt: Date.now(),
      certSerial: '01',
      certNotAfter: Date.now() + 3_600_000,
    });
    const r5 = await admin('POST', '/v1/admin/revoke', { device: 'laptop-alice', reason: 'lost on a train' });
    expect(r5.body).toMatchObject({ kind: 'device.revoked', subject: 'device:laptop-alice' });
    expect(await server.store.devices.get('laptop-alice')).toMatchObject({ revokedReason: 'lost on a train' });

    const listed = await admin('GET', `/v1/admin/signals?after=${Number(r1.body.seq) - 1}&limit=2`);
    expect(listed.status).toBe(200);
    expect((listed.body.signals as SequencedSignal[]).map((m) => m.seq)).toEqual([r1.body.seq, r2.body.seq]);
    expect(listed.body.head).toBe(r5.body.seq);
  });

  it('the admin routes refuse bad input with the field, record the refusal, and change nothing', async () => {
    const head = await server.store.signals.head();
    const bad: [string, unknown, RegExp][] = [
      ['/v1/admin/revoke', { kind: 'session', id: 'x' }, /unknown field/],
      ['/v1/admin/revoke', { session: 'a', user: 'b' }, /exactly one/],
      ['/v1/admin/revoke', {}, /exactly one/],
      ['/v1/admin/revoke', { svid: 'not-hex' }, /svid: a hex serial/],
      ['/v1/admin/revoke', { session: '' }, /session/],
      ['/v1/admin/revoke', '{"session":', /not valid JSON/],
      ['/v1/admin/risk', { user: 'alice', score: 1.5 }, /score: a score from 0 to 1/],
      ['/v1/admin/risk', { user: 'alice', score: -0.1 }, /score/],
      ['/v1/admin/risk', { user: 'alice', score: '0.5' }, /score/],
      ['/v1/admin/risk', { score: 0.5 }, /exactly one of user, device/],
    ];
    for (const [path, body, message] of bad) {
      const r = await admin('POST', path, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(String(r.body.message), JSON.stringify(body)).toMatch(message);
    }
    expect((await admin('GET', '/v1/admin/signals?limit=5000')).status).toBe(400);
    expect((await admin('GET', '/v1/admin/signals?after=-1')).status).toBe(400);
    // Unknown device: refused (the device table cannot say it is revoked).
    expect((await admin('POST', '/v1/admin/revoke', { device: 'no-such-device' })).status).toBe(404);
    expect(await server.store.signals.head()).toBe(head);
    expect(events.some((e) => e.outcome === 'deny' && /revoke refused: .*exactly one/.test(e.reason))).toBe(true);
    // Without the admin token: 401, nothing kept.
    const anon = await fetch(`${server.url}/v1/admin/revoke`, { method: 'POST', body: '{"session":"s"}' });
    expect(anon.status).toBe(401);
    expect(await server.store.signals.head()).toBe(head);
  });

  it('raises signals carried by server events: any event with details.signal, an entry deleted, a user disabled', async () => {
    const head = await server.store.signals.head();
    const signal: Signal = {
      kind: 'device.non-compliant',
      deviceId: 'laptop-9',
      reason: 'disk not encrypted',
      source: 'posture',
      at: new Date().toISOString(),
    };
    server.events.record({
      kind: 'admin.action',
      outcome: 'deny',
      source: {},
      target: {},
      reason: 'x',
      details: { signal },
    });
    // Something that is not a signal is not raised.
    server.events.record({
      kind: 'admin.action',
      outcome: 'allow',
      source: {},
      target: {},
      reason: 'x',
      details: { signal: { kind: 'session.granted', sessionId: 'x' } },
    });
    await until(async () => (await server.store.signals.head()) > head);
    const [kept] = await server.store.signals.after(head);
    expect(kept?.signal).toEqual(signal);

    const created = await admin('POST', '/v1/admin/entries', {
      spiffe_id: 'spiffe://example.org/ns/edge/sa/web',
      parent_id: 'spiffe://example.org/spire/agent/join_token/x',
      selectors: ['unix:uid:1000'],
    });
    expect(created.status).toBe(201);
    await admin('DELETE', `/v1/admin/entries/${created.body.id}`);
    await admin('POST', '/v1/admin/users', { username: 'dave', password: 'correct horse battery staple' });
    await admin('PATCH', '/v1/admin/users/dave', { disabled: true });
    await until(async () => (await server.store.signals.after(head)).length >= 3);
    const kinds = (await server.store.signals.after(head)).map((m) => m.signal);
    expect(kinds).toContainEqual(
      expect.objectContaining({
        kind: 'workload.entry-deleted',
        entryId: created.body.id,
        spiffeId: 'spiffe://example.org/ns/edge/sa/web',
      }),
    );
    expect(kinds).toContainEqual(expect.objectContaining({ kind: 'user.disabled', user: { user: 'dave' } }));
    expect(kinds.filter((s) => s.kind === 'session.revoked' && s.sessionId === 'x')).toEqual([]);
  });
});
