/**
 * The sidecar acts on revocation signals (issue #23) from a real server, over real mTLS and HTTP/2:
 * a long-lived HTTP/2 stream from a workload whose entry is deleted is cut within a second; a
 * revoked SVID serial is refused at its next handshake; a sidecar cut off from the stream during
 * revocations catches up when it reconnects, none lost. SVIDs are minted by the server's CA.
 */
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { type ClientHttp2Session, connect as http2Connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../../src/audit/event.js';
import { certificatesFromPem, spiffeIdFromCertificate, TrustBundle } from '../../src/spiffe/index.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import { type RunningSidecar, SidecarConfigSchema, startSidecar } from '../../src/pep/sidecar/index.js';
import { ConnectionGuard } from '../../src/pep/sidecar/revocation.js';
import { id, ingressPolicyDir } from '../pep/pki.js';
import { relay } from '../support/relay.js';
import { tempDir } from '../support/tmp.js';
import { type Mesh, startMesh, until } from './mesh-fixtures.js';

type Minted = Awaited<ReturnType<Mesh['mint']>>;

let mesh: Mesh;
let app: Server;
let policies: string;
const sidecars: RunningSidecar[] = [];
const sessions: ClientHttp2Session[] = [];

async function sidecar(svid: Minted, signalsServer: string, events: AuditEventInput[]): Promise<RunningSidecar> {
  const spiffeId = spiffeIdFromCertificate(new X509Certificate(svid.certChainPem));
  const bundle = new TrustBundle({
    trustDomain: spiffeId.trustDomain,
    x509Authorities: certificatesFromPem(svid.bundlePem).map((d) => new X509Certificate(d)),
  });
  const source = new MemorySvidSource(
    { spiffeId, certChainPem: svid.certChainPem, privateKeyPem: svid.privateKeyPem },
    [bundle],
  );
  const sc = await startSidecar(
    SidecarConfigSchema.parse({
      svid: { workload_api: 'unused' },
      policies,
      inbound: { listen: '127.0.0.1:0', app: `127.0.0.1:${(app.address() as AddressInfo).port}` },
      signals: { server: signalsServer },
    }),
    { source, recorder: { record: (e) => events.push(e as unknown as AuditEventInput) } },
  );
  sidecars.push(sc);
  await sc.signals?.ready();
  return sc;
}

function h2(port: number, svid: Minted): ClientHttp2Session {
  const s = http2Connect(`https://127.0.0.1:${port}`, {
    cert: svid.certChainPem,
    key: svid.privateKeyPem,
    ca: svid.bundlePem,
    checkServerIdentity: () => undefined,
  });
  s.on('error', () => {});
  sessions.push(s);
  return s;
}

/** GET /v1/ping on a fresh connection: the status, or the error that ended it. */
function ping(port: number, svid: Minted): Promise<number | string> {
  return new Promise((resolve) => {
    const s = h2(port, svid);
    s.on('close', () => resolve('closed'));
    s.on('error', (e) => resolve(e.message));
    const r = s.request({ ':path': '/v1/ping' });
    r.on('error', (e) => resolve(e.message));
    r.on('response', (h) => {
      resolve(Number(h[':status']));
      s.close();
    });
    r.end();
  });
}

beforeAll(async () => {
  const dir = tempDir();
  policies = ingressPolicyDir(dir, 'inventory', [
    { name: 'clients', from: ['orders', 'billing', 'a', 'b', 'c'], methods: ['GET'], paths: ['/v1/*'] },
  ]);
  app = createServer((req, res) => {
    if (req.url === '/v1/watch') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('event;');
      return; // never ends: a long-lived stream
    }
    res.end('pong');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  mesh = await startMesh();
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  for (const sc of sidecars) await sc.close();
  app?.closeAllConnections();
  app?.close();
  await mesh?.close();
});

describe('sidecar and revocation signals', { timeout: 60_000 }, () => {
  it('cuts a long-lived HTTP/2 stream within 1 s of the peer entry being deleted, audited as access.cut', async () => {
    const events: AuditEventInput[] = [];
    const sc = await sidecar(await mesh.mint(id('inventory')), mesh.agentUrl, events);
    const orders = await mesh.mint(id('orders'));
    const billing = await mesh.mint(id('billing'));
    const entry = await mesh.api('POST', '/v1/admin/entries', {
      spiffe_id: id('orders'),
      parent_id: 'spiffe://example.org/spire/agent/join_token/x',
      selectors: ['unix:uid:1000'],
    });
    expect(entry.status, JSON.stringify(entry.body)).toBe(201);

    const session = h2(sc.inboundPort as number, orders);
    const stream = session.request({ ':path': '/v1/watch' });
    stream.on('error', () => {});
    const first = await new Promise<string>((resolve) => stream.once('data', (d: Buffer) => resolve(d.toString())));
    expect(first).toBe('event;');
    // Another peer's stream on its own connection stays up.
    const other = h2(sc.inboundPort as number, billing);
    const otherStream = other.request({ ':path': '/v1/watch' });
    otherStream.on('error', () => {});
    await new Promise((resolve) => otherStream.once('data', resolve));

    const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now())));
    const t0 = Date.now();
    const del = await mesh.api('DELETE', `/v1/admin/entries/${String(entry.body.id)}`);
    expect(del.status).toBeLessThan(300);
    const elapsed = (await closed) - t0;
    expect(elapsed).toBeLessThan(1000);
    expect(stream.destroyed).toBe(true);
    expect(other.closed || other.destroyed).toBe(false);

    const cut = await until(() => events.find((e) => e.kind === 'access.cut'), 'the access.cut event');
    expect(cut).toMatchObject({
      outcome: 'deny',
      source: { spiffe_id: id('orders') },
      details: { phase: 'live', protocol: 'h2', signal_kind: 'workload.entry-deleted' },
    });
    expect(typeof cut.details?.signal_seq).toBe('number');
    // An SVID issued before the deletion is refused at its next handshake too.
    expect(await ping(sc.inboundPort as number, orders)).not.toBe(200);
    expect(await ping(sc.inboundPort as number, billing)).toBe(200);
  });

  it('refuses a revoked SVID serial at its next handshake (and cuts its live connection)', async () => {
    const events: AuditEventInput[] = [];
    const sc = await sidecar(await mesh.mint(id('inventory')), mesh.agentUrl, events);
    const billing = await mesh.mint(id('billing'));
    const fresh = await mesh.mint(id('billing')); // same ID, another SVID: not revoked
    expect(await ping(sc.inboundPort as number, billing)).toBe(200);
    const live = h2(sc.inboundPort as number, billing);
    const liveClosed = new Promise((resolve) => live.once('close', resolve));
    // And an HTTP/1.1 connection with a response in flight (a stream the app never ends).
    const h1 = tlsConnect({
      port: sc.inboundPort as number,
      host: '127.0.0.1',
      cert: billing.certChainPem,
      key: billing.privateKeyPem,
      ca: billing.bundlePem,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    h1.on('error', () => {});
    h1.write('GET /v1/watch HTTP/1.1\r\nhost: inventory\r\n\r\n');
    await new Promise((resolve) => h1.once('data', resolve));
    const h1Closed = new Promise((resolve) => h1.once('close', resolve));

    const before = sc.signals?.lastSeq() ?? 0;
    await mesh.revokeSvid(billing.serial);
    await until(() => (sc.signals?.lastSeq() ?? 0) > before, 'the signal at the sidecar');
    await liveClosed;
    await h1Closed;
    expect(events.some((e) => e.details?.phase === 'live' && e.details?.protocol === 'http/1.1')).toBe(true);
    expect(await ping(sc.inboundPort as number, billing)).not.toBe(200);
    expect(await ping(sc.inboundPort as number, fresh)).toBe(200);
    const refused = await until(
      () => events.find((e) => e.kind === 'access.cut' && e.details?.phase === 'handshake'),
      'the handshake refusal event',
    );
    expect(refused.details).toMatchObject({
      signal_kind: 'svid.revoked',
      serial: billing.serial.toLowerCase().replace(/^0+/, ''),
    });
  });

  it('an audit sink that throws does not stop the cuts: every live connection of a revoked SVID ends', async () => {
    const peer = await mesh.mint(id('d'));
    const guard = new ConnectionGuard({
      self: () => id('inventory'),
      log: () => {},
      record: () => {
        throw new Error('audit sink down');
      },
    });
    const sockets = [1, 2].map((port) => ({
      destroyed: false,
      remotePort: port,
      getPeerX509Certificate: () => new X509Certificate(peer.certChainPem),
      once: () => {},
      destroy() {
        this.destroyed = true;
      },
    }));
    for (const s of sockets) expect(guard.admit(s as unknown as TLSSocket)).toBe(true);
    const at = new Date().toISOString();
    guard.apply(1, { kind: 'svid.revoked', serial: peer.serial, reason: 'stolen', source: 'admin', at });
    expect(sockets.map((s) => s.destroyed)).toEqual([true, true]);
    expect(guard.size).toBe(0);
  });

  it('a sidecar cut off from the stream during revocations catches up on reconnect, none lost', async () => {
    const r = await relay(mesh.agentUrl);
    try {
      const events: AuditEventInput[] = [];
      const sc = await sidecar(await mesh.mint(id('inventory')), r.url, events);
      const peers = await Promise.all(['a', 'b', 'c'].map((n) => mesh.mint(id(n))));
      for (const p of peers) expect(await ping(sc.inboundPort as number, p)).toBe(200);
      r.down();
      await until(() => sc.signals?.connected() === false, 'the stream to drop');
      for (const p of peers) await mesh.revokeSvid(p.serial);
      const head = await mesh.server.store.signals.head();
      // While cut off, the sidecar knows nothing of them.
      expect(await ping(sc.inboundPort as number, peers[0] as Minted)).toBe(200);
      r.up();
      await until(() => (sc.signals?.lastSeq() ?? 0) >= head && head > 0, 'the catch-up', 15_000);
      for (const p of peers) expect(await ping(sc.inboundPort as number, p)).not.toBe(200);
    } finally {
      r.close();
    }
  });
});
