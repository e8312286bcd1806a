/**
 * Decision API over HTTP: `POST /v1/decide` on the nevertrust server (policy plugin + decision
 * plugin, the payments policies) vs a bare node:http server answering a constant JSON body, both
 * in a child process each, loaded from this process with the same undici client (keep-alive,
 * 32 requests in flight), in interleaved rounds. Target: ≥ 0.8× the bare server's requests/s.
 *
 * Run: npx tsx bench/decision-api.bench.ts   (about 40 s)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { type Figure, measureAsync, report } from './harness.js';

const SERVER = `
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const mode = process.argv[2];
if (mode === 'bare') {
  const body = JSON.stringify({ decision: 'allow', allow: true, policy: 'p', rule: 'r', reason: 'constant', decision_id: '0', version: 'v' });
  const s = createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body); }); });
  s.listen(0, '127.0.0.1', () => console.log('PORT', s.address().port));
} else {
  const { configSchema } = await import(${JSON.stringify(fileURLToPath(new URL('../src/config/index.ts', import.meta.url)))});
  const { startServer } = await import(${JSON.stringify(fileURLToPath(new URL('../src/server/index.ts', import.meta.url)))});
  const { policyPlugin } = await import(${JSON.stringify(fileURLToPath(new URL('../src/server/plugins/policy.ts', import.meta.url)))});
  const { decisionPlugin } = await import(${JSON.stringify(fileURLToPath(new URL('../src/server/plugins/decision.ts', import.meta.url)))});
  const { createLogger } = await import(${JSON.stringify(fileURLToPath(new URL('../src/util/logger.ts', import.meta.url)))});
  const dir = mkdtempSync(join(tmpdir(), 'nt-bench-'));
  const policy = policyPlugin();
  const s = await startServer({ config: configSchema.parse({ data_dir: dir, server: { port: 0 }, policies: ${JSON.stringify(fileURLToPath(new URL('../examples/policies/payments', import.meta.url)))} }), logger: createLogger('silent'), plugins: [policy, decisionPlugin({ policy: policy.handle })] });
  console.log('PORT', s.port);
}
`;

function start(mode: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SERVER, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
}

const body = JSON.stringify({
  source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
  target: { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
  request: { method: 'POST', path: '/v1/charges' },
});

const bare = await start('bare');
const ours = await start('ours');
const pools = {
  bare: new Pool(`http://127.0.0.1:${bare.port}`, { connections: 32, pipelining: 1 }),
  ours: new Pool(`http://127.0.0.1:${ours.port}`, { connections: 32, pipelining: 1 }),
};
const hit = (p: Pool) => async () => {
  const r = await p.request({
    path: '/v1/decide',
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json' },
  });
  const j = (await r.body.json()) as { allow?: boolean };
  if (r.statusCode !== 200 || j.allow !== true) throw new Error(`unexpected answer ${r.statusCode}`);
};
const rps = { bare: [] as number[], ours: [] as number[] };
const p99 = { bare: [] as number[], ours: [] as number[] };
for (let round = 0; round < 6; round++) {
  for (const k of ['bare', 'ours'] as const) {
    const s = await measureAsync(hit(pools[k]), { seconds: 3, concurrency: 32, warmup: 200 });
    rps[k].push(s.opsPerSec);
    p99[k].push(s.p99us);
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
const figures: Figure[] = [
  {
    bench: 'decision-api',
    metric: 'POST /v1/decide requests/s (32 in flight, keep-alive)',
    unit: 'req/s',
    peerName: 'bare node:http constant',
    peer: median(rps.bare),
    ours: median(rps.ours),
    higherIsBetter: true,
    targetRatio: 0.8,
  },
  {
    bench: 'decision-api',
    metric: 'p99 latency at saturation',
    unit: 'µs',
    peerName: 'bare node:http constant',
    peer: median(p99.bare),
    ours: median(p99.ours),
    higherIsBetter: false,
  },
];
report(figures);
await pools.bare.close();
await pools.ours.close();
bare.child.kill();
ours.child.kill();
