/**
 * The proxy's device parts one by one: what policy sees of a device (fresh, stale, absent posture;
 * the owner), the lookup cache (at most a second, failures not kept), and the `max_posture_age`
 * config keys.
 */
import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DevicePosture, DeviceRecord } from '../../src/api/devices.js';
import { cachedDeviceLookup, deviceSource, NO_DEVICE_REASON } from '../../src/access/proxy/device.js';
import { serialText } from '../../src/spiffe/index.js';
import { parseAccessProxyConfig } from '../../src/access/proxy/index.js';
import { servingTls } from '../../src/access/proxy/tls.js';
import { CertificateAuthority, loadOrCreateKek, MemoryCaStateStore } from '../../src/ca/index.js';
import { TrustBundle } from '../../src/spiffe/index.js';
import { makePki } from '../pep/pki.js';
import { tempDir } from '../support/tmp.js';
import { acceptableCaNames } from '../support/tls.js';

const NOW = Date.parse('2026-12-07T05:00:00Z');
const posture = (ageS: number, facts: Partial<DevicePosture> = {}): DevicePosture => ({
  source: 'collector',
  collected_at: new Date(NOW - ageS * 1000).toISOString(),
  received_at: new Date(NOW).toISOString(),
  managed: true,
  encrypted: true,
  os_patched: false,
  firewall_active: true,
  edr_active: true,
  unknown: [],
  compliant: false,
  ...facts,
});
const record = (p: DevicePosture | null, owner = 'alice'): DeviceRecord => ({
  id: 'laptop-1',
  owner,
  name: null,
  spiffeId: 'spiffe://example.org/device/laptop-1',
  enrolledAt: NOW - 86_400_000,
  certSerial: '0a1b',
  certNotAfter: NOW + 3600_000,
  renewedAt: null,
  revokedAt: null,
  revokedReason: null,
  posture: p,
});

describe('deviceSource', () => {
  it('fresh posture: the facts, the age and whether the owner is the user', () => {
    expect(deviceSource(record(posture(60)), 'alice', 900, NOW)).toEqual({
      id: 'laptop-1',
      owner_is_user: true,
      managed: true,
      encrypted: true,
      os_patched: false,
      edr_active: true,
      posture_age_s: 60,
    });
    expect(deviceSource(record(posture(60)), 'bob', 900, NOW)).toMatchObject({ owner_is_user: false });
  });

  it('posture older than the route allows: no facts, and why', () => {
    const d = deviceSource(record(posture(1200)), 'alice', 900, NOW);
    expect(d).toEqual({
      id: 'laptop-1',
      owner_is_user: true,
      posture_age_s: 1200,
      unknown_reason: 'device posture is 1200 s old, the route allows 900 s',
    });
    // Exactly at the limit is still fresh.
    expect(deviceSource(record(posture(900)), 'alice', 900, NOW)).toHaveProperty('os_patched', false);
  });

  it('no report yet, no device, a posture time in the future', () => {
    expect(deviceSource(record(null), 'alice', 900, NOW)).toEqual({
      id: 'laptop-1',
      owner_is_user: true,
      unknown_reason: 'device laptop-1 has not reported its posture',
    });
    expect(deviceSource(undefined, 'alice', 900, NOW)).toEqual({ unknown_reason: NO_DEVICE_REASON });
    // A device clock ahead of ours is not a negative age.
    expect(deviceSource(record(posture(-30)), 'alice', 900, NOW)).toMatchObject({ posture_age_s: 0 });
  });

  it('serials compare as lower-case hex without leading zeros', () => {
    expect(serialText('00AB01')).toBe('ab01');
    expect(serialText('0')).toBe('0');
  });
});

describe('cachedDeviceLookup', () => {
  it('answers from memory for at most a second, and never longer even when asked', async () => {
    let reads = 0;
    const lookup = cachedDeviceLookup(
      {
        get: async () => {
          reads++;
          return undefined;
        },
      },
      60_000,
    );
    await Promise.all([lookup.get('a'), lookup.get('a')]);
    expect(reads).toBe(1);
    await new Promise((r) => setTimeout(r, 1050));
    await lookup.get('a');
    expect(reads).toBe(2);
  });

  it('does not keep a failed read', async () => {
    let fail = true;
    const lookup = cachedDeviceLookup({
      get: async () => {
        if (fail) throw new Error('store down');
        return record(null);
      },
    });
    await expect(lookup.get('a')).rejects.toThrow('store down');
    fail = false;
    expect(await lookup.get('a')).toMatchObject({ id: 'laptop-1' });
  });
});

describe('max_posture_age', () => {
  const base = {
    listen: '127.0.0.1:8443',
    svid: { workload_api: 'x' },
    policies: 'p',
    routes: [{ name: 'wiki', from: { host: 'wiki.test' }, to: 'http://127.0.0.1:1', max_posture_age: '5m' }],
  };
  it('defaults to 15 minutes proxy-wide; a route may set its own', () => {
    const c = parseAccessProxyConfig(base);
    expect(c.devices.max_posture_age).toBe(900);
    expect(c.routes[0]?.max_posture_age).toBe(300);
    expect(parseAccessProxyConfig({ ...base, devices: { max_posture_age: '1h' } }).devices.max_posture_age).toBe(3600);
  });
  it('refuses a bad duration naming the field', () => {
    expect(() => parseAccessProxyConfig({ ...base, devices: { max_posture_age: 'soon' } }, 'p.yaml')).toThrow(
      /p\.yaml: devices\.max_posture_age: "soon" is not a duration/,
    );
    expect(() => parseAccessProxyConfig({ ...base, devices: { max_age: '1h' } }, 'p.yaml')).toThrow(/devices/);
  });
});

describe('servingTls with a public CA’s files', () => {
  it('asks for device certificates of the SVID source’s bundle, following it', async () => {
    const dir = tempDir();
    const pki = await makePki(dir);
    // The serving certificate from files (as a public CA's would be), the bundle from the source.
    const files = pki.files(dir, 'public', pki.mint('public', { dnsNames: ['localhost'] }));
    const source = pki.source('proxy');
    const tls = servingTls({ cert_file: files.cert, key_file: files.key }, source, () => {}, {
      trustDomain: 'example.org',
    });
    expect(tls.options).toMatchObject({ requestCert: true, rejectUnauthorized: false });
    const server = createServer(tls.options, (_q, r) => r.end('ok'));
    tls.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const name = (pem: string) => /serialNumber=([0-9a-f]+)/.exec(new X509Certificate(pem).subject)?.[1] ?? pem;
    try {
      const root = pki.bundle().toPem();
      expect(await acceptableCaNames(port)).toContain(name(root));
      // A new root in the trust domain's bundle: asked for on the next handshake.
      const kek = (await loadOrCreateKek({ file: join(dir, 'next.kek'), env: {} })).kek;
      const next = await CertificateAuthority.open({
        trustDomain: 'example.org',
        store: new MemoryCaStateStore(),
        kek,
      });
      const nextRoot = next.bundle().toPem();
      source.set(source.svid, [TrustBundle.fromPem('example.org', `${root}\n${nextRoot}`)]);
      expect(await acceptableCaNames(port)).toContain(name(nextRoot));
      // Without devices nothing is asked for.
      expect(servingTls({ cert_file: files.cert, key_file: files.key }, source, () => {}).options).not.toHaveProperty(
        'requestCert',
      );
    } finally {
      tls.stop();
      server.close();
    }
  });
});
