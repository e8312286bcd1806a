/**
 * The agent path, end to end in one process tree: a server (CA, registration, agent endpoint) and a
 * node agent on loopback, a workload reading the SPIFFE Workload API from a separate client.
 *
 * - entry create → SVID at the workload: median and p99, beside the floor of one mTLS request
 *   from the agent to the server (the peer: no delivery can be faster than one round trip).
 * - X.509-SVIDs delivered per second by one agent (10,000 entries signed and cached), beside the
 *   CA's bare in-process signing rate from CSRs in the same run (the peer: the signer's limit).
 * - agent heap with 10,000 entries.
 *
 * Run: npx tsx bench/agent-delivery.bench.ts
 */
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Agent, request } from 'undici';
import { NodeAgent } from '../src/agent/node-agent.js';
import { createCsr, generatePrivateKey } from '../src/ca/index.js';
import { configSchema } from '../src/config/index.js';
import { startServer } from '../src/server/index.js';
import { agentEndpointPlugin } from '../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../src/server/plugins/ca.js';
import { registrationPlugin } from '../src/server/plugins/registration.js';
import { createLogger } from '../src/util/logger.js';
import { workloadProtoPath } from '../src/workload/paths.js';
import { type Figure, percentile, report } from './harness.js';

const ENTRIES = Number(process.env.BENCH_ENTRIES ?? 10_000);
const LATENCY_SAMPLES = Number(process.env.BENCH_SAMPLES ?? 30);
const dir = mkdtempSync(join(tmpdir(), 'nt-bench-agent-'));
const logger = createLogger('silent');
const ca = caPlugin();
const agentPlugin = agentEndpointPlugin({ ca: ca.handle, pollMs: 100 });
const server = await startServer({
  config: configSchema.parse({ data_dir: join(dir, 'server'), server: { port: 0, agent_port: 0 } }),
  logger,
  plugins: [ca, registrationPlugin(), agentPlugin],
});
const token = readFileSync(join(dir, 'server', 'admin.token'), 'utf8').trim();
const admin = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await res.json()) as Record<string, unknown>;
};
const agentUrl = `https://127.0.0.1:${agentPlugin.address()?.port}`;
const joinToken = (await admin('POST', '/v1/admin/join-tokens', {})).token as string;
const socket = join(dir, 'agent.sock');
const agent = new NodeAgent({
  serverUrl: agentUrl,
  trustDomain: 'example.org',
  trustBundlePem: ca.handle.current().bundle().toPem(),
  joinToken,
  dir: join(dir, 'agent'),
  socketPath: socket,
  logger,
});
await agent.start();
const uid = process.getuid?.() ?? 0;

// A workload client from the spec's proto, watching its stream.
const def = protoLoader.loadSync(workloadProtoPath(), { keepCase: true, defaults: true });
const Api = (grpc.loadPackageDefinition(def) as unknown as { SpiffeWorkloadAPI: typeof grpc.Client })
  .SpiffeWorkloadAPI as unknown as new (
  a: string,
  c: grpc.ChannelCredentials,
) => grpc.Client & {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<{ svids: { spiffe_id: string }[] }>;
};
const client = new Api(`unix://${socket}`, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.set('workload.spiffe.io', 'true');

// 1. entry create → SVID at the workload.
const latencies: number[] = [];
for (let i = 0; i < LATENCY_SAMPLES; i++) {
  const id = `spiffe://example.org/bench/latency-${i}`;
  const t0 = performance.now();
  const seen = new Promise<void>((resolveSeen) => {
    const tryOnce = () => {
      const stream = client.FetchX509SVID({}, md);
      stream.on('data', (res: { svids: { spiffe_id: string }[] }) => {
        if (res.svids.some((s) => s.spiffe_id === id)) {
          stream.cancel();
          resolveSeen();
        }
      });
      stream.on('error', (e: grpc.ServiceError) => {
        if (e.code === grpc.status.CANCELLED) return;
        setTimeout(tryOnce, 5); // PERMISSION_DENIED until the first identity exists
      });
    };
    tryOnce();
  });
  const created = await admin('POST', '/v1/admin/entries', {
    spiffe_id: id,
    parent_id: agent.id,
    selectors: [`unix:uid:${uid}`],
  });
  await seen;
  latencies.push(performance.now() - t0);
  await admin('DELETE', `/v1/admin/entries/${created.id}`);
}
latencies.sort((a, b) => a - b);

// Peer for latency: one mTLS request from the agent's credentials to the server (the floor).
const dispatcher = new Agent({
  connect: {
    ca: ca.handle.current().bundle().toPem(),
    cert: readFileSync(join(dir, 'agent', 'agent-svid.pem'), 'utf8'),
    key: readFileSync(join(dir, 'agent', 'agent-svid.key'), 'utf8'),
    checkServerIdentity: () => undefined,
  },
});
const rtt: number[] = [];
for (let i = 0; i < LATENCY_SAMPLES; i++) {
  const t0 = performance.now();
  const res = await request(`${agentUrl}/agent/v1/sign`, {
    method: 'POST',
    dispatcher,
    body: JSON.stringify({ requests: [] }),
  });
  await res.body.text();
  rtt.push(performance.now() - t0);
}
rtt.sort((a, b) => a - b);

// 2. SVIDs delivered per second: ENTRIES entries at once, until the agent holds them all.
if (typeof global.gc === 'function') global.gc();
const heapBefore = process.memoryUsage().heapUsed;
const now = Date.now();
const rows = Array.from({ length: ENTRIES }, (_, i) => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  spiffe_id: `spiffe://example.org/bench/svc-${i}`,
  parent_id: agent.id,
  selectors: JSON.stringify([`unix:uid:${uid}`, `unix:gid:${i}`]),
  x509_svid_ttl: 3600,
  jwt_svid_ttl: 300,
  dns_names: '[]',
  hint: '',
  admin: 0,
  expires_at: null,
  revision: 1,
  created_at: now,
  updated_at: now,
  deleted_at: null,
}));
const t0 = performance.now();
for (let i = 0; i < rows.length; i += 500)
  await server.store.db
    .insertInto('registration_entries')
    .values(rows.slice(i, i + 500))
    .execute();
const held = () => (agent as unknown as { svids: Map<string, unknown> }).svids.size;
while (held() < ENTRIES) await new Promise((r) => setTimeout(r, 50));
const deliverSeconds = (performance.now() - t0) / 1000;
if (typeof global.gc === 'function') global.gc();
const heapAfter = process.memoryUsage().heapUsed;

// Peer for throughput: the same CA signing CSRs in process, no network, no agent.
const csrs = Array.from({ length: 500 }, () => createCsr(generatePrivateKey('ec-p256')));
const s0 = performance.now();
for (let i = 0; i < 2000; i++)
  await ca.handle
    .current()
    .signX509SvidFromCsrAsync({ csr: csrs[i % 500] as Buffer, spiffeId: 'spiffe://example.org/bench/x' });
const bareRate = 2000 / ((performance.now() - s0) / 1000);

const figures: Figure[] = [
  {
    bench: 'agent-delivery',
    metric: 'entry create → SVID at workload, p50',
    unit: 'ms',
    peerName: 'one mTLS round trip agent→server p50',
    peer: percentile(rtt, 50),
    ours: percentile(latencies, 50),
    higherIsBetter: false,
  },
  {
    bench: 'agent-delivery',
    metric: 'entry create → SVID at workload, p99',
    unit: 'ms',
    peerName: 'one mTLS round trip agent→server p99',
    peer: percentile(rtt, 99),
    ours: percentile(latencies, 99),
    higherIsBetter: false,
  },
  {
    bench: 'agent-delivery',
    metric: `X.509-SVIDs delivered per second by one agent (${ENTRIES} entries)`,
    unit: 'SVIDs/s',
    peerName: 'CA signing CSRs in process',
    peer: bareRate,
    ours: ENTRIES / deliverSeconds,
    higherIsBetter: true,
  },
];
report(figures);
process.stdout.write(
  `agent heap with ${ENTRIES} entries and SVIDs: +${((heapAfter - heapBefore) / 1048576).toFixed(1)} MiB (server and agent share this process)\n`,
);
process.stdout.write(
  `BENCH ${JSON.stringify({ bench: 'agent-delivery', metric: 'agent heap delta', unit: 'MiB', ours: (heapAfter - heapBefore) / 1048576, entries: ENTRIES })}\n`,
);

client.close();
await dispatcher.close();
await agent.stop();
await server.close();
rmSync(dir, { recursive: true, force: true });
