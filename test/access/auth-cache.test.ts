/** The session cache's bound and the change-feed follower, on a real SQLite store. */
import { describe, expect, it } from 'vitest';
import { ChangeFollower, Lru } from '../../src/access/auth/session-cache.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

describe('session cache', () => {
  it('the LRU keeps at most its bound, drops the least recently used, and says which', () => {
    const dropped: string[] = [];
    const lru = new Lru<string, number>(3, (k) => dropped.push(k));
    for (const k of ['a', 'b', 'c']) lru.set(k, 1);
    lru.get('a');
    lru.set('d', 1);
    expect(dropped).toEqual(['b']);
    expect(lru.size).toBe(3);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    lru.delete('a');
    expect(dropped).toEqual(['b']);
  });

  it('the follower starts at the newest change and evicts each later end or update once', async () => {
    const store = await openStore({ dataDir: tempDir() });
    try {
      const repo = store.accessSessions;
      const now = Date.now();
      const session = (id: string) => ({
        id,
        host: 'h',
        issuer: 'https://i',
        sub: id,
        providerSid: null,
        person: '{}',
        tokens: '{}',
        tokenExpiresAt: null,
        createdAt: now,
        expiresAt: now + 60_000,
        lastSeenAt: now,
      });
      for (const id of ['old', 's1', 's2']) await repo.create(`token-${id}`, session(id));
      expect(await repo.end('old', 'logout')).toBe(true);
      expect(await repo.end('old', 'logout')).toBe(false); // already ended: no second change
      const evicted: string[] = [];
      const f = new ChangeFollower(
        repo,
        (id) => evicted.push(id),
        (e) => {
          throw e;
        },
      );
      await f.start(60_000);
      await f.poll();
      expect(evicted).toEqual([]);
      await repo.updateTokens('s1', '{"sealed":1}', now + 1000);
      await repo.end('s2', 'logout');
      await f.poll();
      await f.poll();
      expect(evicted).toEqual(['s1', 's2']);
      await f.stop();
    } finally {
      await store.close();
    }
  });
});
