/** The signal store on both engines (migration 0010): numbering, order, head/oldest, pruning. */
import { describe, expect, it } from 'vitest';
import type { Signal } from '../../src/api/signals.js';
import { openStore } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase('nt_sig'), dataDir: tempDir() }) },
];

const at = new Date().toISOString();
const revoke = (sessionId: string): Signal => ({
  kind: 'session.revoked',
  sessionId,
  reason: 'test',
  source: 'admin',
  at,
});

describe.each(engines)('signals on $name', ({ open }) => {
  it('numbers signals in the order kept, reads after a seq in order, prunes old ones but never the head', async () => {
    const store = await openStore(await open());
    try {
      expect(await store.signals.head()).toBe(0);
      expect(await store.signals.oldest()).toBe(0);
      const t0 = Date.now() - 60_000;
      const s1 = await store.signals.append(revoke('a'), t0);
      const s2 = await store.signals.append(
        { kind: 'svid.revoked', serial: '0A1b', reason: 'key leaked', source: 'admin', at },
        t0 + 1,
      );
      const s3 = await store.signals.append(revoke('c'));
      expect(s2).toBeGreaterThan(s1);
      expect(s3).toBeGreaterThan(s2);
      expect(await store.signals.head()).toBe(s3);
      expect(await store.signals.oldest()).toBe(s1);

      const all = await store.signals.after(0);
      expect(all.map((m) => m.seq)).toEqual([s1, s2, s3]);
      expect(all[0]).toEqual({ seq: s1, signal: revoke('a'), received_at: new Date(t0).toISOString() });
      expect((await store.signals.after(s1, 1)).map((m) => m.seq)).toEqual([s2]);
      const row = await store.db
        .selectFrom('signals')
        .select(['kind', 'subject'])
        .where('seq', '=', s2)
        .executeTakeFirst();
      expect(row).toEqual({ kind: 'svid.revoked', subject: 'svid:0a1b' });

      // Everything is older than "now + 1 min": all go but the newest, so head never moves back.
      expect(await store.signals.prune(Date.now() + 60_000)).toBe(2);
      expect(await store.signals.head()).toBe(s3);
      expect(await store.signals.oldest()).toBe(s3);
      const s4 = await store.signals.append(revoke('d'));
      expect(s4).toBeGreaterThan(s3);
    } finally {
      await store.close();
    }
  });

  it('refuses to keep a signal that does not fit the model, and keeps nothing', async () => {
    const store = await openStore(await open());
    try {
      const bad = { kind: 'session.revoked', sessionId: '', reason: 'x', source: 'admin', at } as unknown as Signal;
      await expect(store.signals.append(bad)).rejects.toThrow();
      const unknownKind = {
        kind: 'session.granted',
        sessionId: 's',
        reason: 'x',
        source: 'admin',
        at,
      } as unknown as Signal;
      await expect(store.signals.append(unknownKind)).rejects.toThrow();
      expect(await store.signals.head()).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('skips a stored row that does not parse rather than streaming it', async () => {
    const store = await openStore(await open());
    try {
      const s1 = await store.signals.append(revoke('a'));
      await store.db
        .insertInto('signals')
        .values({ kind: 'session.revoked', subject: 'session:x', signal: '{"kind":"nope"', received_at: Date.now() })
        .execute();
      const s3 = await store.signals.append(revoke('b'));
      expect((await store.signals.after(0)).map((m) => m.seq)).toEqual([s1, s3]);
    } finally {
      await store.close();
    }
  });
});
