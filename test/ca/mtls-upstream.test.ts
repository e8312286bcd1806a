import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CertificateAuthority,
  certificatesToPem,
  createCsr,
  generatePrivateKey,
  Kek,
  loadUpstreamAuthority,
  MemoryCaStateStore,
} from '../../src/ca/index.js';
import { validateX509Svid, verifyX509Svid } from '../../src/spiffe/index.js';
import { CA_EXTS, OpenSslPki } from '../spiffe/openssl.js';

const TD = 'example.org';
let pki: OpenSslPki;
let dir: string;

beforeAll(() => {
  pki = new OpenSslPki();
  dir = mkdtempSync(join(tmpdir(), 'nt-mtls-'));
});
afterAll(() => {
  pki?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('mTLS with minted SVIDs', () => {
  it('two Node TLS endpoints complete a handshake and read each other’s SPIFFE ID', async () => {
    const ca = await CertificateAuthority.open({
      trustDomain: TD,
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    const serverKey = generatePrivateKey();
    const clientKey = generatePrivateKey();
    const server = ca.signX509SvidFromCsr({
      csr: createCsr(serverKey),
      spiffeId: 'spiffe://example.org/ns/prod/sa/payments',
    });
    const client = ca.signX509SvidFromCsr({
      csr: createCsr(clientKey),
      spiffeId: 'spiffe://example.org/ns/prod/sa/api',
    });
    const bundle = ca.bundle();
    const caPem = bundle.toPem();

    const seenByServer = new Promise<string>((resolve, reject) => {
      const srv = tls.createServer(
        {
          key: serverKey.export({ format: 'pem', type: 'pkcs8' }),
          cert: certificatesToPem(server.chain),
          ca: caPem,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.3',
        },
        (sock) => {
          try {
            const peer = sock.getPeerCertificate(true);
            // independent of the TLS stack's own check: validate the forwarded chain ourselves
            resolve(validateX509Svid([peer.raw], bundle).toString());
          } catch (e) {
            reject(e);
          }
          sock.end('hello');
          srv.close();
        },
      );
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as AddressInfo;
        const c = tls.connect({
          host: '127.0.0.1',
          port,
          key: clientKey.export({ format: 'pem', type: 'pkcs8' }),
          cert: certificatesToPem(client.chain),
          ca: caPem,
          // SPIFFE authenticates by URI SAN, not hostname
          checkServerIdentity: () => undefined,
        });
        c.on('secureConnect', () => {
          expect(c.authorized).toBe(true);
          const peer = c.getPeerCertificate();
          expect(validateX509Svid([peer.raw], bundle).toString()).toBe('spiffe://example.org/ns/prod/sa/payments');
          expect(peer.subjectaltname).toContain('URI:spiffe://example.org/ns/prod/sa/payments');
        });
        c.on('data', () => c.end());
        c.on('error', reject);
      });
    });
    expect(await seenByServer).toBe('spiffe://example.org/ns/prod/sa/api');
  });
});

describe('upstream CA', () => {
  it('issues an intermediate under a root given as files; the chain validates', async () => {
    pki.selfSigned(
      'uproot',
      '/O=Corp/CN=Corp Root',
      ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash'],
      30,
    );
    const upstream = await loadUpstreamAuthority(pki.path('uproot.pem'), pki.path('uproot.key'));
    const ca = await CertificateAuthority.open({
      trustDomain: TD,
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
      upstream,
    });
    const svid = ca.mintX509Svid({ spiffeId: 'spiffe://example.org/api', dnsNames: ['api.internal'] });
    expect(svid.chain).toHaveLength(2);
    const bundle = ca.bundle();
    expect(bundle.x509Authorities).toHaveLength(1);
    expect(bundle.x509Authorities[0]?.equals(new X509Certificate(upstream.certificatePem).raw)).toBe(true);
    const v = verifyX509Svid(svid.chain, bundle);
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/api');
    expect(v.verifiedChain).toHaveLength(3);
    // the intermediate's SPIFFE ID has no path and it is a proper CA
    const inter = new X509Certificate(svid.chain[1] as Buffer);
    expect(inter.ca).toBe(true);
    expect(inter.subjectAltName).toBe('URI:spiffe://example.org');
    expect(inter.checkIssued(new X509Certificate(upstream.certificatePem))).toBe(true);
    expect(new X509Certificate(svid.chain[0] as Buffer).checkIssued(inter)).toBe(true);
    // openssl agrees: root as CAfile, intermediate untrusted
    writeFileSync(join(dir, 'leaf.pem'), certificatesToPem([svid.chain[0] as Buffer]));
    writeFileSync(join(dir, 'inter.pem'), certificatesToPem([svid.chain[1] as Buffer]));
    const out = execFileSync(
      'openssl',
      ['verify', '-CAfile', pki.path('uproot.pem'), '-untrusted', 'inter.pem', 'leaf.pem'],
      { cwd: dir },
    ).toString();
    expect(out.trim()).toBe('leaf.pem: OK');
    // rotation under the upstream keeps the root-only bundle but changes the JWT authorities
    const seq = ca.sequence;
    await ca.rotate();
    expect(ca.sequence).toBeGreaterThan(seq);
    const next = ca.mintX509Svid({ spiffeId: 'spiffe://example.org/api' });
    expect(validateX509Svid(next.chain, ca.bundle()).toString()).toBe('spiffe://example.org/api');
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe('spiffe://example.org/api');
  });

  it('refuses an upstream that is not a CA or whose key does not match', async () => {
    pki.selfSigned('notca', '/CN=not a ca', ['basicConstraints=critical,CA:FALSE']);
    const notCa = await loadUpstreamAuthority(pki.path('notca.pem'), pki.path('notca.key'));
    const opts = { trustDomain: TD, store: new MemoryCaStateStore(), kek: Kek.fromBytes(randomBytes(32)) };
    await expect(CertificateAuthority.open({ ...opts, upstream: notCa })).rejects.toMatchObject({
      code: 'ERR_CA_UPSTREAM_INVALID',
    });
    pki.selfSigned('other', '/CN=other', CA_EXTS(TD));
    // a CA certificate with somebody else's key
    const mismatched = await loadUpstreamAuthority(pki.path('other.pem'), pki.path('notca.key'));
    await expect(CertificateAuthority.open({ ...opts, upstream: mismatched })).rejects.toMatchObject({
      code: 'ERR_CA_UPSTREAM_INVALID',
    });
  });
});
