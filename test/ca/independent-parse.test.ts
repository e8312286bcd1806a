import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CertificateAuthority,
  CsrError,
  createCsr,
  generatePrivateKey,
  Kek,
  MemoryCaStateStore,
  verifyCsr,
} from '../../src/ca/index.js';

describe('leaf profile, read back by @peculiar/x509 (an independent parser)', () => {
  it('has exactly the SPIFFE leaf extensions with the right criticality', async () => {
    const ca = await CertificateAuthority.open({
      trustDomain: 'example.org',
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    const svid = ca.signX509SvidFromCsr({
      csr: createCsr(generatePrivateKey()),
      spiffeId: 'spiffe://example.org/x',
      dnsNames: ['x.internal'],
    });
    const cert = new x509.X509Certificate(svid.chain[0] as Buffer);
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.critical).toBe(true);
    expect(bc?.ca).toBe(false);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    expect(ku?.critical).toBe(true);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    expect(eku?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.toJSON()).toEqual([
      { type: 'url', value: 'spiffe://example.org/x' },
      { type: 'dns', value: 'x.internal' },
    ]);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)).toBeTruthy();
    const caCert = new x509.X509Certificate(ca.bundle().x509Authorities[0] as Buffer);
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
    expect(aki?.keyId).toBe(caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    expect(await cert.verify({ publicKey: caCert.publicKey, signatureOnly: true })).toBe(true);
    expect(cert.serialNumber.length).toBeGreaterThanOrEqual(30);
  });

  it('verifyCsr throws only CsrError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        try {
          verifyCsr(Buffer.from(b));
        } catch (e) {
          if (!(e instanceof CsrError)) throw e;
        }
      }),
      { numRuns: 500 },
    );
  });
});
