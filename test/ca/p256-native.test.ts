/**
 * The native P-256 CSR check gives exactly the answers of the node:crypto path: valid requests pass,
 * and a tampered request body, a tampered signature, a signature by another key, a point off the
 * curve and malformed signatures are refused with the same error codes. Includes a request made by
 * openssl, so the check does not only agree with our own CSR builder.
 *
 * The native CA signer makes signatures that node:crypto and openssl accept, takes only P-256
 * private keys, and refuses any handle it did not make.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, verify } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { createCsr, generatePrivateKey, verifyCsr, verifyCsrAsync } from '../../src/ca/index.js';
import { nativeP256Signer, nativeP256Verify } from '../../src/ca/p256-native.js';
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
          // a zeroed byte inside the signature (one that was zero already would change nothing)
          if (kind === 'truncated-sig') csr[csr.length - 70] = csr[csr.length - 70] === 0 ? 0xff : 0x00;
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

describe('native P-256 CA signer', () => {
  it('makes ECDSA P-256 / SHA-256 signatures that node:crypto verifies, and no two alike', () => {
    const key = generatePrivateKey('ec-p256');
    const other = generatePrivateKey('ec-p256');
    const sign = nativeP256Signer(key);
    expect(sign).toBeTypeOf('function');
    const seen = new Set<string>();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const message = Buffer.from(bytes);
        const sig = (sign as (m: Uint8Array) => Buffer)(message);
        expect(verify('sha256', message, key, sig)).toBe(true);
        expect(verify('sha256', message, other, sig)).toBe(false);
        expect(verify('sha256', Buffer.concat([message, Buffer.from([0])]), key, sig)).toBe(false);
        // a fresh nonce every time: a repeated one would leak the CA key
        expect(seen.has(sig.toString('hex'))).toBe(false);
        seen.add(sig.toString('hex'));
      }),
      { numRuns: 300 },
    );
  });

  it('signs what openssl dgst -verify accepts', () => {
    const dir = tempDir();
    const key = generatePrivateKey('ec-p256');
    const message = Buffer.from('tbsCertificate stand-in');
    writeFileSync(join(dir, 'm'), message);
    writeFileSync(join(dir, 'sig'), (nativeP256Signer(key) as (m: Uint8Array) => Buffer)(message));
    writeFileSync(join(dir, 'pub.pem'), key.export({ format: 'pem', type: 'pkcs8' }));
    const out = execFileSync('openssl', [
      'dgst',
      '-sha256',
      '-prverify',
      join(dir, 'pub.pem'),
      '-signature',
      join(dir, 'sig'),
      join(dir, 'm'),
    ]).toString();
    expect(out).toContain('Verified OK');
  });

  it('takes only P-256 private keys, and is off with NEVERTRUST_NATIVE_P256=0', () => {
    expect(nativeP256Signer(generatePrivateKey('ec-p384'))).toBeUndefined();
    expect(nativeP256Signer(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)).toBeUndefined();
    expect(nativeP256Signer(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).toBeUndefined();
    process.env.NEVERTRUST_NATIVE_P256 = '0';
    expect(nativeP256Signer(generatePrivateKey('ec-p256'))).toBeUndefined();
  });

  it('refuses handles it did not make and keys that are not P-256 (the addon itself)', () => {
    const addon = createRequire(import.meta.url)('../../native/p256/build/Release/p256.node') as {
      signer: (pkcs8: Uint8Array) => object;
      sign: (handle: unknown, message: Uint8Array) => Buffer;
    };
    const m = Buffer.from('x');
    for (const handle of [{}, null, 1, 'key', m]) {
      expect(() => addon.sign(handle, m)).toThrow(/handle from signer/);
    }
    const p384 = generatePrivateKey('ec-p384').export({ format: 'der', type: 'pkcs8' });
    expect(() => addon.signer(p384)).toThrow(/not a P-256 private key/);
    expect(() => addon.signer(Buffer.from('not DER'))).toThrow(/not a P-256 private key/);
    expect(() => addon.signer(Buffer.alloc(8192))).toThrow(/DER PrivateKeyInfo/);
    const handle = addon.signer(generatePrivateKey('ec-p256').export({ format: 'der', type: 'pkcs8' }));
    expect(() => addon.sign(handle, 'text' as unknown as Uint8Array)).toThrow(/Uint8Array/);
  });
});
