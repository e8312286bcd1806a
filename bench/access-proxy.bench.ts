/**
 * The access proxy (people's access), side by side in one run on loopback: direct to the app (plain
 * HTTP); through Debian's nginx as a plain TLS reverse proxy (1 worker, keep-alive upstream; no
 * identity, no decision — the floor of what any HTTPS proxy costs); and through ours,
 * `nevertrust access-proxy` (1 process) with everything on: the real OIDC authenticator against the
 * built-in provider (a person signed in once through the real flow, then her session cookie sent with
 * every request: a session cache hit), the example back-office policies (examples/policies/people),
 * and a person assertion signed for every allowed request with a key registered with a real server.
 * Two more targets say where ours spends: the Node floor (node:https in, node:http to the app, piped;
 * nothing else) and ours without `assertion:` (no signature per request).
 * App, nginx and proxies are processes of their own; this process generates the load (and hosts the
 * server and the provider, idle after the sign-in). Figures: requests/s at saturation (32 in flight,
 * interleaved rounds, median), proxy CPU time per request, and latency at a fixed ~1,000 requests/s,
 * from which each proxy's added p50/p90/p99 over direct. Targets: ≥ 0.5× nginx's requests/s; added
 * p90 ≤ 1.5× nginx's.
 *
 * Run: npm run build --silent && npx tsx bench/access-proxy.bench.ts   (about 2 minutes; BENCH_ROUNDS=5;
 *      BENCH_ACCESS_PROXY_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the proxy process alone)
 */
import { Kek } from '../src/ca/kek.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { hashPassword, startIdentityProvider } from '../src/access/idp/index.js';
import { certificatesToPem } from '../src/ca/index.js';
import { PersonClient } from '../src/mesh/people-client.js';
import { openStore } from '../src/store/index.js';
import { startNginx } from '../test/pep/nginx.js';
import { configSchema } from '../src/config/index.js';
import { startServer } from '../src/server/index.js';
import { agentEndpointPlugin } from '../src/server/plugins/agent-endpoint.js';
import { assertionKeysPlugin } from '../src/server/plugins/assertion-keys.js';
import { caPlugin } from '../src/server/plugins/ca.js';
import { createLogger } from '../src/util/logger.js';
import { freePort } from '../test/support/cli.js';
import { type Figure, measureAsync, percentile, report } from './harness.js';
import { children, cpuUs, fixedRate, median, spawnReady, startBareApp } from './processes.js';

const TD = 'example.org';
const HOST = 'backoffice.localhost';
const PROXY_ID = `spiffe://${TD}/ns/edge/sa/access-proxy`;
const POLICIES = fileURLToPath(new URL('../examples/policies/people', import.meta.url));
// The proxy runs as production runs it, from the build.
if (!existsSync(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)))) {
  throw new Error('the proxy runs from dist/: run `npm run build --silent` first');
}
// Other work on this machine moves every figure: the load averages are printed with them.
const loadStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const dir = mkdtempSync(join(tmpdir(), 'nt-access-proxy-bench-'));

const appPort = await startBareApp();

// The server: the CA, and the registry where the proxy registers its assertion key (the JWKS apps use).
// (as test/pep/assertion-server.ts, whose temporary folder is tied to vitest).
const ca = caPlugin();
const keys = assertionKeysPlugin({ ca: ca.handle });
const agent = agentEndpointPlugin({ ca: ca.handle, routes: keys.agentRoutes });
const server = await startServer({
  config: configSchema.parse({ data_dir: join(dir, 'server'), trust_domain: TD, server: { port: 0, agent_port: 0 } }),
  logger: createLogger('silent'),
  plugins: [ca, keys, agent],
});
const agentUrl = `https://127.0.0.1:${agent.address()?.port}`;
const bundlePem = ca.handle.current().bundle().toPem();
const mint = (spiffeId: string, dnsNames: string[]) => {
  const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
  return {
    cert: certificatesToPem(m.chain),
    key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
};
const write = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text, { mode: 0o600 });
  return f;
};
const bundleFile = write('bundle.pem', bundlePem);
// The proxy serves with its SVID (DNS name: the route's host); nginx with the same certificate.
const proxySvid = mint(PROXY_ID, [HOST]);
const proxyCert = write('proxy.crt', proxySvid.cert);
const proxyKey = write('proxy.key', proxySvid.key);

// The built-in provider with one person in the store (group staff: may read /reports).
const proxyPort = await freePort();
const unsignedPort = await freePort();
const idpPort = await freePort();
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const PASSWORD = randomBytes(18).toString('base64url');
mkdirSync(join(dir, 'idp'));
const idpStore = await openStore({ dataDir: join(dir, 'idp') });
await idpStore.users.create({
  username: 'alice',
  email: 'alice@example.com',
  name: 'Alice',
  groups: ['staff'],
  passwordHash: await hashPassword(PASSWORD),
});
const idpLeaf = mint(`spiffe://${TD}/ns/edge/sa/idp`, ['localhost']);
const idp = await startIdentityProvider({
  kek: Kek.fromBytes(randomBytes(32)),
  issuer: `https://localhost:${idpPort}`,
  listen: { host: '127.0.0.1', port: idpPort },
  tls: idpLeaf,
  store: idpStore,
  clients: [
    {
      client_id: 'access-proxy',
      client_secret: CLIENT_SECRET,
      redirect_uris: [
        `https://${HOST}:${proxyPort}/.nevertrust/callback`,
        `https://${HOST}:${unsignedPort}/.nevertrust/callback`,
      ],
    },
  ],
});

// Ours, as production runs it: the CLI with a config file. A second instance without `assertion:`
// (same store and session key, so the same session cookie works there) shows what signing costs.
const proxyConfig = (port: number, assertion: boolean) => `listen: 127.0.0.1:${port}
svid: { cert: ${proxyCert}, key: ${proxyKey}, bundle: ${bundleFile} }
policies: ${POLICIES}
${assertion ? `assertion: { server: ${agentUrl} }` : ''}
store: { data_dir: ${join(dir, 'proxy-store')} }
auth:
  issuer: ${idp.issuer}
  client_id: access-proxy
  client_secret: ${CLIENT_SECRET}
  ca_file: ${bundleFile}
  session: { key_file: ${join(dir, 'session.key')} }
routes:
  - name: backoffice
    from: { host: ${HOST} }
    to: http://127.0.0.1:${appPort}
`;
writeFileSync(join(dir, 'access-proxy.yaml'), proxyConfig(proxyPort, true));
writeFileSync(join(dir, 'unsigned.yaml'), proxyConfig(unsignedPort, false));
// BENCH_ACCESS_PROXY_NODE_ARGS: extra node flags for the proxy alone, e.g. "--cpu-prof --cpu-prof-dir=prof".
const proxyNodeArgs = (process.env.BENCH_ACCESS_PROXY_NODE_ARGS ?? '').split(' ').filter(Boolean);
const bin = fileURLToPath(new URL('../bin/nevertrust.js', import.meta.url));
await spawnReady(
  [...proxyNodeArgs, bin, 'access-proxy', '--config', join(dir, 'access-proxy.yaml')],
  /access proxy ready/,
);
const proxyPid = children.at(-1)?.pid as number;
await spawnReady([bin, 'access-proxy', '--config', join(dir, 'unsigned.yaml')], /access proxy ready/);
const unsignedPid = children.at(-1)?.pid as number;

const nginxPort = await freePort();
const nginx = await startNginx(
  join(dir, 'nginx'),
  `
  upstream app { server 127.0.0.1:${appPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort} ssl;
    server_name ${HOST};
    ssl_certificate ${proxyCert};
    ssl_certificate_key ${proxyKey};
    keepalive_requests 100000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $host;
    }
  }`,
  nginxPort,
  1,
);
children.push(nginx.child);

// The floor of any proxy built on Node's HTTP stack as ours is: node:https in, node:http with a
// keep-alive agent to the app, bodies piped — no identity, no decision, no assertion, no log line.
const floorPort = Number(
  await spawnReady(
    [
      '-e',
      `const fs=require('node:fs'),http=require('node:http'),https=require('node:https');const [c,k,app]=process.argv.slice(1);const agent=new http.Agent({keepAlive:true,maxSockets:64});const s=https.createServer({cert:fs.readFileSync(c),key:fs.readFileSync(k),ALPNProtocols:['http/1.1']},(q,r)=>{const u=http.request({host:'127.0.0.1',port:Number(app),method:q.method,path:q.url,headers:{...q.headers,host:'127.0.0.1:'+app},agent},(a)=>{r.writeHead(a.statusCode,a.headers);a.pipe(r)});u.on('error',()=>r.destroy());q.pipe(u)});s.keepAliveTimeout=60000;s.listen(0,'127.0.0.1',()=>console.log('PORT',s.address().port))`,
      proxyCert,
      proxyKey,
      String(appPort),
    ],
    /PORT (\d+)/,
  ),
);
const floorPid = children.at(-1)?.pid as number;

// Alice signs in once through the real flow (proxy → provider's login form → callback).
const alice = new PersonClient({ ca: bundlePem });
const landed = await alice.signIn(`https://${HOST}:${proxyPort}/reports`, 'alice', PASSWORD);
if (landed.status !== 200) throw new Error(`sign-in ended with ${landed.status}: ${landed.body.slice(0, 200)}`);
const session = alice.cookies(HOST).get('__Host-nevertrust_session');
if (!session) throw new Error('no session cookie after sign-in');
await alice.close();

const pool = (url: string) =>
  new Pool(url, {
    connections: 32,
    connect: url.startsWith('https') ? { ca: bundlePem, servername: HOST } : undefined,
  });
const targets = {
  direct: { pool: pool(`http://127.0.0.1:${appPort}`), host: `127.0.0.1:${appPort}` },
  nginx: { pool: pool(`https://127.0.0.1:${nginxPort}`), host: `${HOST}:${nginxPort}` },
  ours: { pool: pool(`https://127.0.0.1:${proxyPort}`), host: `${HOST}:${proxyPort}` },
  floor: { pool: pool(`https://127.0.0.1:${floorPort}`), host: `${HOST}:${floorPort}` },
  unsigned: { pool: pool(`https://127.0.0.1:${unsignedPort}`), host: `${HOST}:${unsignedPort}` },
};
const KINDS = ['direct', 'nginx', 'ours', 'floor', 'unsigned'] as const;
type Kind = (typeof KINDS)[number];
type Proxy = Exclude<Kind, 'direct'>;
// The same request everywhere: what a signed-in browser sends for a page the policy allows.
const hit = (k: Kind) => {
  const { pool: p, host } = targets[k];
  const headers = {
    host,
    accept: 'text/html,application/xhtml+xml',
    cookie: `__Host-nevertrust_session=${session}`,
    'user-agent': 'nevertrust-bench',
  };
  return async () => {
    const r = await p.request({ path: '/reports', method: 'GET', headers });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`${k}: status ${r.statusCode}`);
  };
};
const hits = {
  direct: hit('direct'),
  nginx: hit('nginx'),
  ours: hit('ours'),
  floor: hit('floor'),
  unsigned: hit('unsigned'),
};

const pids: Record<Proxy, number> = {
  nginx: nginx.child.pid as number,
  ours: proxyPid,
  floor: floorPid,
  unsigned: unsignedPid,
};
const cpu: Record<Proxy, { us: number; requests: number }> = {
  nginx: { us: 0, requests: 0 },
  ours: { us: 0, requests: 0 },
  floor: { us: 0, requests: 0 },
  unsigned: { us: 0, requests: 0 },
};

// Warm-up that does not count: the proxy's JIT needs a few thousand requests, and on a busy machine
// (where it gets a fraction of a core) that takes seconds; nginx and the app are warmed alike.
for (const k of KINDS) await measureAsync(hits[k], { seconds: 3, concurrency: 32, warmup: 100 });
// Saturation: interleaved rounds.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const rps: Record<Kind, number[]> = { direct: [], nginx: [], ours: [], floor: [], unsigned: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const k of KINDS) {
    const before = k === 'direct' ? 0 : cpuUs(pids[k]);
    const st = await measureAsync(hits[k], { seconds: 3, concurrency: 32, warmup: 300 });
    rps[k].push(st.opsPerSec);
    if (k !== 'direct') {
      cpu[k].us += cpuUs(pids[k]) - before;
      cpu[k].requests += st.count + 300; // the warm-up requests ran in the same window
    }
  }
}
// Fixed rate: one request every millisecond; the targets take turns in 250-ms windows (16 rounds),
// so a stall of this shared machine falls on all of them alike.
const lat: Record<Kind, number[]> = { direct: [], nginx: [], ours: [], floor: [], unsigned: [] };
for (const k of KINDS) await fixedRate(hits[k], 0.5, []);
for (let round = 0; round < 16; round++) {
  for (const k of KINDS) await fixedRate(hits[k], 0.25, lat[k]);
}
for (const a of Object.values(lat)) a.sort((x, y) => x - y);
const added = (k: Proxy, p: number) => percentile(lat[k], p) - percentile(lat.direct, p);
const figures: Figure[] = [
  {
    bench: 'access-proxy',
    metric: 'requests/s at saturation (32 in flight; session, decision, assertion)',
    unit: 'req/s',
    peerName: 'nginx TLS proxy',
    peer: median(rps.nginx),
    ours: median(rps.ours),
    higherIsBetter: true,
    targetRatio: 0.5,
  },
  {
    bench: 'access-proxy',
    metric: `direct to the app (no proxy): ${Math.round(median(rps.direct))} req/s`,
    unit: 'req/s',
    peerName: 'direct',
    peer: median(rps.direct),
    ours: median(rps.ours),
    higherIsBetter: true,
  },
  {
    bench: 'access-proxy',
    metric: 'proxy CPU time per request at saturation (user + system)',
    unit: 'µs',
    peerName: 'nginx TLS proxy',
    peer: cpu.nginx.us / cpu.nginx.requests,
    ours: cpu.ours.us / cpu.ours.requests,
    higherIsBetter: false,
  },
];
for (const p of [50, 90, 99]) {
  figures.push({
    bench: 'access-proxy',
    metric: `added p${p} at ~1,000 req/s over direct (direct p${p} ${percentile(lat.direct, p).toFixed(0)} µs)`,
    unit: 'µs',
    peerName: 'nginx TLS proxy',
    peer: Math.max(1, added('nginx', p)),
    ours: Math.max(1, added('ours', p)),
    higherIsBetter: false,
    // Ours may add up to 1.5× what nginx adds at p90.
    ...(p === 90 ? { targetRatio: 1 / 1.5 } : {}),
  });
}
figures.push(
  {
    bench: 'access-proxy',
    metric:
      'requests/s at saturation vs the Node floor (node:https → node:http, piped; no identity, decision or assertion)',
    unit: 'req/s',
    peerName: 'Node HTTPS proxy',
    peer: median(rps.floor),
    ours: median(rps.ours),
    higherIsBetter: true,
  },
  {
    bench: 'access-proxy',
    metric: 'proxy CPU time per request at saturation vs the Node floor',
    unit: 'µs',
    peerName: 'Node HTTPS proxy',
    peer: cpu.floor.us / cpu.floor.requests,
    ours: cpu.ours.us / cpu.ours.requests,
    higherIsBetter: false,
  },
  {
    bench: 'access-proxy',
    metric: 'added p90 at ~1,000 req/s vs the Node floor',
    unit: 'µs',
    peerName: 'Node HTTPS proxy',
    peer: Math.max(1, added('floor', 90)),
    ours: Math.max(1, added('ours', 90)),
    higherIsBetter: false,
  },
);
figures.push({
  bench: 'access-proxy',
  metric: 'proxy CPU time per request at saturation: ours vs ours without `assertion:` (what signing costs)',
  unit: 'µs',
  peerName: 'ours unsigned',
  peer: cpu.unsigned.us / cpu.unsigned.requests,
  ours: cpu.ours.us / cpu.ours.requests,
  higherIsBetter: false,
});
report(figures);
const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
process.stdout.write(
  `saturation rounds (req/s): direct ${rps.direct.map(Math.round).join(' ')}; nginx ${rps.nginx.map(Math.round).join(' ')}; ours ${rps.ours.map(Math.round).join(' ')}; Node floor ${rps.floor.map(Math.round).join(' ')}; ours unsigned ${rps.unsigned.map(Math.round).join(' ')}\n` +
    `fixed-rate samples: direct ${lat.direct.length}, nginx ${lat.nginx.length}, ours ${lat.ours.length}, floor ${lat.floor.length}; added p90: ours ${added('ours', 90).toFixed(0)} µs, ours unsigned ${added('unsigned', 90).toFixed(0)} µs, nginx ${added('nginx', 90).toFixed(0)} µs (target ours ≤ 1.5× nginx); load average at the start: ${loadStart}, at the end: ${loadavg}\n`,
);
for (const t of Object.values(targets)) await t.pool.close();
await nginx.stop();
// Let the proxies stop by themselves (a --cpu-prof profile is written on the way out).
await Promise.all(
  children.map((c) =>
    c.exitCode !== null || c.signalCode !== null
      ? undefined
      : new Promise((r) => {
          c.once('exit', r);
          c.kill('SIGTERM');
          setTimeout(r, 5000).unref();
        }),
  ),
);
await idp.close();
await idpStore.close();
await server.close();
rmSync(dir, { recursive: true, force: true });
