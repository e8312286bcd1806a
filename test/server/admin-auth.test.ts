/**
 * Admin tokens on a shared store: a token another server has just added is accepted at once (the
 * store is re-read on a miss), a wrong token is refused, and a flood of wrong tokens costs the store
 * at most one read a second, shared by every waiting request.
 */
import type { IncomingMessage } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminAuth, AdminAuthError } from '../../src/server/admin-auth.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } }) as IncomingMessage;

describe('AdminAuth', () => {
  it('accepts a token another server added a moment ago, refuses a wrong one, and floods read the store once a second', async () => {
    const dir = tempDir();
    const store = await openStore({ dataDir: dir });
    stores.push(store);
    const dirA = join(dir, 'a');
    const dirB = join(dir, 'b');
    mkdirSync(dirA);
    mkdirSync(dirB);
    const a = await AdminAuth.init(store, dirA);
    await AdminAuth.init(store, dirB); // another server on the same store, right after
    const tokenB = readFileSync(join(dirB, 'admin.token'), 'utf8').trim();
    await expect(a.authenticate(bearer(tokenB))).resolves.toMatchObject({ kind: 'admin' });

    let reads = 0;
    const get = store.kv.get.bind(store.kv);
    store.kv.get = (...args: Parameters<typeof get>) => {
      reads++;
      return get(...args);
    };
    const wrong = Array.from({ length: 50 }, (_, i) => a.authenticate(bearer(`wrong-token-${i}-xxxxxxxxxxxx`)));
    const results = await Promise.allSettled(wrong);
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof AdminAuthError)).toBe(true);
    expect(reads).toBe(1);
    await expect(a.authenticate(bearer('x'))).rejects.toThrow(/admin credential required/);
  });
});
