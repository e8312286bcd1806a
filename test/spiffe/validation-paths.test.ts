/**
 * Every X.509-SVID validation path of the product ends in verifyX509Svid: the mTLS helpers
 * (verifyPeer: mTLS servers, middleware, sidecar), the server's peer check (verifyPeerSvid: agent
 * port, audit ingestion) and forwarded certificates (verifyForwardedCertificate: XFCC and
 * x-client-cert in middleware and sidecar). Over real TLS, each refuses a leaf whose SPIFFE ID has
 * no path (X509-SVID §3.1/§5.2) and one spelled `SPIFFE://`, and accepts a good leaf.
 */
import { readFileSync } from 'node:fs';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyForwardedCertificate } from '../../src/pep/identity.js';
import { authorizeAny, PeerAuthorizationError, verifyPeer } from '../../src/pep/mtls/index.js';
import { PeerSvidError, verifyPeerSvid } from '../../src/server/peer-svid.js';
import { TrustBundle } from '../../src/spiffe/index.js';
import { CA_EXTS, LEAF_EXTS, OpenSslPki } from './openssl.js';

let pki: OpenSslPki;
let bundle: TrustBundle;
const pem: Record<string, string> = {};

beforeAll(() => {
  pki = new OpenSslPki();
  pem.root = pki.selfSigned('root', '/CN=example.org root', CA_EXTS('example.org'), 3);
  bundle = TrustBundle.fromPem('example.org', pem.root);
  for (const [name, id] of [
    ['server', 'spiffe://example.org/ns/x/sa/server'],
    ['good', 'spiffe://example.org/ns/x/sa/client'],
    ['tdOnly', 'spiffe://example.org'],
    ['upper', 'SPIFFE://example.org/ns/x/sa/client'],
  ] as const) {
    pem[name] = pki.issue(name, 'root', { subj: `/CN=${name}`, exts: LEAF_EXTS(id) });
  }
}, 60_000);
afterAll(() => pki.cleanup());

/** The server side of a real mTLS handshake in which the client presents `name`'s certificate. */
async function serverSocketFor(name: string): Promise<{ sock: TLSSocket; close: () => void }> {
  const server = createServer({
    cert: pem.server,
    key: readFileSync(pki.path('server.key')),
    requestCert: true,
    rejectUnauthorized: false, // our validator decides, as in the product
  });
  const accepted = new Promise<TLSSocket>((r) => server.once('secureConnection', r));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = connect({
    host: '127.0.0.1',
    port,
    cert: pem[name],
    key: readFileSync(pki.path(`${name}.key`)),
    rejectUnauthorized: false,
  });
  client.on('error', () => {});
  const sock = await accepted;
  return {
    sock,
    close: () => {
      client.destroy();
      sock.destroy();
      server.close();
    },
  };
}

describe('every validation path refuses a leaf SPIFFE ID without a path, or spelled SPIFFE://', () => {
  it.each([
    ['tdOnly', 'ERR_X509SVID_LEAF_ID_WITHOUT_PATH'],
    ['upper', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
  ])('%s: verifyPeer, verifyPeerSvid and verifyForwardedCertificate refuse it (%s)', async (name, code) => {
    const { sock, close } = await serverSocketFor(name);
    try {
      let peerErr: unknown;
      try {
        verifyPeer(sock, bundle, authorizeAny());
      } catch (e) {
        peerErr = e;
      }
      expect(peerErr).toBeInstanceOf(PeerAuthorizationError);
      expect((peerErr as Error).message).toContain(code);
      expect(() => verifyPeerSvid(sock, bundle)).toThrow(PeerSvidError);
    } finally {
      close();
    }
    expect(verifyForwardedCertificate(encodeURIComponent(pem[name] as string), bundle, 'x-client-cert')).toEqual({
      kind: 'invalid',
      reason: `x509svid_invalid: ${code}`,
    });
  });

  it('a good leaf passes every path', async () => {
    const { sock, close } = await serverSocketFor('good');
    try {
      expect(verifyPeer(sock, bundle, authorizeAny()).spiffeId.toString()).toBe('spiffe://example.org/ns/x/sa/client');
      expect(verifyPeerSvid(sock, bundle).spiffeId.toString()).toBe('spiffe://example.org/ns/x/sa/client');
    } finally {
      close();
    }
    expect(verifyForwardedCertificate(pem.good as string, bundle, 'x-client-cert')).toMatchObject({
      kind: 'ok',
      spiffeId: 'spiffe://example.org/ns/x/sa/client',
    });
  });
});
