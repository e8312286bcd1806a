/**
 * Continuous access evaluation (issue #23): how long from a revocation at the server until every
 * enforcement point has acted on it — the next affected request refused and the last affected live
 * connection closed. Everything is real: a server in this process (CA, signals plugin, agent port,
 * SSF receiver with its RFC 8935 push endpoint; SQLite store), a test SSF transmitter with its own
 * signing key (a real HTTP server), and as processes of their own, from the build: 4 sidecars
 * (`nevertrust sidecar`) and 4 access proxies (`nevertrust access-proxy`, one shared session store
 * as replicas have), each following the signal stream with its SVID over mTLS; the built-in OpenID
 * provider; a bare app (HTTP and WebSocket) behind them.
 *
 * Sidecars: 200 live mTLS keep-alive connections, each client with an SVID of its own, spread over
 * the sidecars; a revocation is `POST /v1/admin/revoke {svid: serial}`. Access proxies: 200 sessions,
 * each a real sign-in through the OIDC flow (10 people, 20 sessions each), each holding a WebSocket
 * through one proxy and a keep-alive connection through the next; a revocation is either
 * `POST /v1/admin/revoke {session}` or a CAEP session-revoked SET (opaque subject: the session id)
 * pushed to `POST /v1/ssf/push/<receiver>`, alternately, and it is probed through a third proxy.
 * Per revocation, timed from just before the call: "closed" is when the last affected connection was
 * closed by the enforcement point (the WebSocket after its 1008 close frame, the keep-alive
 * connection); "refused" is when a request with the revoked credential, sent back to back on new
 * connections from the moment of the call, is first refused (an upper bound: the refused probe may
 * have begun before the enforcement point knew). p50 and p99 over BENCH_REVOCATIONS (default 100)
 * revocations per kind of enforcement point; connections not revoked must stay open.
 *
 * The peer figure is the configured bound, not a measurement: the stream's ping (5 s), the longest a
 * following enforcement point goes without hearing from the server while connected (it reconnects
 * with backoff 100 ms → 5 s; the access proxy fails closed for people after `max_disconnected`, 30 s
 * by default). Published figures, for context only (not measured here): Cloudflare Access stops
 * accepting a token 20–30 s after a logout; Google IAP notices "within a couple of minutes";
 * Pomerium relies on a ~10-minute refresh from the provider and cannot end a running WebSocket.
 * Target p99 ≤ 1 s; goal ≤ 100 ms. Not covered: two servers on one PostgreSQL (the stream then wakes
 * on the store poll, 200 ms by default).
 *
 * Run: npm run build --silent && npx tsx bench/revocation.bench.ts   (about 3 minutes on this machine;
 *      BENCH_REVOCATIONS=100, BENCH_CONNECTIONS=200, BENCH_SIDECARS=4, BENCH_PROXIES=4,
 *      BENCH_SESSIONS=200, BENCH_PEOPLE=10)
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { hashPassword, startIdentityProvider } from '../src/access/idp/index.js';
import { Kek } from '../src/ca/kek.js';
import { certificatesToPem } from '../src/ca/index.js';
import { PersonClient } from '../src/mesh/people-client.js';
import { ssfPlugin } from '../src/server/plugins/ssf.js';
import { openStore } from '../src/store/index.js';
import { startHttpTransmitter } from '../test/signals/ssf-http.js';
import { configSchema } from '../src/config/index.js';
import { startServer } from '../src/server/index.js';
import { agentEndpointPlugin } from '../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../src/server/plugins/ca.js';
import { signalsPlugin } from '../src/server/plugins/signals.js';
import { createLogger } from '../src/util/logger.js';
import { freePort } from '../test/support/cli.js';
import { type Figure, percentile, report } from './harness.js';
import { children, spawnReady, startBareApp } from './processes.js';

const TD = 'example.org';
const SERVICE = `spiffe://${TD}/ns/payments/sa/payment-service`;
const CLIENT = `spiffe://${TD}/ns/payments/sa/api-gateway`;
const POLICIES = fileURLToPath(new URL('../examples/policies/payments', import.meta.url));
const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 100);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 200);
const SIDECARS = Number(process.env.BENCH_SIDECARS ?? 4);
const PROXIES = Number(process.env.BENCH_PROXIES ?? 4);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
const PEOPLE = Number(process.env.BENCH_PEOPLE ?? 10);
/** The stream's ping (the signals plugin's default): the bound a follower is held to. */
const PING_MS = 5_000;
if (!existsSync(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)))) {
  throw new Error('the sidecars run from dist/: run `npm run build --silent` first');
}
if (REVOCATIONS > CONNECTIONS) throw new Error('BENCH_REVOCATIONS must not exceed BENCH_CONNECTIONS');
const loadStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const dir = mkdtempSync(join(tmpdir(), 'nt-revocation-bench-'));
const write = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text, { mode: 0o600 });
  return f;
};

// The server, as `nevertrust server` assembles it for these routes: CA, signals, agent port.
const ca = caPlugin();
const signals = signalsPlugin({ ca: ca.handle, pingMs: PING_MS });
const agent = agentEndpointPlugin({ ca: ca.handle, routes: signals.agentRoutes });
const serverDir = join(dir, 'server');
// A transmitter of OpenID Shared Signals (its own signing key, a real HTTP server) pushing SETs.
const SSF_AUD = 'https://nevertrust.bench/ssf';
const SSF_PUSH_TOKEN = randomBytes(24).toString('base64url');
const tx = await startHttpTransmitter(SSF_AUD);
const serverPort = await freePort();
const server = await startServer({
  config: configSchema.parse({
    data_dir: serverDir,
    trust_domain: TD,
    server: { port: serverPort, agent_port: 0 },
    signals: {
      ssf: {
        receivers: [
          {
            name: 'idp',
            issuer: tx.issuer,
            audience: SSF_AUD,
            push_url: `http://127.0.0.1:${serverPort}/v1/ssf/push/idp`,
            push_token_file: write('push.token', SSF_PUSH_TOKEN),
          },
        ],
      },
    },
  }),
  logger: createLogger('silent'),
  plugins: [ca, signals, agent, ssfPlugin({ signals: signals.handle })],
});
const adminToken = readFileSync(join(serverDir, 'admin.token'), 'utf8').trim();
const agentUrl = `https://127.0.0.1:${agent.address()?.port}`;
const bundlePem = ca.handle.current().bundle().toPem();
const bundleFile = write('bundle.pem', bundlePem);
const mint = (spiffeId: string, dnsNames: string[] = []) => {
  const m = ca.handle.current().mintX509Svid({ spiffeId, dnsNames, ttlSeconds: 3600 });
  return {
    cert: certificatesToPem(m.chain),
    key: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    serial: new X509Certificate(m.chain[0] as Buffer).serialNumber,
  };
};

// The sidecars: one app behind them all, each following the signal stream with its SVID.
const appPort = await startBareApp();
const bin = fileURLToPath(new URL('../bin/nevertrust.js', import.meta.url));
const sidecarPorts: number[] = [];
for (let i = 0; i < SIDECARS; i++) {
  const svid = mint(SERVICE, ['localhost']);
  const port = await freePort();
  const cfg = write(
    `sidecar-${i}.yaml`,
    `svid: { cert: ${write(`sc${i}.crt`, svid.cert)}, key: ${write(`sc${i}.key`, svid.key)}, bundle: ${bundleFile} }
policies: ${POLICIES}
signals: { server: ${agentUrl} }
inbound:
  listen: 127.0.0.1:${port}
  app: 127.0.0.1:${appPort}
`,
  );
  await spawnReady([bin, 'sidecar', '--config', cfg], /sidecar ready/);
  sidecarPorts.push(port);
}

const CHARGE =
  'POST /v1/charges HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"amount":1}';

type Opened = { ok: true; socket: TLSSocket } | { ok: false; status?: string };
interface Target {
  port: number;
  servername: string;
  svid?: { cert: string; key: string };
}

/**
 * Opens a TLS connection and sends `req`: the socket when the answer was `expect` (200, or 101 for a
 * WebSocket upgrade), else `{ok: false}` (refused at the handshake, closed, or another status).
 */
function open(t: Target, req: string, expect = 200): Promise<Opened> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: t.port, servername: t.servername, ca: bundlePem, ...t.svid });
    let buf = '';
    let done = false;
    const finish = (r: Opened) => {
      if (done) return;
      done = true;
      s.removeAllListeners('data');
      // Later answers (kept busy) and WebSocket frames are read and dropped.
      s.on('data', () => {});
      resolve(r);
    };
    s.once('secureConnect', () => s.write(req));
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const head = buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const len = expect === 101 ? 0 : Number(/content-length:\s*(\d+)/i.exec(buf.slice(0, head))?.[1] ?? 0);
      if (buf.length < head + 4 + len) return;
      const ok = buf.startsWith(`HTTP/1.1 ${expect}`);
      if (!ok) s.destroy();
      finish(ok ? { ok: true, socket: s } : { ok: false, status: buf.slice(0, buf.indexOf('\r\n')) });
    });
    s.on('error', () => finish({ ok: false }));
    s.on('close', () => finish({ ok: false }));
  });
}

/** A live connection the bench holds open; `closedAt` when the other side closed it. */
interface Live {
  socket: TLSSocket;
  busy?: string;
  closedAt?: number;
}
const lives: Live[] = [];
async function hold(t: Target, req: string, expect = 200, busy?: string): Promise<Live> {
  const r = await open(t, req, expect);
  if (!r.ok) throw new Error(`a live connection to port ${t.port} was not answered ${expect}: ${r.status ?? 'closed'}`);
  const l: Live = { socket: r.socket, busy };
  r.socket.on('error', () => {});
  r.socket.once('close', () => {
    l.closedAt = performance.now();
  });
  lives.push(l);
  return l;
}
// Kept alive and in use: every keep-alive connection sends a request each second until it is cut.
const keepBusy = setInterval(() => {
  for (const l of lives) if (l.busy && l.closedAt === undefined && !l.socket.destroyed) l.socket.write(l.busy);
}, 1000);

/**
 * Times one revocation: `act()` is the revocation; `probe` is sent back to back on new connections
 * until refused; `affected` are the live connections that must close. Returns ms from just before
 * `act()` to the refusal and to the last affected close.
 */
async function timeRevocation(
  act: () => Promise<void>,
  probe: () => Promise<Opened>,
  affected: Live[],
): Promise<{ refused: number; closed: number; answered: number }> {
  const t0 = performance.now();
  let answered = 0;
  const call = act().then(() => {
    answered = performance.now() - t0;
  });
  let refusedAt: number | undefined;
  while (refusedAt === undefined) {
    const r = await probe();
    if (r.ok) r.socket.destroy();
    else refusedAt = performance.now();
    if (performance.now() - t0 > 10_000) throw new Error('still served 10 s after the revocation');
  }
  await call;
  const end = performance.now() + 10_000;
  while (affected.some((l) => l.closedAt === undefined)) {
    if (performance.now() > end) throw new Error('a live connection still open 10 s after the revocation');
    await new Promise((r) => setTimeout(r, 1));
  }
  return {
    refused: refusedAt - t0,
    closed: Math.max(...affected.map((l) => (l.closedAt as number) - t0)),
    answered,
  };
}

async function adminRevoke(body: Record<string, string>): Promise<void> {
  const res = await fetch(`${server.url}/v1/admin/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, reason: 'bench' }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`revoke answered ${res.status}: ${text}`);
}

type Samples = { refused: number[]; closed: number[]; answered: number[] };
const samples = (): Samples => ({ refused: [], closed: [], answered: [] });
const rows: Array<{ what: string; s: Samples }> = [];

// ---- Sidecars: live mTLS connections, each client an SVID of its own (a serial to revoke).
{
  const conns: Array<{ t: Target; serial: string; live: Live }> = [];
  // Opened 20 at a time (setting up is not what is measured).
  for (let i = 0; i < CONNECTIONS; i += 20) {
    const batch = Array.from({ length: Math.min(20, CONNECTIONS - i) }, (_, j) => {
      const svid = mint(CLIENT);
      const t = { port: sidecarPorts[(i + j) % SIDECARS] as number, servername: 'localhost', svid };
      return hold(t, CHARGE, 200, CHARGE).then((live) => ({ t, serial: svid.serial, live }));
    });
    conns.push(...(await Promise.all(batch)));
  }
  // The server must see every sidecar following before the clock starts.
  await new Promise((r) => setTimeout(r, 500));
  const s = samples();
  for (let i = 0; i < REVOCATIONS; i++) {
    const c = conns[i % conns.length] as (typeof conns)[number];
    const r = await timeRevocation(
      () => adminRevoke({ svid: c.serial }),
      () => open(c.t, CHARGE),
      [c.live],
    );
    s.refused.push(r.refused);
    s.closed.push(r.closed);
    s.answered.push(r.answered);
  }
  // The revocations cut only what they named.
  const wrong = conns.slice(REVOCATIONS).filter((c) => c.live.closedAt !== undefined).length;
  if (wrong > 0) throw new Error(`${wrong} sidecar connections not revoked were closed`);
  rows.push({ what: `${SIDECARS} sidecars, ${CONNECTIONS} live mTLS keep-alive connections; admin revoke svid`, s });
  for (const c of conns) c.live.socket.destroy();
}

// ---- Access proxies: people signed in through the real OIDC flow, each session with a WebSocket
// and a keep-alive connection held open through different proxies.
const peopleRows = await (async () => {
  const HOST = 'live.localhost';
  const wsApp = Number(
    await spawnReady(
      [
        '-e',
        `const http=require('node:http'),c=require('node:crypto');const s=http.createServer((q,r)=>{q.resume();q.on('end',()=>{r.writeHead(200,{'content-type':'text/plain','content-length':2});r.end('ok')})});s.on('upgrade',(q,k)=>{const a=c.createHash('sha1').update(q.headers['sec-websocket-key']+'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');k.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: '+a+'\\r\\n\\r\\n');k.on('data',()=>{});k.on('error',()=>{})});s.keepAliveTimeout=60000;s.listen(0,'127.0.0.1',()=>console.log('PORT',s.address().port))`,
      ],
      /PORT (\d+)/,
    ),
  );
  const policies = join(dir, 'people-policies');
  mkdirSync(policies);
  writeFileSync(
    join(policies, 'live.yaml'),
    `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: live-app
spec:
  action: ALLOW
  target:
    services: [live]
  rules:
    - name: staff
      to:
        - paths: [/, /ws]
      when:
        - key: request.auth.claims[groups]
          values: [staff]
`,
  );
  const proxyPorts: number[] = [];
  for (let i = 0; i < PROXIES; i++) proxyPorts.push(await freePort());
  const idpPort = await freePort();
  const CLIENT_SECRET = randomBytes(24).toString('base64url');
  const PASSWORD = randomBytes(18).toString('base64url');
  mkdirSync(join(dir, 'idp'));
  const idpStore = await openStore({ dataDir: join(dir, 'idp') });
  const people = Array.from({ length: PEOPLE }, (_, i) => `person${i}`);
  const hash = await hashPassword(PASSWORD);
  for (const p of people)
    await idpStore.users.create({
      username: p,
      email: `${p}@example.com`,
      name: p,
      groups: ['staff'],
      passwordHash: hash,
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
        redirect_uris: proxyPorts.map((p) => `https://${HOST}:${p}/.nevertrust/callback`),
      },
    ],
  });
  // The proxies share one store and session key (as replicas do), each its own SVID and process.
  const proxyStoreDir = join(dir, 'proxy-store');
  for (const [i, port] of proxyPorts.entries()) {
    const svid = mint(`spiffe://${TD}/ns/edge/sa/access-proxy`, [HOST]);
    const cfg = write(
      `access-proxy-${i}.yaml`,
      `listen: 127.0.0.1:${port}
svid: { cert: ${write(`ap${i}.crt`, svid.cert)}, key: ${write(`ap${i}.key`, svid.key)}, bundle: ${bundleFile} }
policies: ${policies}
store: { data_dir: ${proxyStoreDir} }
signals: { server: ${agentUrl} }
auth:
  issuer: ${idp.issuer}
  client_id: access-proxy
  client_secret: ${CLIENT_SECRET}
  ca_file: ${bundleFile}
  session: { key_file: ${join(dir, 'session.key')} }
routes:
  - name: live
    from: { host: ${HOST} }
    to: http://127.0.0.1:${wsApp}
    websockets: true
`,
    );
    try {
      await spawnReady([bin, 'access-proxy', '--config', cfg], /access proxy ready/);
    } catch (e) {
      // Before the access proxy follows the signal stream (issue #23), its config has no `signals:`.
      if (/signals/.test((e as Error).message)) {
        await idp.close();
        await idpStore.close();
        return undefined;
      }
      throw e;
    }
  }
  // Each session is a real sign-in (proxy → provider's login form → callback); a few people, many each.
  const proxyStore = await openStore({ dataDir: proxyStoreDir });
  const sessions: Array<{ id: string; cookie: string }> = [];
  const signInStart = performance.now();
  // Four sign-ins at a time, as several browsers would.
  let next = 0;
  const signInOne = async (i: number) => {
    const browser = new PersonClient({ ca: bundlePem });
    const landed = await browser.signIn(
      `https://${HOST}:${proxyPorts[i % PROXIES]}/`,
      people[i % people.length] as string,
      PASSWORD,
    );
    if (landed.status !== 200) throw new Error(`sign-in ended with ${landed.status}: ${landed.body.slice(0, 200)}`);
    const cookie = browser.cookies(HOST).get('__Host-nevertrust_session');
    await browser.close();
    if (!cookie) throw new Error('no session cookie after sign-in');
    const record = await proxyStore.accessSessions.findByToken(cookie);
    if (!record) throw new Error('the session is not in the proxies’ store');
    sessions[i] = { id: record.id, cookie };
  };
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < SESSIONS) await signInOne(next++);
    }),
  );
  const signInMs = performance.now() - signInStart;
  await proxyStore.close();
  const get = (cookie: string) =>
    `GET / HTTP/1.1\r\nhost: ${HOST}\r\ncookie: __Host-nevertrust_session=${cookie}\r\naccept: text/html\r\n\r\n`;
  const upgrade = (cookie: string, port: number) =>
    `GET /ws HTTP/1.1\r\nhost: ${HOST}\r\ncookie: __Host-nevertrust_session=${cookie}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\norigin: https://${HOST}:${port}\r\n\r\n`;
  const target = (i: number): Target => ({ port: proxyPorts[i % PROXIES] as number, servername: HOST });
  // Each session: its WebSocket through one proxy, its keep-alive connection through the next, and
  // the probes through a third: the revocation must reach every proxy.
  const held = [];
  for (const [i, s] of sessions.entries()) {
    const ws = await hold(target(i), upgrade(s.cookie, target(i).port), 101);
    const ka = await hold(target(i + 1), get(s.cookie), 200, get(s.cookie));
    held.push({ ...s, i, ws, ka });
  }
  await new Promise((r) => setTimeout(r, 500));
  const admin = samples();
  const pushed = samples();
  const n = Math.min(REVOCATIONS, held.length);
  for (let k = 0; k < n; k++) {
    const h = held[k] as (typeof held)[number];
    const viaSsf = k % 2 === 1;
    const r = await timeRevocation(
      viaSsf
        ? async () => {
            // A CAEP session-revoked SET, signed by the transmitter, pushed to our RFC 8935 endpoint.
            const set = await tx.mint({
              sub_id: { format: 'opaque', id: h.id },
              events: {
                'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {
                  event_timestamp: Math.floor(Date.now() / 1000),
                },
              },
            });
            const res = await fetch(`${server.url}/v1/ssf/push/idp`, {
              method: 'POST',
              headers: { 'content-type': 'application/secevent+jwt', authorization: `Bearer ${SSF_PUSH_TOKEN}` },
              body: set,
            });
            const text = await res.text();
            if (res.status !== 202) throw new Error(`the push endpoint answered ${res.status}: ${text}`);
          }
        : () => adminRevoke({ session: h.id }),
      () => open(target(h.i + 2), get(h.cookie)),
      [h.ws, h.ka],
    );
    const s = viaSsf ? pushed : admin;
    s.refused.push(r.refused);
    s.closed.push(r.closed);
    s.answered.push(r.answered);
  }
  const wrong = held.slice(n).filter((h) => h.ws.closedAt !== undefined || h.ka.closedAt !== undefined).length;
  if (wrong > 0) throw new Error(`${wrong} sessions not revoked lost a live connection`);
  for (const l of lives) l.socket.destroy();
  await idp.close();
  await idpStore.close();
  const where = `${PROXIES} access proxies, ${SESSIONS} sessions (${PEOPLE} people, each session a real sign-in), a WebSocket and a keep-alive connection each`;
  return {
    signInMs,
    rows: [
      { what: `${where}; admin revoke session`, s: admin },
      { what: `${where}; CAEP session-revoked SET pushed (RFC 8935)`, s: pushed },
    ],
  };
})();
clearInterval(keepBusy);
if (peopleRows) rows.push(...peopleRows.rows);

const figures: Figure[] = [];
for (const { what, s } of rows) {
  for (const a of [s.refused, s.closed, s.answered]) a.sort((x, y) => x - y);
  for (const [end, xs] of [
    ['last affected connection closed', s.closed],
    ['next request refused', s.refused],
  ] as const) {
    for (const p of [50, 99]) {
      figures.push({
        bench: 'revocation',
        metric: `${what} → ${end}, p${p} of ${xs.length}`,
        unit: 'ms',
        peerName: 'configured bound (stream ping)',
        peer: PING_MS,
        ours: percentile(xs, p),
        higherIsBetter: false,
        // Target p99 ≤ 1 s against a 5-s bound: ≥ 5×.
        ...(p === 99 ? { targetRatio: PING_MS / 1000 } : {}),
      });
    }
  }
}
report(figures);
const loadEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
for (const { what, s } of rows)
  process.stdout.write(
    `${what}: the revoking call answered p50 ${percentile(s.answered, 50).toFixed(1)} ms, p99 ${percentile(s.answered, 99).toFixed(1)} ms\n`,
  );
process.stdout.write(
  `${peopleRows ? `${SESSIONS} sign-ins took ${(peopleRows.signInMs / 1000).toFixed(1)} s; ` : 'access proxies NOT measured: this build’s access proxy does not follow the signal stream (no `signals:` in its config); '}` +
    `target p99 ≤ 1000 ms, goal ≤ 100 ms; published for context (not measured): Cloudflare Access 20–30 s; ` +
    `load average at the start: ${loadStart}, at the end: ${loadEnd}\n`,
);

for (const l of lives) l.socket.destroy();
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
await server.close();
await tx.close();
rmSync(dir, { recursive: true, force: true });
