import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { decide } from '../../src/policy/index.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort, runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/policies/payments', import.meta.url));
const running: RunningServer[] = [];
afterAll(async () => {
  for (const s of running) await s.close();
});

const charge = {
  source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
  target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
  request: { method: 'POST', path: '/v1/charges' },
};

describe('policies in the server', () => {
  it('loads a directory, stores the snapshot, keeps the last good one when a change is broken', async () => {
    const dir = tempDir();
    const policies = join(dir, 'policies');
    cpSync(EXAMPLE, policies, { recursive: true });
    const events: ServerEvent[] = [];
    const plugin = policyPlugin();
    const server = await startServer({
      config: configSchema.parse({ data_dir: dir, server: { port: 0 }, policies }),
      logger: createLogger('silent'),
      plugins: [plugin, { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) }],
    });
    running.push(server);
    const first = plugin.handle.current();
    expect(first?.version).toMatch(/^sha256:/);
    expect(decide(first!, charge).decision).toBe('allow');
    expect((await server.store.policySnapshots.latest())?.version).toBe(first?.version);

    // A broken edit: rejected with file and line, the last good snapshot stays in force.
    const file = join(policies, 'payment-service.yaml');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good.replace('action: ALLOW', 'action: ALLOWW'));
    // Reloads run on a worker thread: wait for the verdict rather than a fixed time.
    const isRejection = (e: ServerEvent) => e.kind === 'policy.changed' && e.outcome === 'deny';
    for (let i = 0; i < 100 && !events.some(isRejection); i++) await new Promise((r) => setTimeout(r, 100));
    expect(plugin.handle.current()?.version).toBe(first?.version);
    const rejected = events.find(isRejection);
    expect(rejected?.reason).toMatch(/payment-service\.yaml:\d+:\d+/);
    const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    const status = (await (
      await fetch(`${server.url}/v1/admin/policy`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      last_error: string;
      version: string;
    };
    expect(status.version).toBe(first?.version);
    expect(status.last_error).toMatch(/ALLOWW|action/);

    // A good edit: a new version in force, stored, recorded.
    writeFileSync(file, good.replace('paths: [/v1/charges, /v1/refunds]', 'paths: [/v1/refunds]'));
    for (let i = 0; i < 100 && plugin.handle.current()?.version === first?.version; i++)
      await new Promise((r) => setTimeout(r, 100));
    const second = plugin.handle.current();
    expect(second?.version).not.toBe(first?.version);
    expect(decide(second!, charge).decision).toBe('deny');
    expect((await server.store.policySnapshots.list()).map((s) => s.version)).toEqual([
      second?.version,
      first?.version,
    ]);
    const snap = (await (
      await fetch(`${server.url}/v1/admin/policy/snapshot`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      version: string;
      policies: unknown[];
    };
    expect(snap.version).toBe(second?.version);
    expect(snap.policies.length).toBeGreaterThan(0);
  });

  it('a broken policy at start stops the server with file:line:column, exit 2', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'bad.yaml'),
      'apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata:\n  name: x\nspec:\n  action: ALLOW\n  rules:\n    - to:\n        - methods: [get]\n',
    );
    const r = await runCli([
      'server',
      '--port',
      String(await freePort()),
      '--agent-port',
      '0',
      '--data-dir',
      join(dir, 'data'),
      '--policies',
      join(dir, 'bad.yaml'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml:\d+:\d+/);
  });

  it('path_normalization reaches the snapshot agents get: strict by default, lenient on request', async () => {
    const dotted = { ...charge, request: { method: 'POST', path: '/v1/x/../charges' } };
    const decisions: string[] = [];
    for (const mode of [undefined, 'lenient']) {
      const dir = tempDir();
      const plugin = policyPlugin();
      const server = await startServer({
        config: configSchema.parse({
          data_dir: dir,
          server: { port: 0 },
          policies: EXAMPLE,
          ...(mode ? { path_normalization: mode } : {}),
        }),
        logger: createLogger('silent'),
        plugins: [plugin],
      });
      running.push(server);
      const snap = plugin.handle.current();
      const d = decide(snap!, dotted);
      decisions.push(d.decision);
      if (!mode) expect(d.reason).toContain('refused by path_normalization: strict');
      else expect(snap?.options).toEqual({ path: { strict: false } });
    }
    expect(decisions).toEqual(['deny', 'allow']);
    expect(() => configSchema.parse({ path_normalization: 'loose' })).toThrow(/strict/);
  });

  it('the policy CLI runs through the main program: test passes on the example, eval explains', async () => {
    const t = await runCli(['policy', 'test', EXAMPLE]);
    expect(t.code, t.stderr + t.stdout).toBe(0);
    const dir = tempDir();
    writeFileSync(
      join(dir, 'req.json'),
      JSON.stringify({ ...charge, request: { method: 'POST', path: '/v1/charges/../admin' } }),
    );
    const e = await runCli(['policy', 'eval', '--policies', EXAMPLE, '--input', join(dir, 'req.json')]);
    expect(JSON.parse(e.stdout)).toMatchObject({ decision: 'deny' });
    const usage = await runCli(['policy', 'eval', '--input', join(dir, 'req.json')]);
    expect(usage.code).toBe(2);
    // --path-normalization: strict (the default) refuses the dot segment, lenient resolves it.
    writeFileSync(
      join(dir, 'dotted.json'),
      JSON.stringify({ ...charge, request: { method: 'POST', path: '/v1/x/../charges' } }),
    );
    const evalAs = (...mode: string[]) =>
      runCli(['policy', 'eval', '--policies', EXAMPLE, '--input', join(dir, 'dotted.json'), ...mode]);
    expect(JSON.parse((await evalAs()).stdout)).toMatchObject({ decision: 'deny' });
    expect(JSON.parse((await evalAs('--path-normalization', 'lenient')).stdout)).toMatchObject({ decision: 'allow' });
    expect((await evalAs('--path-normalization', 'loose')).code).toBe(2);
  });
});
