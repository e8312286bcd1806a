/** PKCS#12 export: OpenSSL reads back the same key and chain with the password (and refuses a wrong one); Node's TLS loads it. */
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportPkcs12 } from '../../../src/access/device/p12.js';
import { certificatesFromPem } from '../../../src/spiffe/index.js';

const OPENSSL = '/usr/bin/openssl';
const dir = mkdtempSync(join(tmpdir(), 'nt-device-p12-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const f = (n: string) => join(dir, n);
const ossl = (...args: string[]) => execFileSync(OPENSSL, args, { stdio: ['ignore', 'pipe', 'pipe'] });

let keyPem: string;
let chainPem: string;
beforeAll(() => {
  // A real two-level chain made by OpenSSL: a CA, and a device leaf with its SPIFFE ID.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-subj', '/CN=test CA', '-days', '1');
  ossl('req', '-new', ...ec, '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', '/');
  writeFileSync(f('ext'), 'subjectAltName=URI:spiffe://example.org/device/laptop-alice\n');
  ossl(
    'x509',
    '-req',
    '-in',
    f('leaf.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-out',
    f('leaf.pem'),
    '-days',
    '1',
    '-extfile',
    f('ext'),
  );
  keyPem = readFileSync(f('leaf.key'), 'utf8');
  chainPem = readFileSync(f('leaf.pem'), 'utf8') + readFileSync(f('ca.pem'), 'utf8');
});

const spki = (pem: string) => createPublicKey(createPrivateKey(pem)).export({ format: 'der', type: 'spki' });

describe('exportPkcs12', () => {
  it('OpenSSL reads back the same key and chain with the password (non-ASCII too), PBES2/AES-256/SHA-256', async () => {
    const password = 'corr€ct horse';
    writeFileSync(f('a.p12'), await exportPkcs12(keyPem, chainPem, { password, iterations: 2048 }));
    const out = execFileSync(OPENSSL, ['pkcs12', '-in', f('a.p12'), '-passin', `pass:${password}`, '-nodes', '-info'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const info = spawnSync(OPENSSL, ['pkcs12', '-in', f('a.p12'), '-passin', `pass:${password}`, '-nodes', '-info'], {
      encoding: 'utf8',
    }).stderr;
    expect(info).toContain('MAC: sha256');
    expect(info).toMatch(/Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
    expect(info).toMatch(/PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC/);
    expect(out).toContain('friendlyName: spiffe://example.org/device/laptop-alice');
    expect(certificatesFromPem(out)).toEqual(certificatesFromPem(chainPem));
    const keyOut = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(out)?.[0] as string;
    expect(spki(keyOut).equals(spki(keyPem))).toBe(true);
    expect(createPrivateKey(keyOut).export({ format: 'der', type: 'pkcs8' })).toEqual(
      createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' }),
    );
  });

  it('a wrong password fails in OpenSSL and in Node', async () => {
    const p12 = await exportPkcs12(keyPem, chainPem, { password: 'right one', iterations: 2048 });
    writeFileSync(f('b.p12'), p12);
    const r = spawnSync(OPENSSL, ['pkcs12', '-in', f('b.p12'), '-passin', 'pass:wrong one', '-nodes'], {
      encoding: 'utf8',
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/invalid password|mac verify/i);
    expect(() => createSecureContext({ pfx: p12, passphrase: 'wrong one' })).toThrow();
  });

  it("Node's TLS accepts it as a client credential (pfx + passphrase), with the leaf as its certificate", async () => {
    const p12 = await exportPkcs12(keyPem, chainPem, { password: 'pw', iterations: 2048 });
    const ctx = createSecureContext({ pfx: p12, passphrase: 'pw' });
    const cert = ctx.context.getCertificate() as Buffer | null;
    expect(cert && new X509Certificate(cert).fingerprint256).toBe(new X509Certificate(chainPem).fingerprint256);
  });

  it('refuses an empty password and an empty chain', async () => {
    await expect(exportPkcs12(keyPem, chainPem, { password: '' })).rejects.toThrow(/password/);
    await expect(exportPkcs12(keyPem, '', { password: 'x' })).rejects.toThrow(/no certificate/);
  });
});
