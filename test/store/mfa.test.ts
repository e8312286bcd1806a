/** The MFA repository (migration 0008) on both engines: every "use once" holds under concurrency. */
import { describe, expect, it } from 'vitest';
import { sha256Hex as sha256HexForTest } from '../../src/store/access-sessions.js';
import { type NewMfaFactor, openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase(), dataDir: tempDir() }) },
];

const alice = { issuer: 'https://idp.example', sub: 'a-1' };
const bob = { issuer: 'https://idp.example', sub: 'b-2' };

const totp = (id: string, over: Partial<NewMfaFactor> = {}): NewMfaFactor => ({
  id,
  ...alice,
  userName: 'alice',
  kind: 'totp',
  name: 'phone',
  secret: 'sealed',
  credentialId: null,
  publicKey: null,
  counter: null,
  transports: [],
  aaguid: null,
  createdAt: 1000,
  confirmedAt: null,
  ...over,
});

async function withStore(open: () => Promise<{ url?: string; dataDir: string }>, fn: (s: Store) => Promise<void>) {
  const store = await openStore(await open());
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

describe.each(engines)('MFA store on $name', ({ open }) => {
  it('adds, lists, finds, confirms and removes factors; a subject removes only its own', async () => {
    await withStore(open, async (store) => {
      await store.mfa.addFactor(totp('f1'));
      await store.mfa.addFactor(
        totp('f2', {
          kind: 'webauthn',
          name: 'key',
          secret: null,
          credentialId: 'cred-1',
          publicKey: 'pk',
          counter: 0,
          transports: ['usb', 'nfc'],
          createdAt: 2000,
          confirmedAt: 2000,
        }),
      );
      await store.mfa.addFactor(totp('f3', { ...bob, userName: 'bob', createdAt: 500 }));
      expect((await store.mfa.listBySubject(alice)).map((f) => f.id)).toEqual(['f1', 'f2']);
      expect((await store.mfa.listByUser('bob')).map((f) => f.id)).toEqual(['f3']);
      const key = await store.mfa.findByCredentialId('cred-1');
      expect(key).toMatchObject({ id: 'f2', counter: 0, transports: ['usb', 'nfc'], confirmedAt: 2000 });
      expect(await store.mfa.findByCredentialId('nope')).toBeUndefined();
      expect(await store.mfa.confirm('f1', 3000)).toBe(true);
      expect(await store.mfa.confirm('f1', 4000)).toBe(false);
      expect((await store.mfa.findById('f1'))?.confirmedAt).toBe(3000);
      expect(await store.mfa.removeFactor(bob, 'f1')).toBe(false);
      expect(await store.mfa.removeFactor(alice, 'f1')).toBe(true);
      expect(await store.mfa.removeFactor(alice, 'f1')).toBe(false);
      await store.mfa.addFactor(totp('p1'));
      expect(await store.mfa.removePending(alice, 'totp')).toBe(1);
      expect(await store.mfa.findById('f2')).toBeDefined();
    });
  });

  it('accepts a TOTP step once, never an older one, even when two callers race', async () => {
    await withStore(open, async (store) => {
      await store.mfa.addFactor(totp('f1', { confirmedAt: 1 }));
      const race = await Promise.all([1, 2, 3, 4].map(() => store.mfa.useTotpStep('f1', 100, 5)));
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await store.mfa.useTotpStep('f1', 100, 6)).toBe(false);
      expect(await store.mfa.useTotpStep('f1', 99, 6)).toBe(false);
      expect(await store.mfa.useTotpStep('f1', 101, 7)).toBe(true);
      expect(await store.mfa.findById('f1')).toMatchObject({ totpLastStep: 101, lastUsedAt: 7 });
    });
  });

  it('moves a WebAuthn counter only from the value read', async () => {
    await withStore(open, async (store) => {
      await store.mfa.addFactor(totp('w', { kind: 'webauthn', secret: null, credentialId: 'c', counter: 3 }));
      const race = await Promise.all([1, 2, 3].map(() => store.mfa.updateCounter('w', 3, 4, 10)));
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await store.mfa.updateCounter('w', 3, 5, 11)).toBe(false);
      expect((await store.mfa.findById('w'))?.counter).toBe(4);
    });
  });

  it('keeps recovery codes hashed; each is used once and only by its owner', async () => {
    await withStore(open, async (store) => {
      const hashes = ['c1', 'c2', 'c3'].map(sha256HexForTest);
      await store.mfa.replaceRecoveryCodes(alice, hashes, 1);
      expect(await store.mfa.countRecoveryCodes(alice)).toBe(3);
      expect(await store.mfa.useRecoveryCode(bob, hashes[0] as string, 2)).toBe(false);
      const race = await Promise.all([1, 2, 3].map(() => store.mfa.useRecoveryCode(alice, hashes[0] as string, 2)));
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await store.mfa.countRecoveryCodes(alice)).toBe(2);
      await store.mfa.replaceRecoveryCodes(alice, [sha256HexForTest('new')], 3);
      expect(await store.mfa.useRecoveryCode(alice, hashes[1] as string, 4)).toBe(false);
      expect(await store.mfa.countRecoveryCodes(alice)).toBe(1);
    });
  });

  it('counts failures in a window, locks once at the limit, and the lock expires', async () => {
    await withStore(open, async (store) => {
      const limit = { max: 3, windowMs: 1000, lockMs: 5000 };
      expect(await store.mfa.registerFailure('k', 0, limit)).toEqual({
        failures: 1,
        lockedUntil: null,
        lockedNow: false,
      });
      // A failure after the window starts a new count.
      expect((await store.mfa.registerFailure('k', 1000, limit)).failures).toBe(1);
      await store.mfa.registerFailure('k', 1100, limit);
      const all = await Promise.all([1, 2, 3].map(() => store.mfa.registerFailure('k', 1200, limit)));
      expect(all.filter((f) => f.lockedNow)).toHaveLength(1);
      expect(all.every((f) => f.lockedUntil === 6200)).toBe(true);
      expect(await store.mfa.lockedUntil(['other', 'k'], 6199)).toBe(6200);
      expect(await store.mfa.lockedUntil(['k'], 6200)).toBeUndefined();
      await store.mfa.clearFailures('k', 3000);
      expect(await store.mfa.lockedUntil(['k'], 3000)).toBe(6200);
      await store.mfa.clearFailures('k', 7000);
      expect((await store.mfa.registerFailure('k', 7000, limit)).failures).toBe(1);
    });
  });

  it('enrollment links are hashed, bound to a user name, expire, and are used once', async () => {
    await withStore(open, async (store) => {
      await store.mfa.createEnrollLink('tok', 'alice', 'admin', 0, 1000);
      const rows = await store.db.selectFrom('mfa_enroll_links').selectAll().execute();
      expect(rows[0]?.token_hash).toBe(sha256HexForTest('tok'));
      expect(await store.mfa.checkEnrollLink('tok', 'bob', 10)).toBe(false);
      expect(await store.mfa.checkEnrollLink('tok', 'alice', 1000)).toBe(false);
      expect(await store.mfa.checkEnrollLink('tok', 'alice', 10)).toBe(true);
      expect(await store.mfa.consumeEnrollLink('tok', 'bob', 10)).toBe(false);
      expect(await store.mfa.consumeEnrollLink('tok', 'alice', 1000)).toBe(false);
      const race = await Promise.all([1, 2].map(() => store.mfa.consumeEnrollLink('tok', 'alice', 10)));
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await store.mfa.checkEnrollLink('tok', 'alice', 10)).toBe(false);
    });
  });

  it('takes a challenge once, for its session and kind only; purges expired ones', async () => {
    await withStore(open, async (store) => {
      const c = { id: 'ch', sessionId: 's1', kind: 'webauthn.authenticate' as const, challenge: 'xyz', expiresAt: 100 };
      await store.mfa.putChallenge(c);
      expect(await store.mfa.takeChallenge('ch', 's2', c.kind, 1)).toBeUndefined();
      expect(await store.mfa.takeChallenge('ch', 's1', 'webauthn.register', 1)).toBeUndefined();
      const race = await Promise.all([1, 2].map(() => store.mfa.takeChallenge('ch', 's1', c.kind, 1)));
      expect(race.filter((x) => x === 'xyz')).toHaveLength(1);
      await store.mfa.putChallenge({ ...c, id: 'late' });
      expect(await store.mfa.takeChallenge('late', 's1', c.kind, 100)).toBeUndefined();
      await store.mfa.putChallenge({ ...c, id: 'old', expiresAt: 50 });
      await store.mfa.putChallenge({ ...c, id: 'live', expiresAt: 500 });
      await store.mfa.purgeExpired(60, 1000);
      expect((await store.db.selectFrom('mfa_challenges').select('id').execute()).map((r) => r.id)).toEqual(['live']);
    });
  });

  it('keeps a session’s five newest challenges only', async () => {
    await withStore(open, async (store) => {
      const kind = 'webauthn.register' as const;
      for (let i = 0; i < 8; i++) {
        await store.mfa.putChallenge({ id: `c${i}`, sessionId: 's1', kind, challenge: 'x', expiresAt: 1000 + i });
      }
      await store.mfa.putChallenge({ id: 'other', sessionId: 's2', kind, challenge: 'x', expiresAt: 1 });
      const ids = (await store.db.selectFrom('mfa_challenges').select('id').orderBy('id').execute()).map((r) => r.id);
      expect(ids).toEqual(['c3', 'c4', 'c5', 'c6', 'c7', 'other']);
    });
  });

  it('resets a user: factors, recovery codes and counters go; other people keep theirs', async () => {
    await withStore(open, async (store) => {
      await store.mfa.addFactor(totp('f1'));
      await store.mfa.addFactor(totp('f2', { issuer: 'https://other.example' }));
      await store.mfa.addFactor(totp('f3', { ...bob, userName: 'bob' }));
      await store.mfa.replaceRecoveryCodes(alice, [sha256HexForTest('a')], 1);
      await store.mfa.replaceRecoveryCodes(bob, [sha256HexForTest('b')], 1);
      await store.mfa.registerFailure('user:https://idp.example a-1', 1, { max: 5, windowMs: 10, lockMs: 10 });
      const r = await store.mfa.resetByUser('alice');
      expect(r.factors).toBe(2);
      expect(r.subjects).toHaveLength(2);
      expect(r.subjects).toContainEqual(alice);
      expect(await store.mfa.listByUser('alice')).toEqual([]);
      expect(await store.mfa.countRecoveryCodes(alice)).toBe(0);
      expect(await store.mfa.countRecoveryCodes(bob)).toBe(1);
      expect(await store.mfa.listByUser('bob')).toHaveLength(1);
      expect(await store.db.selectFrom('mfa_attempts').selectAll().execute()).toEqual([]);
    });
  });
});
