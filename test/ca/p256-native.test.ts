/**
 * The native P-256 CSR check gives exactly the answers of the node:crypto path: valid requests pass,
 * and a tampered request body, a tampered signature, a signature by another key, a point off the
 * curve and malformed signatures are refused with the same error codes. Includes a request made by
 * openssl, so the check does not only agree with our own CSR builder.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { createCsr, generatePrivateKey, verifyCsr, verifyCsrAsync } from '../../src/ca/index.js';
import { nativeP256Verify } from '../../src/ca/p256-native.js';
import { tempDir } from '../support/tmp.js';

const outcome = (csr: Buffer | string): string => {
  try {
    const r = verifyCsr(csr);
    return `ok ${r.family} ${r.spki.toString('hex')}`;
  } catch (e) {
    return (e as { code?: string }).code ?? 'throw';
  }
};
const bothWays = (csr: Buffer | string): [string, string] => {
  const native = outcome(csr);
  process.env.NEVERTRUST_NATIVE_P256 = '0';
  try {
    return [native, outcome(csr)];
  } finally {
    delete process.env.NEVERTRUST_NATIVE_P256;
  }
};

/** Offsets inside a DER CSR: the point in the SPKI, and the signature bytes at the end. */
function pointOffset(csr: Buffer): number {
  const i = csr.indexOf(Buffer.from('034200', 'hex'));
  return i + 3; // 0x04 || X || Y follows
}

afterEach(() => {
  delete process.env.NEVERTRUST_NATIVE_P256;
});

describe('native P-256 CSR check', () => {
  it('is built here (install script) and used for P-256 requests', () => {
    expect(nativeP256Verify()).toBeTypeOf('function');
    process.env.NEVERTRUST_NATIVE_P256 = '0';
    expect(nativeP256Verify()).toBeUndefined();
  });

  it('agrees with node:crypto on valid, tampered, foreign-key and off-curve requests', () => {
    const keys = Array.from({ length: 8 }, () => generatePrivateKey('ec-p256'));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }),
        fc.constantFrom('valid', 'body', 'signature', 'foreign', 'off-curve', 'truncated-sig'),
        fc.nat(),
        (k, kind, n) => {
          const csr = Buffer.from(createCsr(keys[k] as KeyObject));
          const flip = (i: number) => csr.writeUInt8((csr[i] as number) ^ 0x01, i);
          if (kind === 'body') flip(20 + (n % 40));
          if (kind === 'signature') flip(csr.length - 1 - (n % 8));
          if (kind === 'foreign') {
            const other = createCsr(keys[(k + 1) % 8] as KeyObject);
            // this request's body and algorithm, the other key's signature
            other.copy(csr, csr.length - 72, other.length - 72);
          }
          if (kind === 'off-curve') flip(pointOffset(csr) + 64);
          if (kind === 'truncated-sig') csr[csr.length - 70] = 0x00;
          const [native, node] = bothWays(csr);
          expect(native).toBe(node);
          if (kind === 'valid') expect(native).toMatch(/^ok ec /);
          else expect(native).not.toMatch(/^ok/);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('accepts an openssl-made P-256 request and refuses it once its body is changed', async () => {
    const dir = tempDir();
    execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'k.pem')]);
    execFileSync('openssl', [
      'req',
      '-new',
      '-key',
      join(dir, 'k.pem'),
      '-subj',
      '/CN=ignored',
      '-out',
      join(dir, 'r.pem'),
    ]);
    const pem = readFileSync(join(dir, 'r.pem'), 'utf8');
    expect(bothWays(pem)[0]).toMatch(/^ok ec /);
    expect((await verifyCsrAsync(pem)).family).toBe('ec');
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('ignored'));
    der.writeUInt8((der[at] as number) ^ 0x20, at);
    const [native, node] = bothWays(der);
    expect(native).toBe('ERR_CSR_BAD_SIGNATURE');
    expect(node).toBe(native);
  });

  it('leaves other keys to node:crypto (P-384, RSA)', () => {
    const p384 = createCsr(generatePrivateKey('ec-p384'));
    const rsa = createCsr(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    for (const csr of [p384, rsa]) {
      const [native, node] = bothWays(csr);
      expect(native).toMatch(/^ok/);
      expect(native).toBe(node);
    }
  });
});
