/**
 * Server, agent and workloads as real processes on one machine: join-token attestation, entries
 * flowing to the agent, SVIDs over the Workload API to processes attested by their uid, rotation,
 * deletion, server restarts, and every refusal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const CHILD = fileURLToPath(new URL('../support/workload-child.mjs', import.meta.url));
const TD = 'example.org';
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

let dataDir: string;
let agentDataDir: string;
let socket: string;
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

const inventoryPolicy = (path: string) => `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: inventory-ingress }
spec:
  action: ALLOW
  target: { services: [inventory] }
  rules:
    - name: orders-read
      from: [{ services: [orders] }]
      to: [{ methods: [GET], paths: ['${path}'] }]
`;

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

/** Runs a workload process (optionally as another uid) and collects its JSON lines. */
function workload(
  count: number,
  opts: { uid?: number; gid?: number; noHeader?: boolean } = {},
): Promise<Record<string, unknown>[]> {
  return new Promise((resolveRun, reject) => {
    const args = [CHILD, socket, String(count), ...(opts.noHeader ? ['noheader'] : [])];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`workload timed out; got: ${out} ${err}`));
    }, 25_000);
    child.on('close', () => {
      clearTimeout(t);
      try {
        resolveRun(
          out
            .trim()
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        );
      } catch (e) {
        reject(new Error(`bad workload output: ${out} ${err} ${(e as Error).message}`));
      }
    });
  });
}

beforeAll(async () => {
  dataDir = tempDir();
  agentDataDir = tempDir();
  chmodSync(agentDataDir, 0o755); // workloads of any uid reach the socket inside it
  socket = join(agentDataDir, 'agent.sock');
  apiPort = await freePort();
  agentPort = await freePort();
  decisionPort = await freePort();
  policyDir = tempDir();
  writeFileSync(join(policyDir, 'inventory.yaml'), inventoryPolicy('/v1/items*'));
  await startServer();
  const { body } = await api('POST', '/v1/admin/join-tokens', {});
  const bundle = await (await fetch(`http://127.0.0.1:${apiPort}/v1/bundle?format=pem`)).text();
  const bundleFile = join(agentDataDir, 'bundle.pem');
  (await import('node:fs')).writeFileSync(bundleFile, bundle);
  agent = await startCli(
    [
      'agent',
      '--server-address',
      `https://127.0.0.1:${agentPort}`,
      '--join-token',
      String(body.token),
      '--trust-bundle',
      bundleFile,
      '--socket',
      socket,
      '--decision-listen',
      `127.0.0.1:${decisionPort}`,
      '--data-dir',
      agentDataDir,
      '--log-level',
      'warn',
    ],
    /Ctrl-C to stop/,
  );
  children.push(agent.child);
  agentId = /agent ID\s+(\S+)/.exec(agent.output())?.[1] ?? '';
  expect(agentId).toBe(`spiffe://${TD}/spire/agent/join_token/${body.token}`);
  (globalThis as { joinToken?: string }).joinToken = String(body.token);
});

describe('agent and Workload API, end to end', () => {
  let rootEntry: string;

  it('the agent is attested and listed', async () => {
    const { body } = await api('GET', '/v1/admin/agents');
    const agents = body.agents as { spiffe_id: string; banned: boolean }[];
    expect(agents.map((a) => a.spiffe_id)).toContain(agentId);
  });

  it('the agent decides locally on the policies streamed from the server, and follows their changes', async () => {
    const allow = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${decisionPort}/v1/data/service_auth/allow`, {
        method: 'POST',
        body: JSON.stringify({
          input: { source_service: 'orders', target_service: 'inventory', method: 'GET', path },
        }),
      });
      return ((await res.json()) as { result: boolean }).result;
    };
    const until = async (fn: () => Promise<boolean>, what: string) => {
      const end = Date.now() + 15_000;
      while (!(await fn())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until(() => allow('/v1/items/7'), 'the first snapshot');
    expect(await allow('/v1/items/../admin')).toBe(false);
    expect(await allow('/v2/items/7')).toBe(false);
    // The local decision names the same snapshot version as the server.
    const local = await fetch(`http://127.0.0.1:${decisionPort}/v1/decide`, {
      method: 'POST',
      body: JSON.stringify({
        source_service: 'orders',
        target_service: 'inventory',
        method: 'GET',
        path: '/v1/items/7',
      }),
    });
    const status = await api('GET', '/v1/admin/policy');
    expect(((await local.json()) as { version: string }).version).toBe(status.body.version);

    writeFileSync(join(policyDir, 'inventory.yaml'), inventoryPolicy('/v2/items*'));
    await until(async () => (await allow('/v2/items/7')) && !(await allow('/v1/items/7')), 'the changed snapshot');

    // The agent's local decisions reach the server's audit log, allowed and denied alike — shipped
    // over mTLS with the agent's own SVID (no token was given), which the server names as reporter.
    await until(async () => {
      const { body } = await api('GET', '/v1/admin/audit/events?outcome=deny&limit=100');
      const events = (body.events ?? []) as {
        enforcer?: string;
        target?: { path?: string };
        details?: { reported_by?: string };
      }[];
      return events.some(
        (e) => e.enforcer === 'agent' && e.target?.path === '/v2/items/7' && e.details?.reported_by === agentId,
      );
    }, 'the agent decisions in the audit log');
  });

  it('refuses audit flags that contradict each other before starting anything', async () => {
    const dir = join(agentDataDir, 'unused');
    const mixed = await runCli(['agent', '--audit', 'log', '--audit-server', 'http://127.0.0.1:1', '--data-dir', dir]);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--audit-token-file and --audit-server go with --audit token, not --audit log');
    const noToken = await runCli(['agent', '--audit', 'token', '--data-dir', dir]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('--audit token needs --audit-token-file');
    const bogus = await runCli(['agent', '--audit', 'maybe', '--data-dir', dir]);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toContain('Allowed choices are svid, token, log');
  });

  it('a reused join token is refused and recorded', async () => {
    const token = (globalThis as { joinToken?: string }).joinToken as string;
    const r = await runCli([
      'agent',
      '--server-address',
      `https://127.0.0.1:${agentPort}`,
      '--join-token',
      token,
      '--trust-bundle',
      join(agentDataDir, 'bundle.pem'),
      '--data-dir',
      tempDir(),
      '--socket',
      join(tempDir(), 's.sock'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/attestation refused: join token already used/);
    const denied = await api('GET', '/v1/admin/agents');
    expect((denied.body.agents as unknown[]).length).toBe(1);
  });

  it('a process gets exactly its SVID, chosen by its uid; another uid is denied; no header is InvalidArgument', async () => {
    const created = await api('POST', '/v1/admin/entries', {
      spiffe_id: `spiffe://${TD}/ns/payments/sa/api-gateway`,
      parent_id: agentId,
      selectors: ['unix:uid:0'],
      x509_svid_ttl: 8,
    });
    expect(created.status).toBe(201);
    rootEntry = created.body.id as string;
    // Entry changes reach the agent within seconds.
    let got: Record<string, unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      got = await workload(1);
      if (got[0]?.spiffe_id) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(got[0]).toMatchObject({
      spiffe_id: `spiffe://${TD}/ns/payments/sa/api-gateway`,
      svids: 1,
      uri: `URI:spiffe://${TD}/ns/payments/sa/api-gateway`,
      key_matches: true,
      chain_verifies: true,
    });
    const nobody = await workload(1, { uid: 65534, gid: 65534 });
    expect(nobody[0]).toMatchObject({ error: 7 }); // PERMISSION_DENIED
    const noHeader = await workload(1, { noHeader: true });
    expect(noHeader[0]).toMatchObject({ error: 3 }); // INVALID_ARGUMENT
  });

  it('another uid gets its own identity once an entry names it', async () => {
    await api('POST', '/v1/admin/entries', {
      spiffe_id: `spiffe://${TD}/ns/payments/sa/nobody`,
      parent_id: agentId,
      selectors: ['unix:uid:65534'],
    });
    let got: Record<string, unknown>[] = [];
    for (let i = 0; i < 20 && !got[0]?.spiffe_id; i++) {
      got = await workload(1, { uid: 65534, gid: 65534 });
      if (!got[0]?.spiffe_id) await new Promise((r) => setTimeout(r, 250));
    }
    expect(got[0]?.spiffe_id).toBe(`spiffe://${TD}/ns/payments/sa/nobody`);
  });

  it('the stream delivers a rotated SVID before the old one passes half-life', async () => {
    const t0 = Date.now();
    const two = await workload(2);
    expect(two).toHaveLength(2);
    expect(two[0]?.serial).not.toBe(two[1]?.serial);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('the server killed and restarted while a workload streams: no error reaches the workload', async () => {
    // The workload (uid 65534) holds a 1 h SVID, so the outage is well inside its validity.
    const lines: Record<string, unknown>[] = [];
    const child = spawn(process.execPath, [CHILD, socket, '2', 'distinct'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      uid: 65534,
      gid: 65534,
    });
    children.push(child);
    child.stdout.on('data', (d: Buffer) => {
      for (const l of d.toString().trim().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
    });
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    for (let i = 0; i < 40 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(lines[0]?.spiffe_id).toBe(`spiffe://${TD}/ns/payments/sa/nobody`);
    server.child.kill('SIGKILL');
    await server.exited;
    await new Promise((r) => setTimeout(r, 1500));
    await startServer();
    // A change after the restart reaches the same stream: the agent reconnected on its own.
    const { body } = await api(
      'GET',
      `/v1/admin/entries?spiffe_id=${encodeURIComponent(`spiffe://${TD}/ns/payments/sa/nobody`)}`,
    );
    const id = (body.entries as { id: string }[])[0]?.id;
    expect((await api('PATCH', `/v1/admin/entries/${id}`, { hint: 'after-restart' })).status).toBe(200);
    await closed;
    // The restarted server also signs its CRL anew, and the agent passes a new CRL on to open
    // streams: a response with the same SVID may come between the two.
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.error !== undefined)).toEqual([]);
    expect(lines.at(-1)?.serial).not.toBe(lines[0]?.serial);
  });

  it('deleting the entry removes the SVID: the workload is denied', async () => {
    expect((await api('DELETE', `/v1/admin/entries/${rootEntry}`)).status).toBe(200);
    let got: Record<string, unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      got = await workload(1);
      if (got[0]?.error === 7) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(got[0]).toMatchObject({ error: 7 });
  });

  it('an agent cannot get an SVID for an entry that is not under it', async () => {
    const other = await api('POST', '/v1/admin/entries', {
      spiffe_id: `spiffe://${TD}/ns/x/sa/elsewhere`,
      parent_id: `spiffe://${TD}/spire/agent/join_token/someone-else`,
      selectors: ['unix:uid:0'],
    });
    const { readFileSync: rf } = await import('node:fs');
    const { Agent, request } = await import('undici');
    const { createCsr, csrToPem, generatePrivateKey } = await import('../../src/ca/index.js');
    const dispatcher = new Agent({
      connect: {
        ca: rf(join(agentDataDir, 'bundle.pem'), 'utf8'),
        cert: rf(join(agentDataDir, 'agent', 'agent-svid.pem'), 'utf8'),
        key: rf(join(agentDataDir, 'agent', 'agent-svid.key'), 'utf8'),
        checkServerIdentity: () => undefined,
      },
    });
    const res = await request(`https://127.0.0.1:${agentPort}/agent/v1/sign`, {
      method: 'POST',
      dispatcher,
      body: JSON.stringify({
        requests: [{ entry_id: other.body.id, csr: csrToPem(createCsr(generatePrivateKey('ec-p256'))) }],
      }),
    });
    const out = (await res.body.json()) as { results: { error?: string; chain_pem?: string }[] };
    expect(out.results[0]?.chain_pem).toBeUndefined();
    expect(out.results[0]?.error).toMatch(/not authorized/);
    // Without a client certificate, nothing but attestation answers.
    const anon = await request(`https://127.0.0.1:${agentPort}/agent/v1/sync`, {
      dispatcher: new Agent({ connect: { rejectUnauthorized: false } }),
    });
    expect(anon.statusCode).toBe(401);
    await anon.body.text();
    await dispatcher.close();
  });

  it('a banned agent drops every identity', async () => {
    await api('POST', '/v1/admin/entries', {
      spiffe_id: `spiffe://${TD}/ns/payments/sa/again`,
      parent_id: agentId,
      selectors: ['unix:uid:0'],
    });
    let got: Record<string, unknown>[] = [];
    for (let i = 0; i < 20 && !got[0]?.spiffe_id; i++) {
      got = await workload(1);
      if (!got[0]?.spiffe_id) await new Promise((r) => setTimeout(r, 250));
    }
    expect(got[0]?.spiffe_id).toBe(`spiffe://${TD}/ns/payments/sa/again`);
    expect((await api('POST', '/v1/admin/agents/ban', { spiffe_id: agentId })).status).toBe(200);
    for (let i = 0; i < 20; i++) {
      got = await workload(1);
      if (got[0]?.error === 7) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(got[0]).toMatchObject({ error: 7 });
    expect(agent.output()).toMatch(/agent revoked/);
    // Its SVID is still unexpired, but what it reports is refused (and the refusal recorded).
    await fetch(`http://127.0.0.1:${decisionPort}/v1/decide`, {
      method: 'POST',
      body: JSON.stringify({
        source: { service: 'orders' },
        target: { service: 'inventory' },
        request: { method: 'GET', path: '/x' },
      }),
    });
    let refused = false;
    for (let i = 0; i < 40 && !refused; i++) {
      const { body } = await api('GET', '/v1/admin/audit/events?kind=admin.action&outcome=deny&limit=100');
      refused = ((body.events ?? []) as { reason?: string }[]).some(
        (e) => e.reason === `audit ingestion refused: ${agentId} is banned`,
      );
      if (!refused) await new Promise((r) => setTimeout(r, 250));
    }
    expect(refused).toBe(true);
  });
});
