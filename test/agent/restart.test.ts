/**
 * An agent restarted while the server is down: server, agent and workloads as real processes. The
 * agent serves the SVIDs it cached (still valid ones only) and decides on the last policy it got,
 * until the server answers again; a corrupt or tampered cache serves nothing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const CHILD = fileURLToPath(new URL('../support/workload-child.mjs', import.meta.url));
const TD = 'example.org';
const NOBODY = 65534;
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

let dataDir: string;
let agentDataDir: string;
let agentDir: string;
let cacheFile: string;
let socket: string;
let bundleFile: string;
let apiPort: number;
let agentPort: number;
let decisionPort: number;
let policyDir: string;
let server: Awaited<ReturnType<typeof startCli>>;
let agent: Awaited<ReturnType<typeof startCli>>;
let agentId: string;

async function api(method: string, path: string, body?: unknown) {
  const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function startServer() {
  server = await startCli(
    [
      'server',
      '--port',
      String(apiPort),
      '--agent-port',
      String(agentPort),
      '--policies',
      policyDir,
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ],
    /Ctrl-C to stop/,
  );
  children.push(server.child);
}

async function startAgent(joinToken?: string) {
  agent = await startCli(
    [
      'agent',
      '--server-address',
      `https://127.0.0.1:${agentPort}`,
      // A restart (no join token) finds the bundle the first start kept: no --trust-bundle then.
      ...(joinToken ? ['--join-token', joinToken, '--trust-bundle', bundleFile] : []),
      '--socket',
      socket,
      '--decision-listen',
      `127.0.0.1:${decisionPort}`,
      '--audit',
      'log',
      '--data-dir',
      agentDataDir,
      '--log-level',
      'info',
    ],
    /Ctrl-C to stop/,
    // The Workload API limits come from the configuration (here its environment form).
    { env: { NEVERTRUST_AGENT_WORKLOAD_API_HANDSHAKE_TIMEOUT: '1s' } },
  );
  children.push(agent.child);
}

async function kill(p: Awaited<ReturnType<typeof startCli>>) {
  p.child.kill('SIGKILL');
  await p.exited;
}

/** Runs a workload process (optionally as another uid); resolves with its first JSON line. */
function workload(uid?: number): Promise<Record<string, unknown>> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CHILD, socket, '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(uid !== undefined ? { uid, gid: uid } : {}),
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`workload timed out; got: ${out} ${err}`));
    }, 15_000);
    child.on('close', () => {
      clearTimeout(t);
      try {
        resolveRun(JSON.parse(out.trim().split('\n')[0] ?? '') as Record<string, unknown>);
      } catch (e) {
        reject(new Error(`bad workload output: ${out} ${err} ${(e as Error).message}`));
      }
    });
  });
}

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** The local decision of the agent's decision listener for orders → inventory GET `path`. */
async function decide(path: string): Promise<{ allow: boolean; version?: string; reason?: string }> {
  const res = await fetch(`http://127.0.0.1:${decisionPort}/v1/decide`, {
    method: 'POST',
    body: JSON.stringify({ source_service: 'orders', target_service: 'inventory', method: 'GET', path }),
  });
  return (await res.json()) as { allow: boolean; version?: string; reason?: string };
}

interface CacheFile {
  svids: { entry_id: string; chain: string[]; key: string }[];
  entries: { id: string }[];
}
const readCache = () => JSON.parse(readFileSync(cacheFile, 'utf8')) as CacheFile;

let forRoot: string;
let forNobody: string;

beforeAll(async () => {
  dataDir = tempDir();
  agentDataDir = tempDir();
  chmodSync(agentDataDir, 0o755); // workloads of any uid reach the socket inside it
  agentDir = join(agentDataDir, 'agent');
  cacheFile = join(agentDir, 'cache.json');
  socket = join(agentDataDir, 'agent.sock');
  apiPort = await freePort();
  agentPort = await freePort();
  decisionPort = await freePort();
  policyDir = tempDir();
  writeFileSync(
    join(policyDir, 'inventory.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: inventory-ingress }
spec:
  action: ALLOW
  target: { services: [inventory] }
  rules:
    - name: orders-read
      from: [{ services: [orders] }]
      to: [{ methods: [GET], paths: ['/v1/items*'] }]
`,
  );
  await startServer();
  const { body } = await api('POST', '/v1/admin/join-tokens', {});
  bundleFile = join(agentDataDir, 'bundle.pem');
  writeFileSync(bundleFile, await (await fetch(`http://127.0.0.1:${apiPort}/v1/bundle?format=pem`)).text());
  await startAgent(String(body.token));
  agentId = `spiffe://${TD}/spire/agent/join_token/${body.token}`;
  const root = await api('POST', '/v1/admin/entries', {
    spiffe_id: `spiffe://${TD}/ns/payments/sa/root-svc`,
    parent_id: agentId,
    selectors: ['unix:uid:0'],
  });
  forRoot = root.body.id as string;
  // A short-lived SVID: it expires while the server is down.
  const nobody = await api('POST', '/v1/admin/entries', {
    spiffe_id: `spiffe://${TD}/ns/payments/sa/nobody-svc`,
    parent_id: agentId,
    selectors: [`unix:uid:${NOBODY}`],
    x509_svid_ttl: 6,
  });
  forNobody = nobody.body.id as string;
});

describe('agent restarted while the server is down', () => {
  let rootSerial: string;
  let policyVersion: string;

  it('while connected, the agent caches entries, SVIDs with their keys and the policy, privately', async () => {
    const root = await until(async () => {
      const r = await workload();
      return r.spiffe_id ? r : undefined;
    }, 'the root SVID');
    expect(root).toMatchObject({ spiffe_id: `spiffe://${TD}/ns/payments/sa/root-svc`, key_matches: true });
    rootSerial = String(root.serial);
    await until(async () => (await workload(NOBODY)).spiffe_id, 'the nobody SVID');
    const d = await until(async () => {
      const r = await decide('/v1/items/7');
      return r.allow ? r : undefined;
    }, 'the policy snapshot');
    policyVersion = String(d.version);
    await until(async () => {
      try {
        const c = readCache();
        return c.svids.some((s) => s.entry_id === forRoot) && c.svids.some((s) => s.entry_id === forNobody);
      } catch {
        return false;
      }
    }, 'both SVIDs in the cache');
    expect(statSync(cacheFile).mode & 0o777).toBe(0o600);
    expect(statSync(agentDir).mode & 0o777).toBe(0o700);
  });

  it('the configured handshake timeout closes a Workload API connection that never sends a request', async () => {
    const t0 = Date.now();
    const silent = netConnect(socket);
    silent.on('error', () => {});
    silent.resume();
    const ms = await new Promise<number>((r) => silent.once('close', () => r(Date.now() - t0)));
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(5000);
    await until(async () => /no request within 1000 ms of connecting; closed/.test(agent.output()), 'the log line');
  });

  it('serves the cached, still valid SVID and the last policy; an expired cached SVID is not served', async () => {
    await kill(server);
    await kill(agent); // SIGKILL: what is served next comes from what was written before, not at exit
    const nobodyLeaf = new X509Certificate(
      Buffer.from(readCache().svids.find((s) => s.entry_id === forNobody)?.chain[0] ?? '', 'base64'),
    );
    const wait = Date.parse(nobodyLeaf.validTo) - Date.now() + 300;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));

    await startAgent();
    const root = await workload();
    expect(root).toMatchObject({
      spiffe_id: `spiffe://${TD}/ns/payments/sa/root-svc`,
      serial: rootSerial,
      key_matches: true,
      chain_verifies: true,
    });
    expect(await workload(NOBODY)).toMatchObject({ error: 7 }); // PERMISSION_DENIED: its SVID expired
    const allowed = await decide('/v1/items/7');
    expect(allowed).toMatchObject({ allow: true, version: policyVersion });
    expect((await decide('/v2/items/7')).allow).toBe(false);
    // The log tells the truth: one SVID served, the expired one not.
    await until(
      async () => /server unreachable; serving 1 cached SVIDs valid until \S+ from /.test(agent.output()),
      'the log line',
    );
    expect(agent.output()).toMatch(/"expired":1/);
  });

  it('when the server answers, the normal sync takes over: the expired identity is issued again', async () => {
    await startServer();
    const nobody = await until(
      async () => {
        const r = await workload(NOBODY);
        return r.spiffe_id ? r : undefined;
      },
      'a fresh nobody SVID',
      30_000,
    );
    expect(nobody).toMatchObject({ spiffe_id: `spiffe://${TD}/ns/payments/sa/nobody-svc`, key_matches: true });
    expect(agent.output()).toMatch(/connected to the server/);
  });

  it('a cached key that does not match its certificate: the whole cache is ignored, nothing is served', async () => {
    await kill(server);
    await kill(agent);
    const c = readCache();
    const [a, b] = c.svids;
    expect(a && b).toBeTruthy();
    if (!a || !b) return;
    [a.key, b.key] = [b.key, a.key];
    writeFileSync(cacheFile, JSON.stringify(c));
    await startAgent();
    expect(await workload()).toMatchObject({ error: 7 });
    expect((await decide('/v1/items/7')).allow).toBe(false);
    await until(
      async () => /no cached SVIDs: serving nothing until the server answers/.test(agent.output()),
      'the log line',
    );
    expect(agent.output()).toMatch(/ignoring the agent cache/);
    expect(agent.output()).toMatch(/key does not match the certificate/);
  });

  it('a cache file that is not JSON is ignored with a warning, nothing is served', async () => {
    await kill(agent);
    writeFileSync(cacheFile, '{"format":"nevertrust-agent-cache/1","svids":[{');
    await startAgent();
    expect(await workload()).toMatchObject({ error: 7 });
    expect((await decide('/v1/items/7')).allow).toBe(false);
    expect(agent.output()).toMatch(/ignoring the agent cache/);
  });

  it('a banned agent removes its cache: restarted while the server is down, it serves nothing', async () => {
    await startServer();
    await until(async () => (await workload()).spiffe_id, 'the root SVID from the server again', 30_000);
    await until(async () => {
      try {
        return readCache().svids.length > 0;
      } catch {
        return false;
      }
    }, 'a fresh cache');
    expect((await api('POST', '/v1/admin/agents/ban', { spiffe_id: agentId })).status).toBe(200);
    await until(async () => /agent revoked/.test(agent.output()), 'the revocation');
    await new Promise((r) => setTimeout(r, 300)); // past the cache write delay: nothing is written again
    expect(existsSync(cacheFile)).toBe(false);
    await kill(server);
    await kill(agent);
    await startAgent();
    expect(await workload()).toMatchObject({ error: 7 });
    expect((await decide('/v1/items/7')).allow).toBe(false);
  });
});
