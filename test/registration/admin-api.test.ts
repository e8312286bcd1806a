import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { parseSelector, selectorsMatch } from '../../src/registration/selector.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { registrationPlugin } from '../../src/server/plugins/registration.js';
import { createLogger } from '../../src/util/logger.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const AGENT = 'spiffe://example.org/spire/agent/join_token/abc';
let server: RunningServer;
let dataDir: string;
let token: string;
const events: ServerEvent[] = [];

async function api(method: string, path: string, body?: unknown, auth: string | null = token) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  dataDir = tempDir();
  server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0 } }),
    logger: createLogger('silent'),
    plugins: [
      registrationPlugin(),
      { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) },
    ],
  });
  token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
});
afterAll(() => server.close());

describe('admin authentication', () => {
  it('writes the bootstrap token with mode 0600', () => {
    expect(statSync(join(dataDir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses anonymous, malformed and wrong credentials with 401, and records the refusal', async () => {
    server.events.refusals.flush();
    const before = events.length;
    expect((await api('GET', '/v1/admin/entries', undefined, null)).status).toBe(401);
    expect((await api('GET', '/v1/admin/entries', undefined, 'x')).status).toBe(401);
    // One character off (a token that already ends in A made this the right token 1 run in 64).
    const wrong = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    expect((await api('GET', '/v1/admin/entries', undefined, wrong)).status).toBe(401);
    const res = await fetch(`${server.url}/v1/admin/entries`, { headers: { authorization: `Basic ${token}` } });
    expect(res.status).toBe(401);
    // Repeated refusals of one caller for one reason are aggregated (the first recorded at once, the
    // rest as one event carrying their count): after a flush, the four refusals are all accounted for.
    server.events.refusals.flush();
    const denied = events.slice(before).filter((e) => e.kind === 'admin.action' && e.outcome === 'deny');
    expect(denied.length).toBeGreaterThanOrEqual(1);
    // An event with `repeated: N` stands for N refusals after the one recorded before it.
    const counted = denied.reduce(
      (n, e) => n + Number((e.details as { repeated?: number } | undefined)?.repeated ?? 1),
      0,
    );
    expect(counted).toBe(4);
  });
});

describe('registration entries API', () => {
  let id: string;
  it('creates an entry with defaults from the config and records it', async () => {
    const r = await api('POST', '/v1/admin/entries', {
      spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway',
      parent_id: AGENT,
      selectors: ['unix:uid:1000', 'unix:path:/usr/bin/node'],
      dns_names: ['api.internal'],
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway',
      x509_svid_ttl: 3600,
      jwt_svid_ttl: 300,
      revision: 1,
      selectors: ['unix:path:/usr/bin/node', 'unix:uid:1000'],
    });
    id = r.body.id as string;
    expect(events.some((e) => e.kind === 'entry.changed' && e.target.id === id)).toBe(true);
  });

  it('refuses a duplicate with 409', async () => {
    const r = await api('POST', '/v1/admin/entries', {
      spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway',
      parent_id: AGENT,
      selectors: ['unix:uid:1000', 'unix:path:/usr/bin/node'],
    });
    expect(r.status).toBe(409);
  });

  it.each([
    [
      { spiffe_id: 'spiffe://other.org/x', parent_id: AGENT, selectors: ['unix:uid:1'] },
      /spiffe_id: .*not in this server's trust domain/,
    ],
    [
      { spiffe_id: 'spiffe://example.org/x', parent_id: AGENT, selectors: ['unix:uid:abc'] },
      /selectors\.0: .*uid must be a decimal id/,
    ],
    [{ spiffe_id: 'spiffe://example.org/x', parent_id: AGENT, selectors: ['uid1000'] }, /must be type:value/],
    [{ spiffe_id: 'spiffe://example.org/x', parent_id: AGENT, selectors: [] }, /at least one selector/],
    [{ spiffe_id: 'spiffe://example.org/a/../b', parent_id: AGENT, selectors: ['unix:uid:1'] }, /spiffe_id/],
    [{ spiffe_id: 'spiffe://example.org', parent_id: AGENT, selectors: ['unix:uid:1'] }, /needs a path/],
    [
      { spiffe_id: 'spiffe://example.org/x', parent_id: AGENT, selectors: ['unix:uid:1'], x509_svid_ttl: '99d' },
      /x509_svid_ttl/,
    ],
    [
      { spiffe_id: 'spiffe://example.org/x', parent_id: AGENT, selectors: ['unix:uid:1'], sneaky: true },
      /unknown field\(s\): sneaky/,
    ],
  ])('rejects bad input %#, naming the field, and stores nothing', async (body, message) => {
    const before = (await api('GET', '/v1/admin/entries')).body.entries as unknown[];
    const r = await api('POST', '/v1/admin/entries', body);
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(message);
    expect(((await api('GET', '/v1/admin/entries')).body.entries as unknown[]).length).toBe(before.length);
  });

  it('rejects malformed JSON with 400', async () => {
    const r = await api('POST', '/v1/admin/entries', '{"spiffe_id": ');
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('malformed_json');
  });

  it('shows, filters, updates with compare-and-set, and deletes', async () => {
    expect((await api('GET', `/v1/admin/entries/${id}`)).body.id).toBe(id);
    expect(
      ((await api('GET', `/v1/admin/entries?parent_id=${encodeURIComponent(AGENT)}`)).body.entries as unknown[]).length,
    ).toBe(1);
    expect(
      ((await api('GET', '/v1/admin/entries?parent_id=spiffe://example.org/none')).body.entries as unknown[]).length,
    ).toBe(0);
    const up = await api('PATCH', `/v1/admin/entries/${id}`, { x509_svid_ttl: '10m', revision: 1 });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ x509_svid_ttl: 600, revision: 2 });
    expect((await api('PATCH', `/v1/admin/entries/${id}`, { hint: 'x', revision: 1 })).status).toBe(409);
    expect((await api('DELETE', `/v1/admin/entries/${id}`)).status).toBe(200);
    expect((await api('GET', `/v1/admin/entries/${id}`)).status).toBe(404);
    expect((await api('DELETE', `/v1/admin/entries/${id}`)).status).toBe(404);
    expect((await api('GET', '/v1/admin/entries/%2e%2e%2fhealthz')).status).toBe(400);
    expect((await api('GET', '/v1/admin/entries/%E0%A4%A')).status).toBe(400);
  });

  it('join tokens: default 10 minutes, bounded ttl', async () => {
    const r = await api('POST', '/v1/admin/join-tokens', {});
    expect(r.status).toBe(201);
    expect(r.body.token).toMatch(/^[0-9a-f]{32}$/);
    expect(r.body.ttl).toBe(600);
    expect((await api('POST', '/v1/admin/join-tokens', { ttl: '30d' })).status).toBe(400);
    expect((await api('POST', '/v1/admin/join-tokens', { ttl: 'soon' })).status).toBe(400);
  });

  it('the CLI creates and lists entries through the API with the data dir credential', async () => {
    const common = ['--data-dir', dataDir, '--server', server.url];
    const created = await runCli([
      'entry',
      'create',
      '--spiffe-id',
      'spiffe://example.org/ns/payments/sa/payment-service',
      '--parent-id',
      AGENT,
      '--selector',
      'unix:uid:1001',
      '--json',
      ...common,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const entry = JSON.parse(created.stdout) as { id: string };
    const listed = await runCli(['entry', 'list', ...common]);
    expect(listed.stdout).toContain('spiffe://example.org/ns/payments/sa/payment-service');
    const bad = await runCli([
      'entry',
      'create',
      '--spiffe-id',
      'spiffe://example.org/x',
      '--parent-id',
      AGENT,
      '--selector',
      'unix:uid:x',
      ...common,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/server refused \(400\): selectors\.0: .*uid must be a decimal id/);
    const tok = await runCli(['token', 'generate', ...common]);
    expect(tok.stdout).toMatch(/^[0-9a-f]{32}\n\(one use, expires /);
    expect((await runCli(['entry', 'delete', entry.id, ...common])).code).toBe(0);
    const noCred = await runCli(['entry', 'list', '--data-dir', tempDir(), '--server', server.url]);
    expect(noCred.code).toBe(1);
    expect(noCred.stderr).toMatch(/no admin credential/);
  });
});

describe('reserved identities', () => {
  // Only the server issues these, for itself and for what it attested: an entry for one would
  // hand a workload the control plane's (or an agent's) identity.
  const RESERVED = [
    'spiffe://example.org/nevertrust/server',
    'spiffe://example.org/nevertrust/anything',
    'spiffe://example.org/spire/agent/join_token/abc',
    'spiffe://example.org/spire/server',
    'spiffe://example.org/device/laptop-1',
  ];

  it.each(RESERVED)('refuses an entry for %s on create and update, changing nothing', async (reserved) => {
    const before = ((await api('GET', '/v1/admin/entries')).body.entries as unknown[]).length;
    const c = await api('POST', '/v1/admin/entries', {
      spiffe_id: reserved,
      parent_id: AGENT,
      selectors: ['unix:uid:1002'],
    });
    expect(c.status).toBe(400);
    expect(String(c.body.message)).toMatch(/spiffe_id: .* is reserved/);
    expect(((await api('GET', '/v1/admin/entries')).body.entries as unknown[]).length).toBe(before);

    const ok = await api('POST', '/v1/admin/entries', {
      spiffe_id: 'spiffe://example.org/ns/x/sa/reserved-test',
      parent_id: AGENT,
      selectors: ['unix:uid:1003'],
    });
    expect(ok.status).toBe(201);
    const id = ok.body.id as string;
    const u = await api('PATCH', `/v1/admin/entries/${id}`, { spiffe_id: reserved });
    expect(u.status).toBe(400);
    expect(String(u.body.message)).toMatch(/is reserved/);
    expect((await api('GET', `/v1/admin/entries/${id}`)).body.spiffe_id).toBe(
      'spiffe://example.org/ns/x/sa/reserved-test',
    );
    expect((await api('DELETE', `/v1/admin/entries/${id}`)).status).toBe(200);
  });

  it('the CLI reports the refusal', async () => {
    const r = await runCli([
      'entry',
      'create',
      '--spiffe-id',
      'spiffe://example.org/nevertrust/server',
      '--parent-id',
      AGENT,
      '--selector',
      'unix:uid:1000',
      '--data-dir',
      dataDir,
      '--server',
      server.url,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /server refused \(400\): spiffe_id: spiffe:\/\/example\.org\/nevertrust\/server is reserved/,
    );
  });

  it('a lookalike outside the reserved namespaces is an ordinary workload ID', async () => {
    const r = await api('POST', '/v1/admin/entries', {
      spiffe_id: 'spiffe://example.org/ns/nevertrust/sa/server',
      parent_id: AGENT,
      selectors: ['unix:uid:1004'],
    });
    expect(r.status).toBe(201);
    expect((await api('DELETE', `/v1/admin/entries/${r.body.id as string}`)).status).toBe(200);
  });
});

describe('selectors', () => {
  it('parses and matches (all entry selectors must be present)', () => {
    expect(parseSelector('unix:sha256:' + 'a'.repeat(64))).toEqual({ type: 'unix', value: `sha256:${'a'.repeat(64)}` });
    expect(() => parseSelector('unix:sha256:ABC')).toThrow(/sha256 must be 64 lowercase hexadecimal digits/);
    expect(() => parseSelector('unix:bogus:1')).toThrow(/unknown unix selector/);
    expect(() => parseSelector(':x')).toThrow(/type:value/);
    const caller = new Set(['unix:uid:1000', 'unix:gid:1000', 'unix:path:/usr/bin/node']);
    expect(selectorsMatch(['unix:uid:1000'], caller)).toBe(true);
    expect(selectorsMatch(['unix:uid:1000', 'unix:gid:1000'], caller)).toBe(true);
    expect(selectorsMatch(['unix:uid:1000', 'unix:gid:0'], caller)).toBe(false);
    expect(selectorsMatch([], caller)).toBe(false);
  });
});
