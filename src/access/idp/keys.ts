/**
 * The provider's keys, generated once and kept in the store (kv `idp/keys`): the signing keys
 * (ES256 first, so ID tokens are ES256 by default; an RS256 key too, for relying parties that only
 * speak RS256) and the cookie-signing keys. Several providers on one PostgreSQL share them.
 */
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { z } from 'zod';
import { StoreConflictError, type Store } from '../../store/index.js';

const NAMESPACE = 'idp';
const KEY = 'keys';

const keysSchema = z.object({
  signing: z.array(z.record(z.string(), z.unknown())).min(1),
  cookies: z.array(z.string().min(32)).min(1),
});

export interface IdpKeys {
  /** Private JWKs, newest ES256 first: oidc-provider signs with the first key of an algorithm. */
  signing: JWK[];
  cookies: string[];
}

async function newSigningKey(alg: 'ES256' | 'RS256'): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: randomBytes(12).toString('base64url') };
}

function parse(value: string): IdpKeys {
  const k = keysSchema.parse(JSON.parse(value));
  return { signing: k.signing as JWK[], cookies: k.cookies };
}

/** The stored keys, created on first use (a race between two providers keeps the first writer's). */
export async function loadOrCreateKeys(store: Store): Promise<IdpKeys> {
  const have = await store.kv.get(NAMESPACE, KEY);
  if (have) return parse(have.value);
  const keys: IdpKeys = {
    signing: [await newSigningKey('ES256'), await newSigningKey('RS256')],
    cookies: [randomBytes(32).toString('base64url')],
  };
  try {
    await store.kv.put(NAMESPACE, KEY, JSON.stringify(keys), 0);
    return keys;
  } catch (e) {
    if (!(e instanceof StoreConflictError)) throw e;
    const won = await store.kv.get(NAMESPACE, KEY);
    if (!won) throw e;
    return parse(won.value);
  }
}

/**
 * Adds a new ES256 signing key in front (it signs from now on) and keeps every older key, so tokens
 * signed before still verify against the published JWKS. Compare-and-set against other writers.
 */
export async function rotateSigningKey(store: Store): Promise<IdpKeys> {
  for (;;) {
    const have = await store.kv.get(NAMESPACE, KEY);
    const current = have ? parse(have.value) : await loadOrCreateKeys(store);
    const next: IdpKeys = { ...current, signing: [await newSigningKey('ES256'), ...current.signing] };
    try {
      await store.kv.put(NAMESPACE, KEY, JSON.stringify(next), have?.version ?? 1);
      return next;
    } catch (e) {
      if (!(e instanceof StoreConflictError)) throw e;
    }
  }
}
