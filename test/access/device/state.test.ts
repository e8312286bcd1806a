/** The device's state directory: 0700/0600, atomic writes, device.json checked, not-enrolled named. */
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEVICE_DIR_ENV, DeviceState, resolveDeviceDir } from '../../../src/access/device/index.js';

const root = mkdtempSync(join(tmpdir(), 'nt-device-state-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const info = {
  server: 'https://127.0.0.1:8081',
  device_id: 'laptop-alice',
  spiffe_id: 'spiffe://example.org/device/laptop-alice',
  owner: 'alice',
  trust_domain: 'example.org',
};

describe('DeviceState', () => {
  it('resolves --dir over the environment over ~/.config/nevertrust/device', () => {
    const saved = process.env[DEVICE_DIR_ENV];
    try {
      process.env[DEVICE_DIR_ENV] = '/tmp/from-env';
      expect(resolveDeviceDir('/tmp/flag')).toBe('/tmp/flag');
      expect(resolveDeviceDir()).toBe('/tmp/from-env');
      delete process.env[DEVICE_DIR_ENV];
      expect(resolveDeviceDir()).toMatch(/\/\.config\/nevertrust\/device$/);
    } finally {
      if (saved === undefined) delete process.env[DEVICE_DIR_ENV];
      else process.env[DEVICE_DIR_ENV] = saved;
    }
  });

  it('saves cert, bundle and device.json with mode 0600 in a 0700 directory, no temp files left', async () => {
    const s = new DeviceState(join(root, 'a', 'device'));
    expect(await s.enrolled()).toBe(false);
    await s.createKey();
    await s.save({ certChain: 'CHAIN', bundle: 'BUNDLE', info });
    expect(statSync(s.dir).mode & 0o777).toBe(0o700);
    for (const f of ['key.pem', 'cert.pem', 'bundle.pem', 'device.json'])
      expect(statSync(join(s.dir, f)).mode & 0o777).toBe(0o600);
    expect(readdirSync(s.dir).sort()).toEqual(['bundle.pem', 'cert.pem', 'device.json', 'key.pem']);
    expect(await s.enrolled()).toBe(true);
    expect(await s.readInfo()).toEqual(info);
    expect(await s.readCertChain()).toBe('CHAIN');
    // Renewal replaces the certificate whole, leaving device.json as it was.
    await s.save({ certChain: 'CHAIN2', bundle: 'BUNDLE2' });
    expect(await s.readCertChain()).toBe('CHAIN2');
    expect(await s.readInfo()).toEqual(info);
  });

  it('tightens a directory others could read', async () => {
    const s = new DeviceState(join(root, 'loose'));
    await s.ensureDir();
    chmodSync(s.dir, 0o755);
    await s.ensureDir();
    expect(statSync(s.dir).mode & 0o777).toBe(0o700);
  });

  it('says how to enroll when nothing is there', async () => {
    const s = new DeviceState(join(root, 'empty'));
    await expect(s.readInfo()).rejects.toMatchObject({
      code: 'ERR_DEVICE_NOT_ENROLLED',
      message: expect.stringContaining('nevertrust device enroll'),
    });
  });

  it.each([
    ['not JSON', '{', /not JSON/],
    ['a bad device id', JSON.stringify({ ...info, device_id: 'Bad Id' }), /device_id/],
    ['an http server', JSON.stringify({ ...info, server: 'http://127.0.0.1:8081' }), /server/],
    ['an unknown field', JSON.stringify({ ...info, extra: 1 }), /extra/],
  ])('refuses a device.json with %s, naming the file and field', async (_n, text, re) => {
    const s = new DeviceState(join(root, `bad-${_n.replace(/\W/g, '')}`));
    await s.ensureDir();
    writeFileSync(s.infoPath, text, { mode: 0o600 });
    const err = (await s.readInfo().catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('ERR_DEVICE_STATE_INVALID');
    expect(err.message).toContain(s.infoPath);
    expect(err.message).toMatch(re);
  });

  it('refuses a symlinked state file', async () => {
    const s = new DeviceState(join(root, 'link'));
    await s.ensureDir();
    writeFileSync(join(root, 'elsewhere.pem'), 'X');
    symlinkSync(join(root, 'elsewhere.pem'), s.certPath);
    await expect(s.readCertChain()).rejects.toMatchObject({ code: 'ERR_DEVICE_STATE_INVALID' });
  });
});
