/**
 * The built-in provider's signing and cookie keys are sealed under the KEK in the store: whoever reads
 * the database cannot mint ID tokens. Real SQLite store, real AES-GCM.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateKeys, rotateSigningKey } from '../../src/access/idp/keys.js';
import { Kek } from '../../src/ca/kek.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

describe("the provider's keys in the store", () => {
  let store: Store;
  const kek = Kek.fromBytes(randomBytes(32));
  beforeAll(async () => {
    store = await openStore({ dataDir: join(tempDir(), 'data') });
  });
  afterAll(() => store.close());

  it('are stored sealed: no private member, no cookie key in the clear; they open with the KEK', async () => {
    const keys = await loadOrCreateKeys(store, kek);
    const raw = (await store.kv.get('idp', 'keys'))?.value ?? '';
    const es = keys.signing.find((k) => k.alg === 'ES256');
    expect(es?.d).toBeTruthy();
    expect(raw).not.toContain(String(es?.d));
    expect(raw).not.toContain(String(keys.cookies[0]));
    expect(JSON.parse(raw)).toMatchObject({ sealed: { alg: 'A256GCM', kekId: kek.id } });
    expect(await loadOrCreateKeys(store, kek)).toEqual(keys);
  });

  it('another KEK cannot open them (the provider does not start), and a tampered box does not authenticate', async () => {
    await expect(loadOrCreateKeys(store, Kek.fromBytes(randomBytes(32)))).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
    });
    const have = await store.kv.get('idp', 'keys');
    const doc = JSON.parse(have?.value ?? '{}');
    const ct = Buffer.from(doc.sealed.ciphertext, 'base64');
    ct[0] = (ct[0] ?? 0) ^ 1;
    await store.kv.put(
      'idp',
      'keys',
      JSON.stringify({ sealed: { ...doc.sealed, ciphertext: ct.toString('base64') } }),
      have?.version ?? 0,
    );
    await expect(loadOrCreateKeys(store, kek)).rejects.toMatchObject({ code: 'ERR_KEK_DECRYPT_FAILED' });
    const back = await store.kv.get('idp', 'keys');
    await store.kv.put('idp', 'keys', have?.value ?? '', back?.version ?? 0);
  });

  it('keys an earlier version stored in the clear are read once and sealed; rotation keeps them sealed', async () => {
    const other = await openStore({ dataDir: join(tempDir(), 'data') });
    try {
      const clear = (await loadOrCreateKeys(store, kek)) as object;
      await other.kv.put('idp', 'keys', JSON.stringify(clear), 0);
      expect(await loadOrCreateKeys(other, kek)).toEqual(clear);
      expect(JSON.parse((await other.kv.get('idp', 'keys'))?.value ?? '{}')).toHaveProperty('sealed');
      const rotated = await rotateSigningKey(other, kek);
      expect(rotated.signing).toHaveLength(3);
      const raw = (await other.kv.get('idp', 'keys'))?.value ?? '';
      expect(JSON.parse(raw)).toHaveProperty('sealed');
      expect(raw).not.toContain(String(rotated.signing[0]?.d));
    } finally {
      await other.close();
    }
  });
});
