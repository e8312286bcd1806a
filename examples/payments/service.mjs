// The shared part of the three example services. Each service:
// - gets its SPIFFE identity from the Workload API (SPIFFE_ENDPOINT_SOCKET): no secret in its config;
// - serves mTLS with that identity and decides every request with the middleware against the policies;
// - calls its peers over mTLS, checking the peer's SPIFFE ID;
// - reports each decision to its parent process (the local mesh), which records it in the audit log.
// A loopback-only "driver" port lets the local traffic generator ask the service to make calls
// with its own identity (that is how the demo plays a compromised service trying lateral movement).
import { createServer } from 'node:http';
import { authorizeId, authorizeMemberOf, createMtlsFetch, createMtlsServer } from 'nevertrust/mtls';
import { SnapshotHolder, withNevertrust } from 'nevertrust/middleware';
import { PolicyWatcher } from 'nevertrust/policy';
import { X509Source } from 'nevertrust/workload';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

function readJson(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Runs one service. `routes` maps `METHOD /path` to `async (req, body, ctx) => [status, body]`;
 * `ctx.call(peer, method, path, body)` calls a peer over mTLS.
 */
export async function runService({ name, routes }) {
  const source = await X509Source.create();
  const self = String(source.svid.spiffeId);
  const trustDomain = self.slice('spiffe://'.length).split('/')[0];
  const watcher = new PolicyWatcher(env('NT_POLICIES'));
  const snapshot = new SnapshotHolder(watcher.current);
  watcher.on('reload', (s) => snapshot.set(s));
  const recorder = { record: (event) => process.send?.({ type: 'decision', service: name, event }) };
  const peers = JSON.parse(process.env.NT_PEERS ?? '{}');
  const fetchers = new Map();

  /** Calls a peer over mTLS; the path is sent exactly as given (no URL normalization on our side). */
  const call = async (peer, method, path, body) => {
    const p = peers[peer];
    if (!p) return { status: 0, body: `unknown peer ${peer}` };
    let f = fetchers.get(peer);
    if (!f) {
      f = createMtlsFetch(source, { authorize: authorizeId(p.spiffe_id) });
      fetchers.set(peer, f);
    }
    try {
      const res = await f.dispatcher.request({
        origin: p.url,
        path,
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.statusCode, body: await res.body.text() };
    } catch (e) {
      return { status: 0, body: String(e?.message ?? e) };
    }
  };

  const app = withNevertrust({ target: self, snapshot: snapshot.get, bundles: source, recorder }, async (req, res) => {
    const handler = routes[`${req.method} ${req.url.split('?')[0]}`];
    if (!handler) return send(res, 404, { error: 'not_found' });
    try {
      const [status, body] = await handler(req, await readJson(req), { call, identity: req.nevertrust?.identity });
      send(res, status, body);
    } catch (e) {
      send(res, 400, { error: 'bad_request', message: String(e?.message ?? e) });
    }
  });
  const server = createMtlsServer(source, { authorize: authorizeMemberOf(trustDomain) }, app);
  // A client refused during the TLS handshake (no certificate, unknown CA) is a decision too.
  server.on('tlsClientError', (err, socket) => {
    recorder.record({
      kind: 'access.decision',
      outcome: 'deny',
      source: { ip: socket.remoteAddress },
      target: { spiffe_id: self },
      reason: `TLS handshake refused: ${err.code ?? err.message}`,
      details: { pep: 'mtls' },
    });
  });
  await new Promise((r) => server.listen(Number(env('NT_PORT')), '127.0.0.1', r));

  // Demo driver: loopback only, plain HTTP, used by the local traffic generator.
  const driver = createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/__demo/call') return send(res, 404, { error: 'not_found' });
    try {
      const { peer, method, path, body } = await readJson(req);
      send(res, 200, await call(peer, method, path, body));
    } catch (e) {
      send(res, 400, { error: String(e?.message ?? e) });
    }
  });
  await new Promise((r) => driver.listen(Number(env('NT_DRIVER_PORT')), '127.0.0.1', r));

  let publicServer;
  if (routes.public && process.env.NT_PUBLIC_PORT) {
    publicServer = createServer(async (req, res) => {
      const h = routes.public[`${req.method} ${req.url.split('?')[0]}`];
      if (!h) return send(res, 404, { error: 'not_found' });
      try {
        const [status, body] = await h(req, await readJson(req), { call });
        send(res, status, body);
      } catch (e) {
        send(res, 400, { error: String(e?.message ?? e) });
      }
    });
    await new Promise((r) => publicServer.listen(Number(process.env.NT_PUBLIC_PORT), '127.0.0.1', r));
  }

  source.on('update', () =>
    process.send?.({ type: 'rotated', service: name, spiffe_id: String(source.svid.spiffeId) }),
  );
  process.send?.({ type: 'ready', service: name, spiffe_id: self });

  const stop = () => {
    watcher.close();
    server.close();
    driver.close();
    publicServer?.close();
    for (const f of fetchers.values()) f.close();
    source.close();
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
}
