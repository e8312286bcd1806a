/** Users and the provider's models in the store, on both engines (migration 0006). */
import { describe, expect, it } from 'vitest';
import { storeAdapter } from '../../src/access/idp/adapter.js';
import { DuplicateUserError, openStore } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase(), dataDir: tempDir() }) },
];

describe.each(engines)('users on $name', ({ open }) => {
  it('adds, lists, updates and removes users; a second add of a name is refused', async () => {
    const store = await openStore(await open());
    try {
      const alice = await store.users.create({
        username: 'alice',
        email: 'alice@example.com',
        groups: ['staff', 'admins', 'staff'],
        passwordHash: 'scrypt$x',
      });
      expect(alice).toMatchObject({ username: 'alice', groups: ['admins', 'staff'], disabled: false });
      expect(alice.name).toBeUndefined();
      await expect(store.users.create({ username: 'alice', groups: [], passwordHash: 'h' })).rejects.toBeInstanceOf(
        DuplicateUserError,
      );
      await store.users.create({ username: 'bob', groups: [], passwordHash: 'h' });
      expect((await store.users.list()).map((u) => u.username)).toEqual(['alice', 'bob']);
      const updated = await store.users.update('alice', { disabled: true, email: null, name: 'Alice' });
      expect(updated).toMatchObject({ disabled: true, name: 'Alice' });
      expect(updated?.email).toBeUndefined();
      expect(await store.users.update('nobody', { disabled: true })).toBeUndefined();
      expect(await store.users.remove('bob')).toBe(true);
      expect(await store.users.remove('bob')).toBe(false);
      expect(await store.users.get('bob')).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('keeps the provider models: find by id and uid, consume, expiry, revoke by grant', async () => {
    const store = await openStore(await open());
    try {
      const Adapter = storeAdapter(store);
      const tokens = new Adapter('RefreshToken');
      const other = new Adapter('Session');
      await tokens.upsert('rt1', { grantId: 'g1', accountId: 'alice' }, 60);
      await tokens.upsert('rt2', { grantId: 'g2' }, 60);
      await other.upsert('s1', { uid: 'u1', accountId: 'alice' }, 60);
      expect(await tokens.find('rt1')).toMatchObject({ grantId: 'g1', accountId: 'alice' });
      expect(await other.find('rt1')).toBeUndefined();
      expect(await other.findByUid('u1')).toMatchObject({ accountId: 'alice' });
      await tokens.consume('rt1');
      expect((await tokens.find('rt1'))?.consumed).toBeTypeOf('number');
      await tokens.revokeByGrantId('g1');
      expect(await tokens.find('rt1')).toBeUndefined();
      expect(await tokens.find('rt2')).toBeDefined();
      await tokens.upsert('gone', {}, 0.001);
      await new Promise((r) => setTimeout(r, 20));
      expect(await tokens.find('gone')).toBeUndefined();
      await tokens.destroy('rt2');
      expect(await tokens.find('rt2')).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
