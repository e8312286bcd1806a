/** The device repository (migration 0009) on both engines: tokens once, renewal compare-and-set, history pruning. */
import { describe, expect, it } from 'vitest';
import type { DevicePosture } from '../../src/api/devices.js';
import {
  DEVICE_REPORTS_KEPT,
  type NewDevice,
  openStore,
  StoreConflictError,
  type Store,
} from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase(), dataDir: tempDir() }) },
];

async function withStore(open: () => Promise<{ url?: string; dataDir: string }>, fn: (s: Store) => Promise<void>) {
  const store = await openStore(await open());
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

const device = (id: string, over: Partial<NewDevice> = {}): NewDevice => ({
  id,
  owner: 'alice',
  name: 'laptop',
  spiffeId: `spiffe://example.org/device/${id}`,
  enrolledAt: 1000,
  certSerial: 'aa01',
  certNotAfter: 90_000,
  ...over,
});

const posture = (compliant: boolean, collectedAt = '2026-01-01T00:00:00.000Z'): DevicePosture => ({
  source: 'collector',
  collected_at: collectedAt,
  received_at: collectedAt,
  managed: true,
  encrypted: compliant,
  os_patched: true,
  firewall_active: true,
  edr_active: true,
  unknown: [],
  compliant,
});

const secret = 'a'.repeat(32);

describe.each(engines)('device store on $name', ({ open }) => {
  it('a token is used once, only before it expires, and only for its device id when it fixes one', async () => {
    await withStore(open, async (store) => {
      const now = Date.now();
      await store.devices.createToken({
        secret,
        owner: 'alice',
        deviceId: null,
        createdBy: 'admin',
        expiresAt: now + 60_000,
      });
      expect(await store.devices.tokenProblem('b'.repeat(32), 'x')).toBe('unknown');
      const results = await Promise.all([
        store.devices.consumeToken(secret, 'dev1'),
        store.devices.consumeToken(secret, 'dev2'),
      ]);
      expect(results.filter((r) => r !== undefined)).toEqual([{ owner: 'alice', deviceId: null }]);
      expect(await store.devices.tokenProblem(secret, 'dev1')).toBe('used');

      const bound = 'c'.repeat(32);
      await store.devices.createToken({
        secret: bound,
        owner: 'bob',
        deviceId: 'fixed',
        createdBy: 'admin',
        expiresAt: now + 60_000,
      });
      expect(await store.devices.consumeToken(bound, 'other')).toBeUndefined();
      expect(await store.devices.tokenProblem(bound, 'other')).toBe('other_device');
      expect(await store.devices.consumeToken(bound, 'fixed')).toEqual({ owner: 'bob', deviceId: 'fixed' });

      const old = 'd'.repeat(32);
      await store.devices.createToken({
        secret: old,
        owner: 'carol',
        deviceId: null,
        createdBy: 'admin',
        expiresAt: now - 1,
      });
      expect(await store.devices.consumeToken(old, 'x')).toBeUndefined();
      expect(await store.devices.tokenProblem(old, 'x')).toBe('expired');
      // Only the hash is stored.
      const rows = await store.db.selectFrom('device_tokens').select('token_hash').execute();
      expect(rows.some((r) => r.token_hash === secret)).toBe(false);
    });
  });

  it('creates once (a revoked id stays taken), renews only from the current serial, revokes once', async () => {
    await withStore(open, async (store) => {
      await store.devices.create(device('dev1'));
      await store.devices.create(device('dev2', { owner: 'bob' }));
      await expect(store.devices.create(device('dev1'))).rejects.toBeInstanceOf(StoreConflictError);
      expect((await store.devices.list()).map((d) => d.id)).toEqual(['dev1', 'dev2']);
      expect((await store.devices.list({ owner: 'bob' })).map((d) => d.id)).toEqual(['dev2']);

      const both = await Promise.all([
        store.devices.renewCertificate('dev1', 'aa01', { serial: 'bb02', notAfter: 100_000 }, 5000),
        store.devices.renewCertificate('dev1', 'aa01', { serial: 'cc03', notAfter: 100_000 }, 5000),
      ]);
      expect(both.filter(Boolean)).toHaveLength(1);
      const d = await store.devices.get('dev1');
      expect(['bb02', 'cc03']).toContain(d?.certSerial);
      expect(d).toMatchObject({ certNotAfter: 100_000, renewedAt: 5000, revokedAt: null, posture: null });
      expect(await store.devices.renewCertificate('dev1', 'aa01', { serial: 'dd04', notAfter: 1 })).toBe(false);

      expect(await store.devices.revoke('dev1', 'lost', 6000)).toBe(true);
      expect(await store.devices.revoke('dev1', 'again', 7000)).toBe(false);
      expect(await store.devices.revoke('nope', null)).toBe(false);
      const r = await store.devices.get('dev1');
      expect(r).toMatchObject({ revokedAt: 6000, revokedReason: 'lost' });
      expect(await store.devices.renewCertificate('dev1', r?.certSerial ?? '', { serial: 'ee05', notAfter: 1 })).toBe(
        false,
      );
      await expect(store.devices.create(device('dev1'))).rejects.toBeInstanceOf(StoreConflictError);
      expect(await store.devices.get('nope')).toBeUndefined();
    });
  });

  it('concurrent reports see one previous posture each: a compliance change is told exactly once', async () => {
    await withStore(open, async (store) => {
      await store.devices.create(device('race1'));
      // Several rounds: without the row lock the race is lost only now and then.
      for (let round = 0; round < 8; round++) {
        await store.devices.addReport('race1', { posture: posture(true), report: '{}' });
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            store.devices.addReport('race1', { posture: posture(false), report: `{"n":${i}}` }),
          ),
        );
        expect(results.filter((r) => r?.previous?.compliant === true)).toHaveLength(1);
      }
      expect(await store.devices.history('race1')).toHaveLength(72);
    });
  });

  it('keeps the latest posture, returns the previous one, and prunes the history to the newest 100', async () => {
    await withStore(open, async (store) => {
      await store.devices.create(device('dev1'));
      await store.devices.create(device('dev2'));
      expect(await store.devices.addReport('nope', { posture: posture(true), report: '{}' })).toBeUndefined();
      expect(await store.devices.addReport('dev1', { posture: posture(true), report: '{"n":0}' })).toEqual({
        previous: null,
      });
      expect(await store.devices.addReport('dev1', { posture: posture(false), report: '{"n":1}' })).toEqual({
        previous: posture(true),
      });
      await store.devices.addReport('dev2', { posture: posture(true), report: '{"other":1}' });
      for (let i = 2; i < DEVICE_REPORTS_KEPT + 5; i++)
        await store.devices.addReport('dev1', { posture: posture(i % 2 === 0), report: `{"n":${i}}` });
      const h = await store.devices.history('dev1', 1000);
      expect(h).toHaveLength(DEVICE_REPORTS_KEPT);
      expect(h[0]?.report).toBe(`{"n":${DEVICE_REPORTS_KEPT + 4}}`);
      expect(h.at(-1)?.report).toBe('{"n":5}');
      expect(h[0]?.collectedAt).toBe(Date.parse('2026-01-01T00:00:00.000Z'));
      expect(await store.devices.history('dev1', 3)).toHaveLength(3);
      expect(await store.devices.history('dev2')).toHaveLength(1);
      expect((await store.devices.get('dev1'))?.posture).toEqual(posture((DEVICE_REPORTS_KEPT + 4) % 2 === 0));

      await store.devices.revoke('dev2', null);
      expect(await store.devices.addReport('dev2', { posture: posture(false), report: '{}' })).toBeUndefined();
      expect((await store.devices.get('dev2'))?.posture).toEqual(posture(true));
    });
  });
});
