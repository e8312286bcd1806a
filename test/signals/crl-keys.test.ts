/**
 * CRLs from every CA key type nevertrust supports verify with openssl, and list each serial exactly
 * as certificates carry it (leading zeros, high bit set, any case), so `openssl verify -crl_check`
 * matches the revoked certificate and no other.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CertificateAuthority, certificatesToPem, Kek, type KeyType, MemoryCaStateStore } from '../../src/ca/index.js';
import { tempDir } from '../support/tmp.js';

describe('CRL signing', { timeout: 60_000 }, () => {
  for (const keyType of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
    it(`${keyType}: openssl verifies it and revokes exactly the listed SVID`, async () => {
      const dir = tempDir();
      const ca = await CertificateAuthority.open({
        trustDomain: 'example.org',
        store: new MemoryCaStateStore(),
        kek: Kek.fromBytes(randomBytes(32)),
        keyType,
      });
      const revoked = ca.mintX509Svid({ spiffeId: 'spiffe://example.org/a' });
      const kept = ca.mintX509Svid({ spiffeId: 'spiffe://example.org/b' });
      // As an admin might type it: upper case, with extra leading zeros.
      const typed = `000${new X509Certificate(revoked.chain[0] as Buffer).serialNumber.toUpperCase()}`;
      const crls = await ca.signCrls({
        entries: [
          { serial: typed, revokedAt: new Date() },
          { serial: 'ff', revokedAt: new Date() }, // high bit set: a positive INTEGER needs a 00 octet
        ],
        crlNumber: 2n ** 100n,
        validityMs: 3_600_000,
      });
      expect(crls).toHaveLength(1);
      const bundle = join(dir, 'bundle.pem');
      writeFileSync(bundle, ca.bundle().toPem());
      const crlPem = join(dir, 'crl.pem');
      writeFileSync(join(dir, 'crl.der'), crls[0]?.der as Buffer);
      execFileSync('openssl', ['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-out', crlPem]);
      const check = spawnSync('openssl', ['crl', '-in', crlPem, '-CAfile', bundle, '-noout', '-text']);
      expect(check.stderr.toString()).toContain('verify OK');
      expect(check.stdout.toString()).toMatch(/Serial Number: FF\b/i);
      const verify = (svid: Buffer) => {
        const f = join(dir, `svid-${Math.random()}.pem`);
        writeFileSync(f, certificatesToPem([svid]));
        const r = spawnSync('openssl', ['verify', '-crl_check', '-CRLfile', crlPem, '-CAfile', bundle, f]);
        return `${r.stdout}${r.stderr}`;
      };
      expect(verify(revoked.chain[0] as Buffer)).toContain('certificate revoked');
      expect(verify(kept.chain[0] as Buffer)).toContain(': OK');
    });
  }

  it('refuses a CRL number that is negative or over 20 octets', async () => {
    const ca = await CertificateAuthority.open({
      trustDomain: 'example.org',
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    await expect(ca.signCrls({ entries: [], crlNumber: -1n, validityMs: 1000 })).rejects.toThrow(RangeError);
    await expect(ca.signCrls({ entries: [], crlNumber: 2n ** 160n, validityMs: 1000 })).rejects.toThrow(RangeError);
  });
});
