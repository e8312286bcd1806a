/** csrRequestedUris: the URI SANs a PKCS#10 request asks for, read from its extensionRequest. */
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import {
  createCsr,
  createCsrWithSigner,
  CsrError,
  csrRequestedUris,
  csrToPem,
  generatePrivateKey,
} from '../../src/ca/index.js';
import { createPublicKey, sign } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

describe('csrRequestedUris', () => {
  it('reads the URI SAN of our own request builder, and none from a request without attributes', async () => {
    const key = generatePrivateKey('ec-p256');
    const der = await createCsrWithSigner(createPublicKey(key), async (cri) => sign('sha256', cri, key), {
      uriSan: 'spiffe://example.org/device/d1',
    });
    expect(csrRequestedUris(der)).toEqual(['spiffe://example.org/device/d1']);
    expect(csrRequestedUris(csrToPem(der))).toEqual(['spiffe://example.org/device/d1']);
    expect(csrRequestedUris(createCsr(key))).toEqual([]);
  });

  it('lists every URI of a request made by another library, ignoring DNS names and other extensions', async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=device',
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'laptop.example.org' },
          { type: 'url', value: 'spiffe://example.org/device/a' },
          { type: 'url', value: 'spiffe://example.org/device/b' },
        ]),
      ],
    });
    expect(csrRequestedUris(csr.toString('pem'))).toEqual([
      'spiffe://example.org/device/a',
      'spiffe://example.org/device/b',
    ]);
  });

  it('refuses a request that is not PKCS#10', () => {
    expect(() => csrRequestedUris(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))).toThrow(CsrError);
    expect(() => csrRequestedUris('not pem')).toThrow(CsrError);
  });
});
