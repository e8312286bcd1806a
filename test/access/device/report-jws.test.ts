/** Signing a posture report: a compact ES256 JWS that jose verifies with the device's public key. */
import { createPublicKey, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { derToJoseEs256, FileDeviceKey, signPostureReport } from '../../../src/access/device/index.js';
import type { PostureReport } from '../../../src/api/index.js';

const dir = mkdtempSync(join(tmpdir(), 'nt-device-jws-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sampleReport = (deviceId = 'laptop-alice'): PostureReport => ({
  device_id: deviceId,
  collected_at: new Date().toISOString(),
  os: { name: 'Debian GNU/Linux', version: '12', id: 'debian' },
  kernel: '6.1.0-18-amd64',
  updates: { pending_security: 0, pending_total: 3, source: 'apt' },
  disk: { root_encrypted: true, detail: 'nvme0n1 > nvme0n1p3 (crypt) > /' },
  firewall: { active: true, tool: 'nftables' },
  edr: { active: true, running: ['falcon-sensor'] },
  collector_version: 'nevertrust-linux/1',
});

describe('signPostureReport', () => {
  it('makes a compact JWS that jose verifies with the public key (ES256, typ), payload the report', async () => {
    const key = await FileDeviceKey.create(join(dir, 'k1.pem'));
    const report = sampleReport();
    const jws = await signPostureReport(report, key);
    expect(decodeProtectedHeader(jws)).toEqual({ alg: 'ES256', typ: 'nevertrust-posture+jws' });
    const { payload } = await compactVerify(jws, createPublicKey(key.publicKeyPem()), { algorithms: ['ES256'] });
    expect(JSON.parse(Buffer.from(payload).toString('utf8'))).toEqual(report);
  });

  it('many signatures all verify (r or s with leading zeros or a high bit included)', async () => {
    const key = await FileDeviceKey.create(join(dir, 'k2.pem'));
    const pub = createPublicKey(key.publicKeyPem());
    // 1 in 256 signatures has r or s shorter than 32 bytes; 600 makes missing that case unlikely.
    for (let i = 0; i < 600; i++) {
      const jws = await signPostureReport({ ...sampleReport(), kernel: `k${i}` }, key);
      await compactVerify(jws, pub, { algorithms: ['ES256'] });
    }
  });

  it('a tampered payload, or another key, fails verification', async () => {
    const key = await FileDeviceKey.create(join(dir, 'k3.pem'));
    const other = await FileDeviceKey.create(join(dir, 'k4.pem'));
    const jws = await signPostureReport(sampleReport(), key);
    const [h, , s] = jws.split('.');
    const forged = Buffer.from(JSON.stringify({ ...sampleReport(), device_id: 'someone-else' })).toString('base64url');
    await expect(
      compactVerify(`${h}.${forged}.${s}`, createPublicKey(key.publicKeyPem()), { algorithms: ['ES256'] }),
    ).rejects.toThrow(/signature verification failed/);
    await expect(compactVerify(jws, createPublicKey(other.publicKeyPem()), { algorithms: ['ES256'] })).rejects.toThrow(
      /signature verification failed/,
    );
  });

  it('refuses to sign a report that does not fit the schema', async () => {
    const key = await FileDeviceKey.create(join(dir, 'k5.pem'));
    await expect(signPostureReport({ ...sampleReport(), device_id: 'Not Valid' }, key)).rejects.toThrow();
  });
});

describe('derToJoseEs256', () => {
  const int = (b: number[]) => Buffer.from([0x02, b.length, ...b]);
  const seq = (...parts: Buffer[]) => {
    const body = Buffer.concat(parts);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  };

  it('pads short integers and strips the sign byte', () => {
    const r = [0x00, 0x80, ...Array<number>(31).fill(1)]; // 33 bytes: sign byte + high bit
    const s = [0x05]; // a tiny s
    const raw = derToJoseEs256(seq(int(r), int(s)));
    expect(raw.length).toBe(64);
    expect(raw.subarray(0, 32)).toEqual(Buffer.from(r.slice(1)));
    expect(raw.subarray(32)).toEqual(Buffer.concat([Buffer.alloc(31), Buffer.from([5])]));
  });

  it('matches node’s own ieee-p1363 encoding', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (let i = 0; i < 50; i++) {
      const der = sign('sha256', Buffer.from(`m${i}`), { key: privateKey, dsaEncoding: 'der' });
      const raw = derToJoseEs256(der);
      const { verify } = await import('node:crypto');
      expect(verify('sha256', Buffer.from(`m${i}`), { key: privateKey, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
    }
  });

  it.each([
    ['not a sequence', Buffer.from([0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
    ['trailing bytes', Buffer.concat([seq(int([1]), int([1])), Buffer.from([0])])],
    ['a negative integer', seq(int([0x80]), int([1]))],
    ['an integer too large', seq(int(Array<number>(33).fill(1)), int([1]))],
    ['truncated', seq(int([1]), int([1])).subarray(0, 6)],
    ['empty', Buffer.alloc(0)],
  ])('refuses %s', (_name, der) => {
    expect(() => derToJoseEs256(der)).toThrow();
  });
});
