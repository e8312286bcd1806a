import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeAny,
  authorizeId,
  authorizeMemberOf,
  authorizeOneOf,
  createMtlsFetch,
  createMtlsServer,
  MemorySvidSource,
  peerIdentity,
  type X509SvidSource,
} from '../../src/pep/mtls/index.js';
import type { X509Source } from '../../src/workload/index.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki, type Pki } from './pki.js';

// The Workload API source satisfies the helpers' interface (compile-time check).
const _fits = (s: X509Source): X509SvidSource => s;
void _fits;

let pki: Pki;
const dir = tempDir();
beforeAll(async () => {
  pki = await makePki(dir);
});

async function serve(source: X509SvidSource, authorize = authorizeId(id('api-gateway'))) {
  const refused: string[] = [];
  const server = createMtlsServer(source, { authorize, onRefused: (e) => refused.push(e.code) }, (req, res) => {
    res.end(String(peerIdentity(req.socket)?.spiffeId));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, refused };
}

const closers: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of closers) await c();
});

describe('nevertrust/mtls', () => {
  it('both sides authorize: the right peers talk, the wrong ones are refused', async () => {
    const serverSrc = new MemorySvidSource(pki.mint('payment-service'), [pki.bundle()]);
    const { server, url, refused } = await serve(serverSrc);
    closers.push(() => server.close());
    const gw = new MemorySvidSource(pki.mint('api-gateway'), [pki.bundle()]);
    const f = createMtlsFetch(gw, { authorize: authorizeId(id('payment-service')) });
    closers.push(() => f.close());
    expect(await (await f(`${url}/x`)).text()).toBe(id('api-gateway'));

    // The client refuses a server with an unexpected ID.
    const wrongServer = createMtlsFetch(gw, { authorize: authorizeId(id('audit-service')) });
    await expect(wrongServer(`${url}/x`)).rejects.toThrow();
    await wrongServer.close();
    const member = createMtlsFetch(gw, { authorize: authorizeMemberOf('example.org') });
    expect((await member(`${url}/x`)).status).toBe(200);
    await member.close();
    const oneOf = createMtlsFetch(gw, { authorize: authorizeOneOf([id('audit-service'), id('payment-service')]) });
    expect((await oneOf(`${url}/x`)).status).toBe(200);
    await oneOf.close();

    // The server refuses an authenticated but unauthorized client.
    const audit = createMtlsFetch(new MemorySvidSource(pki.mint('audit-service'), [pki.bundle()]), {
      authorize: authorizeAny(),
    });
    await expect(audit(`${url}/x`)).rejects.toThrow();
    await audit.close();
    expect(refused).toContain('ERR_PEER_UNAUTHORIZED');

    // Another trust domain (its own bundle on the client side) and an expired SVID fail the handshake.
    const foreign = createMtlsFetch(
      new MemorySvidSource(pki.mint('api-gateway', { other: true }), [pki.bundle(), pki.other.bundle()]),
      { authorize: authorizeAny() },
    );
    await expect(foreign(`${url}/x`)).rejects.toThrow();
    await foreign.close();
    const expired = createMtlsFetch(
      new MemorySvidSource(pki.mint('api-gateway', { ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) }), [
        pki.bundle(),
      ]),
      { authorize: authorizeAny() },
    );
    await expect(expired(`${url}/x`)).rejects.toThrow();
    await expired.close();

    // No client certificate: the handshake fails.
    const noCert = await new Promise<string>((resolve) => {
      const s = connect({
        host: '127.0.0.1',
        port: Number(new URL(url).port),
        ca: pki.bundle().toPem(),
        checkServerIdentity: () => undefined,
      });
      s.on('secureConnect', () => {
        s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      });
      s.on('data', () => resolve('answered'));
      s.on('error', (e) => resolve(`error ${e.message}`));
      s.on('close', () => resolve('closed'));
    });
    expect(noCert).not.toBe('answered');
  });

  it('rotates SVIDs on both sides during continuous traffic with zero failed requests', async () => {
    const serverSrc = new MemorySvidSource(pki.mint('payment-service', { ttlSeconds: 120 }), [pki.bundle()]);
    const { server, url } = await serve(serverSrc);
    closers.push(() => server.close());
    const clientSrc = new MemorySvidSource(pki.mint('api-gateway', { ttlSeconds: 120 }), [pki.bundle()]);
    const f = createMtlsFetch(clientSrc, {
      authorize: authorizeId(id('payment-service')),
      agent: { keepAliveTimeout: 50, connections: 4 },
    });
    closers.push(() => f.close());
    let ok = 0;
    let failed = 0;
    const seenServerCerts = new Set<string>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const res = await f(`${url}/x`);
          await res.text();
          if (res.status === 200) ok++;
          else failed++;
        } catch {
          failed++;
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 150));
      const next = pki.mint('payment-service', { ttlSeconds: 120 });
      seenServerCerts.add(next.certChainPem);
      serverSrc.set(next);
      clientSrc.set(pki.mint('api-gateway', { ttlSeconds: 120 }));
    }
    await new Promise((r) => setTimeout(r, 150));
    stop = true;
    await Promise.all(workers);
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(50);
    // New handshakes present the newest server SVID.
    const leaf = await new Promise<string>((resolve, reject) => {
      const svid = clientSrc.svid;
      const s = connect({
        host: '127.0.0.1',
        port: Number(new URL(url).port),
        cert: svid.certChainPem,
        key: svid.privateKeyPem,
        ca: pki.bundle().toPem(),
        checkServerIdentity: () => undefined,
      });
      s.on('secureConnect', () => {
        resolve(s.getPeerX509Certificate()?.toString() ?? '');
        s.destroy();
      });
      s.on('error', reject);
    });
    expect(serverSrc.svid.certChainPem).toContain(leaf.trim().split('\n')[1]);
  });
});
