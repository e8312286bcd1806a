/**
 * A test SSF transmitter with its own RSA key: mints SETs with jose directly so tests can also
 * produce the broken and forged ones a real transmitter never would.
 */
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { createLocalJWKSet, exportJWK, type JWK, type JWTVerifyGetKey, SignJWT } from 'jose';
import { createMemorySeenSet, type VerifySetOptions } from '../../src/signals/ssf/set.js';

export const TX_ISSUER = 'https://idp.test.example';
export const RX_AUDIENCE = 'https://nevertrust.test.example/ssf';

export interface TestTransmitter {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
  jwk: JWK;
  jwks: JWTVerifyGetKey;
  /** Signs `claims` (defaults filled in unless set to undefined) with `header` over the defaults. */
  mint(
    claims?: Record<string, unknown>,
    header?: Record<string, unknown>,
    key?: KeyObject | Uint8Array,
  ): Promise<string>;
}

export async function createTestTransmitter(): Promise<TestTransmitter> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = 'tx-1';
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return {
    privateKey,
    publicKey,
    kid,
    jwk,
    jwks: createLocalJWKSet({ keys: [jwk] }),
    async mint(claims = {}, header = {}, key = privateKey) {
      const defaults: Record<string, unknown> = {
        iss: TX_ISSUER,
        aud: RX_AUDIENCE,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        sub_id: { format: 'opaque', id: 'sess-1' },
        events: { 'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {} },
      };
      const payload: Record<string, unknown> = { ...defaults, ...claims };
      for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', typ: 'secevent+jwt', kid, ...header } as never)
        .sign(key);
    },
  };
}

/** Receiver options for the test transmitter, with a fresh replay set. */
export function receiverOptions(tx: TestTransmitter, extra: Partial<VerifySetOptions> = {}): VerifySetOptions {
  return {
    issuer: TX_ISSUER,
    audience: RX_AUDIENCE,
    jwks: tx.jwks,
    maxAgeSeconds: 300,
    seen: createMemorySeenSet(),
    ...extra,
  };
}
