/**
 * Device certificates at the access proxy (issue #22), side by side in one run on loopback with the
 * floor any mutual-TLS proxy pays: Debian's nginx verifying the same client certificate against the
 * same trust bundle (`ssl_verify_client on`, 1 worker, keep-alive upstream; no identity, no decision).
 * Ours is `nevertrust access-proxy` (1 process, from the build) with everything on: the person's
 * session (signed in once through the real flow with the device certificate, so the session is bound
 * to the device), the device certificate verified as a device SVID on every request, the device looked
 * up in the store (cached ≤ 1 s), its posture given to policy, the example back-office policies.
 * A second session of the same person without a device certificate, on the same proxy, shows what the
 * device part costs per request.
 * Figures: requests/s at saturation over kept-alive connections (32 in flight, interleaved rounds,
 * median), proxy CPU time per request, and new connections/s (a full handshake with the client
 * certificate, one request each: the proxy turns TLS session resumption off when devices are on).
 *
 * Run: npm run build --silent && npx tsx bench/device-proxy.bench.ts   (about 1.5 minutes; BENCH_ROUNDS=5)
 */
import { Kek } from '../src/ca/kek.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { hashPassword, startIdentityProvider } from '../src/access/idp/index.js';
import { postureFromMdm } from '../src/api/devices.js';
import { certificatesToPem } from '../src/ca/index.js';
import { configSchema } from '../src/config/index.js';
import { PersonClient } from '../src/mesh/people-client.js';
import { startServer } from '../src/server/index.js';
import { caPlugin } from '../src/server/plugins/ca.js';
import { openStore } from '../src/store/index.js';
import { createLogger } from '../src/util/logger.js';
import { startNginx } from '../test/pep/nginx.js';
import { freePort } from '../test/support/cli.js';
import { type Figure, measureAsync, report } from './harness.js';
import { children, cpuUs, median, spawnReady, startBareApp } from './processes.js';

const TD = 'example.org';
const HOST = 'backoffice.localhost';
const PROXY_ID = `spiffe://${TD}/ns/edge/sa/access-proxy`;
const DEVICE = 'laptop-alice';
const POLICIES = fileURLToPath(new URL('../examples/policies/people', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)))) {
  throw new Error('the proxy runs from dist/: run `npm run build --silent` first');
}
const loadStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const dir = mkdtempSync(join(tmpdir(), 'nt-device-proxy-bench-'));
const appPort = await startBareApp();

// The trust domain's CA (a real server's), which issues the proxy's SVID and the device certificate.
const ca = caPlugin();
const server = await startServer({
  config: configSchema.parse({ data_dir: join(dir, 'server'), trust_domain: TD, server: { port: 0, agent_port: 0 } }),
  logger: createLogger('silent'),
  plugins: [ca],
});
const bundlePem = ca.handle.current().bundle().toPem();
const mint = (spiffeId: string, dnsNames: string[]) => {
  const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
  return {
    cert: certificatesToPem(m.chain),
    key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    serial: m.serialHex,
    notAfter: m.notAfter.getTime(),
  };
};
const write = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text, { mode: 0o600 });
  return f;
};
const bundleFile = write('bundle.pem', bundlePem);
const proxySvid = mint(PROXY_ID, [HOST]);
const proxyCert = write('proxy.crt', proxySvid.cert);
const proxyKey = write('proxy.key', proxySvid.key);
const device = mint(`spiffe://${TD}/device/${DEVICE}`, []);

// The device, enrolled in the store the proxy reads, with a fresh compliant posture (as an MDM sent it).
mkdirSync(join(dir, 'proxy-store'));
const proxyStore = await openStore({ dataDir: join(dir, 'proxy-store') });
await proxyStore.devices.create({
  id: DEVICE,
  owner: 'alice',
  name: DEVICE,
  spiffeId: `spiffe://${TD}/device/${DEVICE}`,
  enrolledAt: Date.now(),
  certSerial: device.serial,
  certNotAfter: device.notAfter,
});
const posture = {
  device_id: DEVICE,
  collected_at: new Date().toISOString(),
  managed: true,
  encrypted: true,
  os_patched: true,
  firewall_active: true,
  edr_active: true,
  vendor: 'bench',
};
await proxyStore.devices.addReport(DEVICE, {
  posture: postureFromMdm(posture, Date.now()),
  report: JSON.stringify(posture),
});
await proxyStore.close();

// The built-in provider with one person (group staff: may read /reports).
const proxyPort = await freePort();
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
      redirect_uris: [`https://${HOST}:${proxyPort}/.nevertrust/callback`],
    },
  ],
});

writeFileSync(
  join(dir, 'access-proxy.yaml'),
  `listen: 127.0.0.1:${proxyPort}
svid: { cert: ${proxyCert}, key: ${proxyKey}, bundle: ${bundleFile} }
policies: ${POLICIES}
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
`,
);
const bin = fileURLToPath(new URL('../bin/nevertrust.js', import.meta.url));
await spawnReady([bin, 'access-proxy', '--config', join(dir, 'access-proxy.yaml')], /access proxy ready/);
const proxyPid = children.at(-1)?.pid as number;

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
    ssl_client_certificate ${bundleFile};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_requests 100000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Verify $ssl_client_verify;
    }
  }`,
  nginxPort,
  1,
);
children.push(nginx.child);

// Alice signs in twice through the real flow: once with the device certificate (a device-bound
// session), once without (a session with no device).
const signIn = async (withDevice: boolean) => {
  const c = new PersonClient({ ca: bundlePem, ...(withDevice ? { cert: device.cert, key: device.key } : {}) });
  const landed = await c.signIn(`https://${HOST}:${proxyPort}/reports`, 'alice', PASSWORD);
  if (landed.status !== 200) throw new Error(`sign-in ended with ${landed.status}: ${landed.body.slice(0, 200)}`);
  const cookie = c.cookies(HOST).get('__Host-nevertrust_session');
  await c.close();
  if (!cookie) throw new Error('no session cookie after sign-in');
  return cookie;
};
const boundSession = await signIn(true);
const plainSession = await signIn(false);

const tlsWith = (cert: boolean) => ({
  ca: bundlePem,
  servername: HOST,
  ...(cert ? { cert: device.cert, key: device.key } : {}),
});
const targets = {
  nginx: { port: nginxPort, cert: true, session: undefined as string | undefined },
  ours: { port: proxyPort, cert: true, session: boundSession },
  'ours without device': { port: proxyPort, cert: false, session: plainSession },
};
type Kind = keyof typeof targets;
const KINDS = Object.keys(targets) as Kind[];
const headersOf = (k: Kind) => ({
  host: `${HOST}:${targets[k].port}`,
  accept: 'text/html,application/xhtml+xml',
  'user-agent': 'nevertrust-bench',
  ...(targets[k].session ? { cookie: `__Host-nevertrust_session=${targets[k].session}` } : {}),
});
const pools = Object.fromEntries(
  KINDS.map((k) => [
    k,
    new Pool(`https://127.0.0.1:${targets[k].port}`, { connections: 32, connect: tlsWith(targets[k].cert) }),
  ]),
) as Record<Kind, Pool>;
const kept = (k: Kind) => {
  const headers = headersOf(k);
  return async () => {
    const r = await pools[k].request({ path: '/reports', method: 'GET', headers });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`${k}: status ${r.statusCode}`);
  };
};
// A new connection for every request: a full handshake with the client certificate.
const fresh = (k: Kind) => {
  const headers = { ...headersOf(k), connection: 'close' };
  return () =>
    new Promise<void>((resolve, reject) => {
      const q = httpsRequest(
        {
          host: '127.0.0.1',
          port: targets[k].port,
          path: '/reports',
          method: 'GET',
          headers,
          agent: false,
          ...tlsWith(targets[k].cert),
        },
        (r) => {
          r.resume();
          r.on('end', () => (r.statusCode === 200 ? resolve() : reject(new Error(`${k}: status ${r.statusCode}`))));
        },
      );
      q.on('error', reject);
      q.end();
    });
};

const pids: Record<Kind, number> = {
  nginx: nginx.child.pid as number,
  ours: proxyPid,
  'ours without device': proxyPid,
};
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const rps = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
const cps = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
const cpu = Object.fromEntries(KINDS.map((k) => [k, { us: 0, requests: 0 }])) as Record<
  Kind,
  { us: number; requests: number }
>;
for (const k of KINDS) await measureAsync(kept(k), { seconds: 3, concurrency: 32, warmup: 100 });
for (let round = 0; round < ROUNDS; round++) {
  for (const k of KINDS) {
    const before = cpuUs(pids[k]);
    const st = await measureAsync(kept(k), { seconds: 3, concurrency: 32, warmup: 300 });
    rps[k].push(st.opsPerSec);
    cpu[k].us += cpuUs(pids[k]) - before;
    cpu[k].requests += st.count + 300;
  }
  for (const k of KINDS) {
    const st = await measureAsync(fresh(k), { seconds: 2, concurrency: 8, warmup: 20 });
    cps[k].push(st.opsPerSec);
  }
}
const figures: Figure[] = [
  {
    bench: 'device-proxy',
    metric: 'requests/s at saturation, kept-alive, client certificate verified (ours: + session, device, decision)',
    unit: 'req/s',
    peerName: 'nginx mTLS proxy',
    peer: median(rps.nginx),
    ours: median(rps.ours),
    higherIsBetter: true,
  },
  {
    bench: 'device-proxy',
    metric: 'new connections/s (full handshake with the client certificate, one request each)',
    unit: 'conn/s',
    peerName: 'nginx mTLS proxy',
    peer: median(cps.nginx),
    ours: median(cps.ours),
    higherIsBetter: true,
  },
  {
    bench: 'device-proxy',
    metric: 'proxy CPU time per request at saturation',
    unit: 'µs',
    peerName: 'nginx mTLS proxy',
    peer: cpu.nginx.us / cpu.nginx.requests,
    ours: cpu.ours.us / cpu.ours.requests,
    higherIsBetter: false,
  },
  {
    bench: 'device-proxy',
    metric: 'proxy CPU time per request: with the device vs the same proxy without one (what devices cost)',
    unit: 'µs',
    peerName: 'ours without device',
    peer: cpu['ours without device'].us / cpu['ours without device'].requests,
    ours: cpu.ours.us / cpu.ours.requests,
    higherIsBetter: false,
  },
];
report(figures);
const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const rounds = (a: Record<Kind, number[]>) => KINDS.map((k) => `${k} ${a[k].map(Math.round).join(' ')}`).join('; ');
process.stdout.write(
  `saturation rounds (req/s): ${rounds(rps)}\nnew-connection rounds (conn/s): ${rounds(cps)}\n` +
    `load average at the start: ${loadStart}, at the end: ${loadavg}\n`,
);
for (const p of Object.values(pools)) await p.close();
await nginx.stop();
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
