/** The device key file: mode 0600, refused when others can read it, signs, and makes a CSR the CA accepts. */
import { createPublicKey, verify } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { afterAll, describe, expect, it } from 'vitest';
import { createDeviceCsr, DeviceError, deviceSpiffeId, FileDeviceKey } from '../../../src/access/device/index.js';
import { verifyCsr } from '../../../src/ca/index.js';
import { parseSpiffeId, parseTrustDomain } from '../../../src/spiffe/index.js';

const dir = mkdtempSync(join(tmpdir(), 'nt-device-key-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const td = parseTrustDomain('example.org');

describe('FileDeviceKey', () => {
  it('creates a P-256 key file of mode 0600 (in a new 0700 directory) and loads it back', async () => {
    const path = join(dir, 'new', 'key.pem');
    const key = await FileDeviceKey.create(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'new')).mode & 0o777).toBe(0o700);
    const again = await FileDeviceKey.load(path);
    expect(again.publicKeyPem()).toBe(key.publicKeyPem());
    expect(createPublicKey(key.publicKeyPem()).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('refuses to overwrite an existing key', async () => {
    const path = join(dir, 'exists.pem');
    await FileDeviceKey.create(path);
    await expect(FileDeviceKey.create(path)).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_EXISTS' });
  });

  it.each([0o644, 0o640, 0o604, 0o660])(
    'refuses a key file readable or writable by others (mode %#o), saying how to fix it',
    async (mode) => {
      const path = join(dir, `loose-${mode.toString(8)}.pem`);
      await FileDeviceKey.create(path);
      chmodSync(path, mode);
      const err = await FileDeviceKey.load(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceError);
      expect(err).toMatchObject({ code: 'ERR_DEVICE_KEY_INSECURE' });
      expect((err as Error).message).toContain(`mode 0${mode.toString(8)}`);
      expect((err as Error).message).toContain('chmod 600');
      // loadOrCreate must not silently replace it either
      await expect(FileDeviceKey.loadOrCreate(path)).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_INSECURE' });
    },
  );

  it('refuses a symlink, a missing file, a non-key and a key of another curve', async () => {
    const real = join(dir, 'real.pem');
    await FileDeviceKey.create(real);
    const link = join(dir, 'link.pem');
    symlinkSync(real, link);
    await expect(FileDeviceKey.load(link)).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_INSECURE' });
    await expect(FileDeviceKey.load(join(dir, 'none.pem'))).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_MISSING' });
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a key', { mode: 0o600 });
    await expect(FileDeviceKey.load(junk)).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_INVALID' });
    const { generateKeyPairSync } = await import('node:crypto');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
    });
    const other = join(dir, 'p384.pem');
    writeFileSync(other, p384, { mode: 0o600 });
    await expect(FileDeviceKey.load(other)).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY_INVALID' });
  });

  it('loadOrCreate creates once, then loads the same key', async () => {
    const path = join(dir, 'loc.pem');
    const a = await FileDeviceKey.loadOrCreate(path);
    const b = await FileDeviceKey.loadOrCreate(path);
    expect(b.publicKeyPem()).toBe(a.publicKeyPem());
  });

  it('signs ES256 in DER; node:crypto verifies it, and not for other data', async () => {
    const key = await FileDeviceKey.create(join(dir, 'sign.pem'));
    const data = Buffer.from('posture report');
    const sig = await key.sign(data);
    expect(sig[0]).toBe(0x30); // DER SEQUENCE { r, s }
    const pub = createPublicKey(key.publicKeyPem());
    expect(verify('sha256', data, { key: pub, dsaEncoding: 'der' }, sig)).toBe(true);
    expect(verify('sha256', Buffer.from('posture report!'), { key: pub, dsaEncoding: 'der' }, sig)).toBe(false);
  });
});

describe('device identity and CSR', () => {
  it('the device SPIFFE ID is spiffe://<td>/device/<id>, checked by the one parser', () => {
    expect(deviceSpiffeId(td, 'laptop-alice').toString()).toBe('spiffe://example.org/device/laptop-alice');
    for (const bad of ['', 'Laptop', '../x', 'a/b', 'x'.repeat(65), 'a%2f']) {
      expect(() => deviceSpiffeId(td, bad), bad).toThrow(DeviceError);
    }
  });

  it('the CSR parses with @peculiar/x509, carries the SPIFFE ID as its URI SAN, and the CA verifies it', async () => {
    const key = await FileDeviceKey.create(join(dir, 'csr.pem'));
    const id = deviceSpiffeId(td, 'laptop-alice');
    const der = await createDeviceCsr(key, id);
    const csr = new x509.Pkcs10CertificateRequest(der);
    expect(await csr.verify()).toBe(true);
    const san = csr.extensions.find((e) => e.type === '2.5.29.17') as x509.SubjectAlternativeNameExtension | undefined;
    expect(san?.names.toJSON()).toEqual([{ type: 'url', value: 'spiffe://example.org/device/laptop-alice' }]);
    const spki = Buffer.from(createPublicKey(key.publicKeyPem()).export({ format: 'der', type: 'spki' }));
    expect(Buffer.from(csr.publicKey.rawData).equals(spki)).toBe(true);
    // The CA's own verifier (proof of possession) accepts it.
    expect(verifyCsr(der).spki.equals(spki)).toBe(true);
  });

  it('refuses to ask for a SPIFFE ID that is not a device one', async () => {
    const key = await FileDeviceKey.create(join(dir, 'csr2.pem'));
    await expect(createDeviceCsr(key, parseSpiffeId('spiffe://example.org/ns/prod/sa/api'))).rejects.toMatchObject({
      code: 'ERR_DEVICE_ID_INVALID',
    });
  });
});
