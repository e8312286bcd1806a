/**
 * The provider's keys, generated once and kept in the store (kv `idp/keys`): the signing keys
 * (ES256 first, so ID tokens are ES256 by default; an RS256 key too, for relying parties that only
 * speak RS256) and the cookie-signing keys. Several providers on one PostgreSQL share them.
 *
 * They are sealed under the KEK (AES-256-GCM, as the CA's keys): whoever can read the database can
 * otherwise mint ID tokens for anyone, and so sign in anywhere the provider is trusted. Keys an
 * earlier version stored in the clear are read once and sealed on the spot.
 */
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { z } from 'zod';
import type { Kek } from '../../ca/kek.js';
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

/** Binds the sealed box to what it is: a box moved to another kv entry does not open. */
const AAD = 'nevertrust/idp/keys';

const sealedSchema = z.object({
  sealed: z.object({
    alg: z.literal('A256GCM'),
    kekId: z.string(),
    iv: z.string(),
    ciphertext: z.string(),
    tag: z.string(),
  }),
});

function seal(keys: IdpKeys, kek: Kek): string {
  return JSON.stringify({ sealed: kek.seal(Buffer.from(JSON.stringify(keys), 'utf8'), AAD) });
}

/** The keys of a stored value, and whether it was stored in the clear (to be sealed now). */
function open(value: string, kek: Kek): { keys: IdpKeys; clear: boolean } {
  const boxed = sealedSchema.safeParse(JSON.parse(value));
  if (boxed.success) return { keys: parse(kek.open(boxed.data.sealed, AAD).toString('utf8')), clear: false };
  return { keys: parse(value), clear: true };
}

/**
 * The stored keys, created on first use (a race between two providers keeps the first writer's).
 *
 * @throws {KekError} when the stored keys are sealed under another KEK, or do not authenticate
 */
export async function loadOrCreateKeys(store: Store, kek: Kek): Promise<IdpKeys> {
  for (;;) {
    const have = await store.kv.get(NAMESPACE, KEY);
    if (have) {
      const { keys, clear } = open(have.value, kek);
      if (!clear) return keys;
      try {
        await store.kv.put(NAMESPACE, KEY, seal(keys, kek), have.version);
        return keys;
      } catch (e) {
        if (!(e instanceof StoreConflictError)) throw e;
        continue; // another provider sealed or rotated them meanwhile: read again
      }
    }
    const keys: IdpKeys = {
      signing: [await newSigningKey('ES256'), await newSigningKey('RS256')],
      cookies: [randomBytes(32).toString('base64url')],
    };
    try {
      await store.kv.put(NAMESPACE, KEY, seal(keys, kek), 0);
      return keys;
    } catch (e) {
      if (!(e instanceof StoreConflictError)) throw e;
    }
  }
}

/**
 * Adds a new ES256 signing key in front (it signs from now on) and keeps every older key, so tokens
 * signed before still verify against the published JWKS. Compare-and-set against other writers.
 */
export async function rotateSigningKey(store: Store, kek: Kek): Promise<IdpKeys> {
  for (;;) {
    const have = await store.kv.get(NAMESPACE, KEY);
    const current = have ? open(have.value, kek).keys : await loadOrCreateKeys(store, kek);
    const next: IdpKeys = { ...current, signing: [await newSigningKey('ES256'), ...current.signing] };
    try {
      await store.kv.put(NAMESPACE, KEY, seal(next, kek), have?.version ?? 1);
      return next;
    } catch (e) {
      if (!(e instanceof StoreConflictError)) throw e;
    }
  }
}
