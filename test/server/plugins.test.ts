/**
 * Plugins declare their dependencies (checked before the server binds or opens anything), and
 * refusals are answered and recorded once, by the router's refusal hook, whichever plugin refused.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { dispatch } from '../../src/server/router.js';
import {
  HttpError,
  refusal,
  Router,
  type RunningServer,
  type ServerEvent,
  ServerStartError,
  startServer,
} from '../../src/server/index.js';
import { ADMIN_TOKEN_FILE } from '../../src/server/admin-auth.js';
import { listen } from '../../src/util/listen.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const running: RunningServer[] = [];
afterAll(async () => {
  for (const s of running) await s.close();
});

const config = (dir: string) => configSchema.parse({ data_dir: dir, server: { port: 0 } });

describe('plugin dependencies', () => {
  it('a missing dependency is a ServerStartError naming both plugins, before the data dir is touched', async () => {
    const dir = tempDir();
    const policy = policyPlugin();
    const err = await startServer({
      config: config(dir),
      logger: createLogger('silent'),
      plugins: [decisionPlugin({ policy: policy.handle })],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as Error).message).toBe(
      "plugin 'decision' depends on plugin 'policy', which is not registered: add it",
    );
    expect(existsSync(join(dir, ADMIN_TOKEN_FILE))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a dependency listed after its user is refused with the order to use; the right order starts', async () => {
    const policy = policyPlugin();
    const decision = decisionPlugin({ policy: policy.handle });
    const err = await startServer({
      config: config(tempDir()),
      logger: createLogger('silent'),
      plugins: [decision, policy],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as Error).message).toBe(
      "plugin 'decision' depends on plugin 'policy', which is listed after it: list 'policy' before 'decision'",
    );
    const server = await startServer({
      config: config(tempDir()),
      logger: createLogger('silent'),
      plugins: [policy, decision],
    });
    running.push(server);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('a conditional dependency: the decision gRPC port with mTLS needs the CA', async () => {
    const ca = caPlugin();
    const policy = policyPlugin();
    const decision = decisionPlugin({ policy: policy.handle, grpc: { port: 0, mtls: { ca: ca.handle } } });
    const err = await startServer({
      config: config(tempDir()),
      logger: createLogger('silent'),
      plugins: [policy, decision],
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("plugin 'decision' depends on plugin 'ca', which is not registered: add it");
  });

  it('duplicate names and self-dependencies are refused', async () => {
    const noop = { name: 'x', register: () => {} };
    for (const [plugins, message] of [
      [[noop, noop], "two plugins are named 'x': plugin names must be unique"],
      [[{ ...noop, dependsOn: ['x'] }], "plugin 'x' depends on itself"],
    ] as const) {
      const err = await startServer({
        config: config(tempDir()),
        logger: createLogger('silent'),
        plugins: [...plugins],
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServerStartError);
      expect((err as Error).message).toBe(message);
    }
  });
});

describe('the refusal hook', () => {
  it('records exactly one event per refusal, for routes of different plugins, and answers each 401', async () => {
    const events: ServerEvent[] = [];
    const ca = caPlugin();
    const policy = policyPlugin();
    const server = await startServer({
      config: configSchema.parse({ data_dir: tempDir(), server: { port: 0 } }),
      logger: createLogger('silent'),
      plugins: [ca, policy, { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) }],
    });
    running.push(server);
    const noToken = await fetch(`${server.url}/v1/admin/policy`);
    const badToken = await fetch(`${server.url}/v1/admin/ca/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${'x'.repeat(32)}` },
    });
    expect([noToken.status, badToken.status]).toEqual([401, 401]);
    expect(await noToken.json()).toEqual({
      error: 'unauthenticated',
      message: 'admin credential required: Authorization: Bearer <token from data_dir/admin.token>',
    });
    expect(await badToken.json()).toEqual({ error: 'unauthenticated', message: 'invalid admin credential' });
    const denied = events.filter((e) => e.outcome === 'deny');
    expect(denied).toHaveLength(2);
    expect(denied.map((e) => [e.kind, e.target.resource, e.target.method, e.reason])).toEqual([
      [
        'admin.action',
        '/v1/admin/policy',
        'GET',
        'admin credential required: Authorization: Bearer <token from data_dir/admin.token>',
      ],
      ['admin.action', '/v1/admin/ca/rotate', 'POST', 'invalid admin credential'],
    ]);
    expect(denied.every((e) => e.source.ip !== undefined)).toBe(true);
    // Nothing was rotated: the refused request never reached its handler.
    expect(events.some((e) => e.target.resource === 'ca.rotate')).toBe(false);
  });

  it('a refusal is answered even when a hook fails (the failure is logged); a plain HttpError is not recorded', async () => {
    const recorded: string[] = [];
    const logged: unknown[] = [];
    const router = new Router()
      .onRefusal(() => {
        throw new Error('audit log unavailable');
      })
      .onRefusal((_req, url, err, note) => recorded.push(`${url.pathname} ${err.status} ${note.by}`));
    router.on('GET', '/refused', () => {
      throw refusal(new HttpError(429, 'rate_limited', 'slow down'), { by: 'caller', headers: { 'retry-after': '1' } });
    });
    router.on('GET', '/plain', () => {
      throw new HttpError(400, 'bad_request', 'not a refusal to record');
    });
    const http = createServer((req, res) => void dispatch(router, req, res, (e) => logged.push(e)));
    const port = await listen(http, { host: '127.0.0.1', port: 0 });
    try {
      const r = await fetch(`http://127.0.0.1:${port}/refused`);
      expect(r.status).toBe(429);
      expect(r.headers.get('retry-after')).toBe('1');
      expect(await r.json()).toEqual({ error: 'rate_limited', message: 'slow down' });
      expect((await fetch(`http://127.0.0.1:${port}/plain`)).status).toBe(400);
      expect(recorded).toEqual(['/refused 429 caller']);
      expect(logged.map((e) => (e as Error).message)).toEqual(['audit log unavailable']);
    } finally {
      await new Promise((r) => http.close(r));
    }
  });
});
