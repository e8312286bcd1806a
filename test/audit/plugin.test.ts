/**
 * The audit server plugin and the `nevertrust audit` commands: ingestion from an HTTP shipper,
 * query/show/tail/verify/checkpoint over the admin API, server events, anomalies, and kill -9 of the
 * server under load.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { sql } from 'kysely';
import { Agent, request } from 'undici';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  type AuditEventInput,
  createHttpShipper,
  queryAuditLog,
  type StoredAuditEvent,
  verifyInclusion,
  verifyLog,
} from '../../src/audit/index.js';
import { registerAuditCommands } from '../../src/cli/commands/audit.js';
import { CliError } from '../../src/cli/errors.js';
import { enforce } from '../../src/pep/decision.js';
import { compile, parsePolicyText } from '../../src/policy/index.js';
import { configSchema } from '../../src/config/index.js';
import { readAdminToken, type RunningServer, type ServerContext, startServer } from '../../src/server/index.js';
import { agentEndpointPlugin } from '../../src/server/plugins/agent-endpoint.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { certificatesToPem } from '../../src/ca/index.js';
import { openStore } from '../../src/store/index.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/cli.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const running: RunningServer[] = [];
afterAll(async () => {
  for (const s of running) await s.close();
});

async function start(extra: Parameters<typeof auditPlugin>[0] = {}) {
  const dataDir = tempDir();
  const config = configSchema.parse({ data_dir: dataDir, server: { port: 0, shutdown_timeout: 2 } });
  const plugin = auditPlugin({ checkpointEvery: 100, checkpointIntervalMs: 0, ...extra });
  let ctx!: ServerContext;
  const server = await startServer({
    config,
    logger: createLogger('silent'),
    plugins: [
      plugin,
      {
        name: 'spy',
        register: (c) => {
          ctx = c;
        },
      },
    ],
  });
  running.push(server);
  const token = readAdminToken(dataDir) as string;
  return { server, plugin, dataDir, token, ctx };
}

/** Runs `nevertrust audit …` in process; returns stdout, or throws the CliError. */
async function cli(dataDir: string, args: string[]): Promise<string> {
  const program = new Command('nevertrust').exitOverride();
  program.option('-c, --config <file>').option('-d, --data-dir <dir>').option('--log-level <level>');
  registerAuditCommands(program);
  for (const c of program.commands) {
    c.exitOverride();
    for (const s of c.commands) s.exitOverride();
  }
  let text = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += chunk.toString();
    return true;
  });
  try {
    await program.parseAsync(['node', 'nevertrust', '--data-dir', dataDir, ...args]);
  } finally {
    spy.mockRestore();
  }
  return text;
}

const decision = (i: number, over: Record<string, unknown> = {}): AuditEventInput & { id: string } =>
  ({
    id: `pep-${i}`,
    kind: 'access.decision',
    decision_id: `dec-${i}`,
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/${i % 3 === 0 ? 'api' : 'web'}` },
    target: { service: i % 2 ? 'payments' : 'orders', method: 'POST', path: '/v1/charges' },
    outcome: i % 5 === 0 ? 'deny' : 'allow',
    reason: 'rule matched',
    enforcer: 'sidecar-7',
    latency_us: 4,
    ...over,
  }) as AuditEventInput & { id: string };

describe('audit plugin and CLI', () => {
  it('ingests from the HTTP shipper, answers queries, shows proofs, tails, verifies, checkpoints', async () => {
    const cpFile = join(tempDir(), 'cps.ndjson');
    const { server, dataDir, token, plugin } = await start({ checkpointFile: cpFile });
    const shipper = createHttpShipper({
      url: server.url,
      token,
      spillDir: join(tempDir(), 'pep-spill'),
      batchSize: 100,
    });
    for (let i = 0; i < 500; i++) shipper.record(decision(i));
    await shipper.flush();
    expect(shipper.stats()).toMatchObject({ shipped: 500, lost: 0 });
    await shipper.close();
    expect(plugin.handle.log().treeSize).toBeGreaterThanOrEqual(500);

    // Malformed batches are refused whole with a clear message.
    const bad = await request(`${server.url}/v1/audit/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events: [decision(9000), { kind: 'access.decision', outcome: 'maybe' }] }),
    });
    expect(bad.statusCode).toBe(400);
    expect(((await bad.body.json()) as { message: string }).message).toMatch(/event 1: invalid audit event at outcome/);
    const anon = await request(`${server.url}/v1/audit/events`, { method: 'POST', body: '{"events":[]}' });
    expect(anon.statusCode).toBe(401);
    await anon.body.dump();

    // query
    const json = JSON.parse(
      await cli(dataDir, [
        'audit',
        'query',
        '--server',
        server.url,
        '--target',
        'payments',
        '--outcome',
        'deny',
        '--limit',
        '1000',
        '--format',
        'json',
      ]),
    ) as { events: StoredAuditEvent[] };
    const want = Array.from({ length: 500 }, (_, i) => i).filter((i) => i % 2 === 1 && i % 5 === 0);
    expect(json.events.map((e) => e.decision_id).sort()).toEqual(want.map((i) => `dec-${i}`).sort());
    const tableOut = await cli(dataDir, [
      'audit',
      'query',
      '--server',
      server.url,
      '--source',
      'spiffe://example.org/ns/prod/sa/api',
      '--since',
      '1h',
      '--limit',
      '5',
    ]);
    expect(tableOut.split('\n')[0]).toMatch(/^SEQ\s+TIME\s+KIND\s+OUTCOME\s+SOURCE\s+TARGET\s+REQUEST\s+REASON/);
    expect(tableOut).toMatch(/\(more: --cursor \d+\)/);
    const nd = await cli(dataDir, [
      'audit',
      'query',
      '--server',
      server.url,
      '--decision-id',
      'dec-7',
      '--format',
      'ndjson',
    ]);
    expect(
      nd
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as StoredAuditEvent).id),
    ).toEqual(['pep-7']);
    await expect(cli(dataDir, ['audit', 'query', '--server', server.url, '--since', 'yesterday-ish'])).rejects.toThrow(
      /--since: "yesterday-ish" is not a time/,
    );

    // show with its proof, checked by the CLI and again here
    const shown = JSON.parse(
      await cli(dataDir, ['audit', 'show', 'pep-42', '--server', server.url, '--format', 'json']),
    ) as {
      event: StoredAuditEvent;
      inclusion: {
        seq: number;
        tree_size: number;
        leaf_hash: string;
        proof: string[];
        checkpoint: { root_hash: string };
      };
      proof_verified: boolean;
      checkpoint_signature_verified: boolean;
    };
    expect(shown.event.decision_id).toBe('dec-42');
    expect(shown).toMatchObject({ proof_verified: true, checkpoint_signature_verified: true });
    const i = shown.inclusion;
    expect(
      verifyInclusion(
        i.seq,
        i.tree_size,
        Buffer.from(i.leaf_hash, 'hex'),
        i.proof.map((h) => Buffer.from(h, 'hex')),
        Buffer.from(i.checkpoint.root_hash, 'hex'),
      ),
    ).toBe(true);
    expect(await cli(dataDir, ['audit', 'show', '42', '--server', server.url])).toMatch(
      /proof verified; checkpoint signature verified/,
    );

    // tail: recent events, then live
    const tail = await cli(dataDir, ['audit', 'tail', '-n', '3', '--server', server.url]);
    expect(tail.trim().split('\n')).toHaveLength(3);
    const res = await request(`${server.url}/v1/admin/audit/tail?last=0&follow=1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const seen: string[] = [];
    const reading = (async () => {
      let buf = '';
      for await (const chunk of res.body) {
        buf += chunk.toString();
        for (const line of buf.split('\n').slice(0, -1)) seen.push((JSON.parse(line) as StoredAuditEvent).id);
        buf = buf.slice(buf.lastIndexOf('\n') + 1);
        if (seen.includes('live-2')) break;
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    await plugin.handle.log().appendInputs([decision(1, { id: 'live-1' }), decision(2, { id: 'live-2' })]);
    await reading;
    expect(seen).toEqual(expect.arrayContaining(['live-1', 'live-2']));

    // checkpoint, verify (direct and through the server, with the external file)
    const cp = JSON.parse(await cli(dataDir, ['audit', 'checkpoint', '--server', server.url])) as {
      tree_size: number;
      public_key: string;
    };
    expect(cp.tree_size).toBe(plugin.handle.log().treeSize);
    expect(cp.public_key).toMatch(/BEGIN PUBLIC KEY/);
    await new Promise((r) => setTimeout(r, 50));
    expect(readFileSync(cpFile, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(5);
    expect(await cli(dataDir, ['audit', 'verify', '--from-checkpoint', cpFile])).toMatch(/^audit log OK: \d+ events/);
    expect(await cli(dataDir, ['audit', 'verify', '--server', server.url, '--from-checkpoint', cpFile])).toMatch(
      /audit log OK/,
    );

    // the query index edited to hide event 77: verify names it (the log itself is intact), and
    // `audit reindex`, run while the server is up, rebuilds it from the rows
    const victim = (await plugin.handle.log().get(77)) as StoredAuditEvent;
    const bySource = { source: victim.source?.spiffe_id as string, limit: 1000 };
    expect((await queryAuditLog(server.store, bySource)).events.map((e) => e.seq)).toContain(77);
    const col = await server.store.db
      .selectFrom('audit_block_column')
      .select('ids')
      .where('block', '=', 0)
      .where('field', '=', 'source')
      .executeTakeFirstOrThrow();
    const ids = Buffer.from(col.ids);
    ids.writeInt32LE(0, 77 * 4);
    await server.store.db
      .updateTable('audit_block_column')
      .set({ ids })
      .where('block', '=', 0)
      .where('field', '=', 'source')
      .execute();
    expect((await queryAuditLog(server.store, bySource)).events.map((e) => e.seq)).not.toContain(77);
    const hidden = await cli(dataDir, ['audit', 'verify']).catch((e: unknown) => e);
    expect((hidden as CliError).exitCode).toBe(1);
    expect((hidden as CliError).message).toMatch(/first bad index 77 \(changed\): the query index .*audit reindex/);
    expect(await cli(dataDir, ['audit', 'reindex'])).toMatch(/^audit query index rebuilt: \d+ events in 1 blocks/);
    expect(await cli(dataDir, ['audit', 'verify', '--from-checkpoint', cpFile])).toMatch(/^audit log OK/);
    expect((await queryAuditLog(server.store, bySource)).events.map((e) => e.seq)).toContain(77);

    // tamper directly in the database: verify exits 1 naming the index
    await sql`update audit_event set body = replace(body, 'rule matched', 'rule matcheD') where seq = 77`.execute(
      server.store.db,
    );
    const err = await cli(dataDir, ['audit', 'verify', '--from-checkpoint', cpFile]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(1);
    expect((err as CliError).message).toMatch(/^audit log TAMPERED: first bad index 77 \(changed\)/);
  });

  it('records server events and writes anomaly events (with a webhook-free config)', async () => {
    const { server, plugin, ctx, token } = await start({
      anomaly: { baseline_ms: 500, sensitive_paths: ['/admin/*'] },
    });
    ctx.events.record({
      kind: 'admin.action',
      outcome: 'allow',
      source: { id: 'token:abcd1234', ip: '127.0.0.1' },
      target: { id: 'entry-1', method: 'POST', resource: '/v1/admin/entries' },
      reason: 'entry created',
      details: { token: 'never-stored' },
    });
    const post = async (events: unknown[]) => {
      const r = await request(`${server.url}/v1/audit/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
      });
      expect(r.statusCode).toBe(200);
      await r.body.dump();
    };
    await post([decision(1, { time: Date.now() - 1000 })]);
    await post([
      decision(2, {
        id: 'x',
        source: { spiffe_id: 'spiffe://example.org/ns/prod/sa/intruder' },
        target: { service: 'ledger', path: '/admin/keys' },
      }),
    ]);
    await plugin.handle.recorder().flush();
    const log = plugin.handle.log();
    const { events } = await queryAuditLog(server.store, {
      kind: 'anomaly',
    });
    const signals = events.map((e) => (e.details as { signal: string }).signal).sort();
    expect(signals).toEqual(['lateral_movement', 'sensitive_path_first_use']);
    expect(events.every((e) => typeof e.reason === 'string' && e.reason.length > 20)).toBe(true);
    const admin = await queryAuditLog(server.store, {
      kind: 'admin.action',
    });
    expect(admin.events[0]).toMatchObject({
      source: { user: 'token:abcd1234' },
      outcome: 'allow',
      reason: 'entry created',
    });
    expect(JSON.stringify(admin.events)).not.toContain('never-stored');
    expect((await verifyLog(server.store)).ok).toBe(true);
    expect(log.treeSize).toBe(5);
  });
});

describe('access decisions from enforcement points', () => {
  it('land with decision id, policy, rule, enforcer and path as fields, and feed the path signals', async () => {
    const { server, plugin, ctx } = await start({ anomaly: { baseline_ms: 0, sensitive_paths: ['/v1/refunds'] } });
    const snap = compile(
      parsePolicyText(
        readFileSync(fileURLToPath(new URL('../pep/fixtures/policies/payment-service.yaml', import.meta.url)), 'utf8'),
        'payment-service.yaml',
      ),
    );
    const call = (path: string) =>
      enforce(
        () => snap,
        {
          source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
          target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
          request: { method: 'POST', path },
        },
        // As `nevertrust mesh` and the agent hand decisions to the server: the enforcement point named.
        { record: (e) => ctx.events.record({ ...e, enforcer: 'payment-service' }) },
        { pep: 'sidecar', ip: '10.0.0.7' },
      );
    const allowed = call('/v1/refunds');
    const denied = call('/v1/charges/%2e%2e/admin');
    expect(allowed.allow).toBe(true);
    expect(denied.allow).toBe(false);
    await plugin.handle.recorder().flush();
    const one = async (decision_id: string) => {
      const { events } = await queryAuditLog(server.store, { decision_id });
      expect(events).toHaveLength(1);
      return events[0];
    };
    expect(await one(allowed.decision_id)).toMatchObject({
      kind: 'access.decision',
      outcome: 'allow',
      policy: allowed.policy,
      rule: 'gateway-charges-and-refunds',
      enforcer: 'payment-service',
      source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway', ip: '10.0.0.7' },
      target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service', method: 'POST', path: '/v1/refunds' },
      details: { pep: 'sidecar', version: snap.version },
    });
    const d = await one(denied.decision_id);
    expect(d).toMatchObject({
      outcome: 'deny',
      enforcer: 'payment-service',
      target: { path: '/v1/charges/%2e%2e/admin' },
    });
    expect(d?.reason).toBe(denied.reason);
    await plugin.handle.recorder().flush();
    const { events: anomalies } = await queryAuditLog(server.store, { kind: 'anomaly' });
    expect(anomalies.map((e) => (e.details as { signal: string }).signal)).toContain('sensitive_path_first_use');
    expect((await verifyLog(server.store)).ok).toBe(true);
  });
});

describe('ingestion by SVID on the agent port', () => {
  it('holds each reporter to its rate (429, recorded once), without slowing another', async () => {
    const ca = caPlugin();
    const audit = auditPlugin({ ca: ca.handle, ingestRate: 5, checkpointIntervalMs: 0 });
    const agentPort = agentEndpointPlugin({ ca: ca.handle, routes: audit.agentRoutes });
    const server = await startServer({
      config: configSchema.parse({ data_dir: tempDir(), server: { port: 0, agent_port: 0 } }),
      logger: createLogger('silent'),
      plugins: [ca, agentPort, audit],
    });
    running.push(server);
    const url = `https://127.0.0.1:${agentPort.address()?.port}/agent/v1/audit/events`;
    const clientFor = (name: string) => {
      const m = ca.handle.current().mintX509Svid({ spiffeId: `spiffe://example.org/ns/x/sa/${name}` });
      return new Agent({
        connect: {
          cert: certificatesToPem(m.chain),
          key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
          ca: ca.handle.current().bundle().toPem(),
          checkServerIdentity: () => undefined,
        },
      });
    };
    const post = async (dispatcher: Agent, n: number, from: string) => {
      const events = Array.from({ length: n }, (_, i) => ({
        kind: 'access.decision',
        outcome: 'allow',
        reason: `${from}-${i}`,
      }));
      const r = await request(url, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
      });
      return { status: r.statusCode, retry: r.headers['retry-after'], body: await r.body.text() };
    };
    const noisy = clientFor('noisy');
    const quiet = clientFor('quiet');
    try {
      // A full batch fits the burst; the next one does not, until the bucket refills (5/s).
      expect((await post(noisy, 10_000, 'noisy')).status).toBe(200);
      const over = await post(noisy, 10, 'noisy');
      expect(over).toMatchObject({ status: 429, retry: '1' });
      expect(JSON.parse(over.body)).toMatchObject({ error: 'rate_limited' });
      expect((await post(noisy, 10, 'noisy')).status).toBe(429);
      expect((await post(quiet, 10, 'quiet')).status).toBe(200);
      await audit.handle.recorder().flush();
      const refusals = (await queryAuditLog(server.store, { kind: 'admin.action', outcome: 'deny' })).events;
      expect(refusals.map((e) => e.reason)).toEqual([
        'audit ingestion refused: spiffe://example.org/ns/x/sa/noisy is over 5 events/s (it retries; nothing is lost)',
      ]);
      const stored = await queryAuditLog(server.store, { kind: 'access.decision', limit: 1000 });
      expect(stored.events.filter((e) => e.reason?.startsWith('quiet-'))).toHaveLength(10);
      expect(
        stored.events.every((e) =>
          (e.details as { reported_by?: string }).reported_by?.startsWith('spiffe://example.org/ns/x/sa/'),
        ),
      ).toBe(true);
      // Hammering the route without a certificate is refused every time, but recorded once per
      // 10 s, the next record counting the ones in between: the log cannot be flooded from outside.
      const anonymous = new Agent({ connect: { rejectUnauthorized: false } });
      try {
        for (let i = 0; i < 20; i++) expect((await post(anonymous, 1, 'anon')).status).toBe(401);
        const now = Date.now;
        const later = vi.spyOn(Date, 'now').mockImplementation(() => now() + 11_000);
        try {
          expect((await post(anonymous, 1, 'anon')).status).toBe(401);
        } finally {
          later.mockRestore();
        }
      } finally {
        await anonymous.close();
      }
      await audit.handle.recorder().flush();
      const unauthenticated = (await queryAuditLog(server.store, { kind: 'admin.action', outcome: 'deny' })).events
        .map((e) => e.reason ?? '')
        .filter((r) => r.includes('no client certificate'));
      expect(unauthenticated).toHaveLength(2);
      expect(unauthenticated.some((r) => r.endsWith('(19 more like it since the last record)'))).toBe(true);
    } finally {
      await noisy.close();
      await quiet.close();
    }
  });
});

describe('HTTP shipper against a server that is down', () => {
  it('spills while the server is unreachable and ships everything once it is up', async () => {
    const port = await freePort();
    const dataDir = tempDir();
    const spillDir = join(tempDir(), 'pep-spill');
    // The token exists before the server does, as it would for a PEP provisioned in advance.
    const token = 'pep-ingest-token-0123456789abcdef';
    const shipper = createHttpShipper({
      url: `http://127.0.0.1:${port}`,
      token,
      spillDir,
      maxQueue: 200,
      batchSize: 100,
      retryMinMs: 50,
      retryMaxMs: 200,
    });
    for (let i = 0; i < 1000; i++) shipper.record(decision(i, { id: `down-${i}` }));
    await new Promise((r) => setTimeout(r, 300));
    expect(shipper.stats().spilled).toBeGreaterThanOrEqual(800);
    expect(shipper.stats().lost).toBe(0);
    const config = configSchema.parse({ data_dir: dataDir, server: { port, shutdown_timeout: 2 } });
    const plugin = auditPlugin({ checkpointIntervalMs: 0, ingestToken: token });
    const server = await startServer({ config, logger: createLogger('silent'), plugins: [plugin] });
    running.push(server);
    await shipper.flush();
    expect(shipper.stats()).toMatchObject({ shipped: 1000, lost: 0, spillPending: 0 });
    const rows = await server.store.db.selectFrom('audit_event').select('id').execute();
    expect(new Set(rows.map((r) => r.id)).size).toBe(1000);
    await shipper.close();
  });
});

const CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe.each([
  { name: 'sqlite', url: async () => '' },
  { name: 'postgres', url: () => createTestDatabase('auditsrv') },
])('kill -9 of the server under load ($name)', ({ url }) => {
  it('every acknowledged event is present and the log verifies', async () => {
    const dataDir = tempDir();
    const dbUrl = await url();
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, dbUrl], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const base = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /READY (\S+)/.exec(text);
        if (m?.[1]) resolve(m[1]);
      });
      child.on('exit', (code) => reject(new Error(`server exited ${code}: ${stderr}`)));
    });
    const token = readAdminToken(dataDir) as string;
    const acked: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let b = 0; !stop; b++) {
        const events = Array.from({ length: 200 }, (_, i) => decision(i, { id: `w${w}-b${b}-${i}` }));
        try {
          const r = await request(`${base}/v1/audit/events`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ events }),
          });
          const text = await r.body.text();
          if (r.statusCode === 200) acked.push(...events.map((e) => e.id));
          else if (!stop) throw new Error(`${r.statusCode} ${text}`);
        } catch (e) {
          if (!stop) throw e;
        }
      }
    };
    const workers = [0, 1, 2, 3].map((w) => worker(w).catch(() => {}));
    while (acked.length < 6000) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    stop = true;
    await new Promise((r) => child.once('close', r));
    await Promise.all(workers);
    const store = await openStore({ dataDir, url: dbUrl || undefined });
    try {
      const report = await verifyLog(store);
      expect(report.ok).toBe(true);
      const rows = await store.db.selectFrom('audit_event').select('id').execute();
      const ids = new Set(rows.map((r) => r.id));
      const missing = acked.filter((id) => !ids.has(id));
      expect(missing).toEqual([]);
      expect(report.treeSize).toBeGreaterThanOrEqual(acked.length);
    } finally {
      await store.close();
    }
  }, 120_000);
});
