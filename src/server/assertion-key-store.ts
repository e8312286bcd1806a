/**
 * Where the server keeps registered assertion keys: the store's kv table, one document per SPIFFE ID
 * (`{keys: [...]}`). Shared by the key registry (src/server/plugins/assertion-keys.ts), which writes
 * and publishes them, and the console's person-admin check, which verifies a proxy's assertions with
 * them without an HTTP round trip to itself.
 */
import { z } from 'zod';
import { type AssertionJwk, type AssertionKeyRecord, assertionKeyToJwk } from '../api/assertion-keys.js';
import type { Store } from '../store/index.js';

/** The kv namespace of the registry's documents (the key is the owner's SPIFFE ID). */
export const ASSERTION_KEYS_KV_NS = 'assertion_keys';

const StoredDoc = z.object({
  keys: z.array(
    z.object({ kid: z.string(), x: z.string(), y: z.string(), expires_at: z.number(), registered_at: z.number() }),
  ),
});

/**
 * The keys of one stored document; a malformed document throws (a registry we cannot read vouches
 * for nobody).
 */
export function parseKeyDoc(value: string | undefined, owner: string): AssertionKeyRecord[] {
  if (value === undefined) return [];
  const r = StoredDoc.safeParse(JSON.parse(value));
  if (!r.success) throw new Error(`stored assertion keys of ${owner} are malformed`);
  return r.data.keys;
}

/**
 * The unexpired keys `owner` registered, as published JWKs (one store read).
 *
 * @example
 * const jwks = { keys: await registeredKeysOf(store, 'spiffe://example.org/ns/edge/sa/access-proxy') };
 */
export async function registeredKeysOf(store: Store, owner: string, now = Date.now()): Promise<AssertionJwk[]> {
  const entry = await store.kv.get(ASSERTION_KEYS_KV_NS, owner);
  return parseKeyDoc(entry?.value, owner)
    .filter((k) => k.expires_at > now)
    .map((k) => assertionKeyToJwk(owner, k));
}
