/**
 * The CLI reads the admin API's answers through their contracts (src/api/): a server that answers
 * something unexpected gets one clear line naming the field, exit 1, not a blind cast printed as
 * if it were right. The server here is a real HTTP server standing in for a broken or hostile one.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryToWire } from '../../src/api/entries.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const good = entryToWire({
  id: '0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f',
  spiffeId: 'spiffe://example.org/ns/payments/sa/api',
  parentId: 'spiffe://example.org/spire/agent/join_token/abc',
  selectors: ['unix:uid:1000'],
  x509SvidTtl: 3600,
  jwtSvidTtl: 300,
  dnsNames: [],
  hint: '',
  admin: false,
  expiresAt: null,
  revision: 1,
  createdAt: 0,
  updatedAt: 0,
});

/** What the server answers, by method and path. */
const answers: Record<string, unknown> = {
  'GET /v1/admin/entries': { entries: [good, { ...good, spiffe_id: 42 }] },
  [`GET /v1/admin/entries/${good.id}`]: good,
  'POST /v1/admin/join-tokens': { token: 'not-a-token', expires_at: '2026-01-01T00:00:00Z', ttl: 600 },
  'GET /v1/admin/agents': { agents: 'none' },
};

describe('CLI answers through their contracts', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const body = answers[`${req.method} ${req.url?.split('?')[0]}`];
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body ?? { error: 'not_found', message: 'no route' }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server.close());

  const cli = (args: string[]) =>
    runCli([...args, '--server', url], {
      env: { NEVERTRUST_ADMIN_TOKEN: 'x'.repeat(32) },
      cwd: tempDir(),
    });

  it('a well-formed answer is printed as before', async () => {
    const r = await cli(['entry', 'show', good.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^spiffe_id\s+spiffe:\/\/example\.org\/ns\/payments\/sa\/api$/m);
  });

  it('a malformed answer: one line naming the request and the field, exit 1, no stack trace', async () => {
    for (const [args, where] of [
      [['entry', 'list'], /GET \/v1\/admin\/entries: entries\.1\.spiffe_id: /],
      [['token', 'generate'], /POST \/v1\/admin\/join-tokens: token: expected 32 hex digits/],
      [['agent', 'list'], /GET \/v1\/admin\/agents: agents: /],
    ] as const) {
      const r = await cli([...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(where);
      expect(r.stderr).toContain(`unexpected answer from the server at ${url}`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
