/**
 * The policy watcher in a running server, for every way a policy gets saved: each change is
 * followed by real decisions through POST /v1/decide that show the new policy in force.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, openSync, renameSync, rmSync, symlinkSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const run = promisify(execFile);
const running: RunningServer[] = [];
afterAll(async () => {
  for (const s of running) await s.close();
});

const ID = (name: string) => `spiffe://example.org/ns/shop/sa/${name}`;
/** One policy: only `caller` may call orders. Callers' names have five letters so edits in place keep the length. */
const policy = (caller: string, name = 'orders-ingress') =>
  `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: ${name} }\nspec:\n  action: ALLOW\n  target: { spiffeIds: ['${ID('orders')}'] }\n  rules:\n    - name: caller\n      from: [{ principals: ['${ID(caller)}'] }]\n`;

interface Status {
  version: string | null;
  last_error: string | null;
  warnings: string[];
  watch: { ok: boolean; error: string | null; since: string } | null;
}

async function start(policies: string, dir: string, extra: Record<string, unknown> = {}) {
  const plugin = policyPlugin();
  const server = await startServer({
    config: configSchema.parse({ data_dir: join(dir, 'data'), server: { port: 0 }, policies, ...extra }),
    logger: createLogger('silent'),
    plugins: [plugin, decisionPlugin({ policy: plugin.handle })],
  });
  running.push(server);
  const token = (await import('node:fs')).readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
  const decide = async (caller: string) => {
    const res = await fetch(`${server.url}/v1/decide`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        source: { spiffe_id: ID(caller) },
        target: { spiffe_id: ID('orders') },
        request: { method: 'GET', path: '/' },
      }),
    });
    return (await res.json()) as { decision: string; version: string };
  };
  const status = async () =>
    (await (
      await fetch(`${server.url}/v1/admin/policy`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as Status;
  const metrics = async () => (await fetch(`${server.url}/metrics`)).text();
  /** Waits until `caller` alone is allowed: the new policy is in force, the old principal is not. */
  const inForce = async (caller: string, before: string) => {
    const deadline = Date.now() + 10_000;
    while ((await decide(caller)).decision !== 'allow') {
      if (Date.now() > deadline) throw new Error(`the policy allowing ${caller} never came into force`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await decide(before)).decision).toBe('deny');
  };
  return { server, plugin, decide, status, metrics, inForce };
}

describe('the policy watcher never goes deaf', () => {
  it('a file: renamed over twice, overwritten, edited in place, sed -i; an empty file is refused', async () => {
    const dir = tempDir();
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, policy('alice'));
    const s = await start(file, dir);
    expect((await s.decide('alice')).decision).toBe('allow');
    expect((await s.status()).watch).toMatchObject({ ok: true, error: null });

    // How editors, config management and Kubernetes save: a new file renamed over the old one.
    writeFileSync(join(dir, 'new.yaml'), policy('bobby'));
    renameSync(join(dir, 'new.yaml'), file);
    await s.inForce('bobby', 'alice');
    // The second rename is the one the old watcher (bound to the first inode) never saw.
    writeFileSync(join(dir, 'new.yaml'), policy('carol'));
    await run('mv', [join(dir, 'new.yaml'), file]);
    await s.inForce('carol', 'bobby');
    // A plain overwrite: truncate and write the same inode.
    writeFileSync(file, policy('dave1'));
    await s.inForce('dave1', 'carol');
    // An edit in place: same length, bytes rewritten at their offset, no truncation.
    const text = policy('dave1');
    const fd = openSync(file, 'r+');
    writeSync(fd, 'erin1', text.lastIndexOf('dave1'));
    closeSync(fd);
    await s.inForce('erin1', 'dave1');
    // sed -i: a temporary file in the same directory, renamed over.
    await run('sed', ['-i', 's/erin1/frank/', file]);
    await s.inForce('frank', 'erin1');

    // An empty file (a save caught between truncate and write) is refused: the last policy stays.
    const kept = (await s.decide('frank')).version;
    writeFileSync(file, '');
    const deadline = Date.now() + 10_000;
    while ((await s.status()).last_error === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const st = await s.status();
    expect(st.last_error).toMatch(/policy\.yaml:1:1: \(file\): empty policy file refused/);
    expect(st.version).toBe(kept);
    expect(await s.decide('frank')).toMatchObject({ decision: 'allow', version: kept });
    // Fixed back to the very same content: the version does not change, yet the error is gone.
    writeFileSync(file, policy('frank'));
    while ((await s.status()).last_error !== null && Date.now() < deadline + 10_000)
      await new Promise((r) => setTimeout(r, 50));
    expect((await s.status()).last_error).toBeNull();
    expect((await s.status()).version).toBe(kept);
    const m = await s.metrics();
    expect(m).toMatch(/nevertrust_policy_reload_total\{result="changed"\} [5-9]/);
    expect(m).toMatch(/nevertrust_policy_reload_total\{result="rejected"\} [1-9]/);
    expect(m).toMatch(/nevertrust_policy_watch_errors_total 0/);
  }, 120_000);

  it('a directory: replaced by a new one (mv pol pol.old && mkdir pol), then edited', async () => {
    const dir = tempDir();
    const pol = join(dir, 'pol');
    mkdirSync(pol);
    writeFileSync(join(pol, 'orders.yaml'), policy('alice'));
    const s = await start(pol, dir);
    expect((await s.decide('alice')).decision).toBe('allow');
    renameSync(pol, `${pol}.old`);
    mkdirSync(pol);
    writeFileSync(join(pol, 'orders.yaml'), policy('bobby'));
    await s.inForce('bobby', 'alice');
    // The new directory is watched: a later edit inside it is seen too.
    writeFileSync(join(pol, 'orders.yaml'), policy('carol'));
    await s.inForce('carol', 'bobby');
    // The old directory is not: editing it changes nothing.
    writeFileSync(join(`${pol}.old`, 'orders.yaml'), policy('mallo'));
    await new Promise((r) => setTimeout(r, 2500));
    expect((await s.decide('mallo')).decision).toBe('deny');
    expect((await s.decide('carol')).decision).toBe('allow');
  }, 120_000);

  it('a Kubernetes ConfigMap volume: links into ..data are followed, the ..data swap is picked up', async () => {
    const dir = tempDir();
    const vol = join(dir, 'vol');
    mkdirSync(join(vol, '..2026_12_06_01'), { recursive: true });
    writeFileSync(join(vol, '..2026_12_06_01', 'orders.yaml'), policy('alice'));
    symlinkSync('..2026_12_06_01', join(vol, '..data'));
    symlinkSync('..data/orders.yaml', join(vol, 'orders.yaml'));
    const s = await start(vol, dir);
    // Before: the links were skipped, zero policies, everything denied.
    expect((await s.decide('alice')).decision).toBe('allow');
    expect((await s.status()).warnings).toEqual([]);

    // The kubelet's update: a new timestamped directory, ..data swapped by rename, the old one removed.
    mkdirSync(join(vol, '..2026_12_06_02'));
    writeFileSync(join(vol, '..2026_12_06_02', 'orders.yaml'), policy('bobby'));
    symlinkSync('..2026_12_06_02', join(vol, '..data_tmp'));
    renameSync(join(vol, '..data_tmp'), join(vol, '..data'));
    rmSync(join(vol, '..2026_12_06_01'), { recursive: true });
    await s.inForce('bobby', 'alice');

    // A link leading out of the directory is refused, named, and the last good policy stays.
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'evil.yaml'), policy('mallo', 'evil'));
    symlinkSync(join(outside, 'evil.yaml'), join(vol, 'evil.yaml'));
    const deadline = Date.now() + 10_000;
    while ((await s.status()).last_error === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await s.status()).last_error).toMatch(
      /evil\.yaml:1:1: \(file\): symbolic link leads outside the policy directory/,
    );
    expect((await s.decide('mallo')).decision).toBe('deny');
    expect((await s.decide('bobby')).decision).toBe('allow');
  }, 120_000);
});
