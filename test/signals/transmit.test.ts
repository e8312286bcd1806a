import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { type Signal, signalSchema } from '../../src/api/signals.js';
import { signalsFromSet } from '../../src/signals/ssf/events.js';
import { createMemorySeenSet, verifySet } from '../../src/signals/ssf/set.js';
import {
  createSetSigner,
  riskLevelOf,
  type SetSigner,
  setForSignal,
  signSet,
  ssfConfiguration,
} from '../../src/signals/ssf/transmit.js';

const ISSUER = 'https://nevertrust.test.example';
const AUD = 'https://rp.test.example/ssf';
const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;

async function receiveOwn(signer: SetSigner, jwt: string) {
  const jwks = createLocalJWKSet({ keys: [await signer.publicJwk()] });
  return verifySet(jwt, { issuer: ISSUER, audience: AUD, jwks, maxAgeSeconds: 60, seen: createMemorySeenSet() });
}

const base = { reason: 'revoked by admin', source: 'admin', at: '2026-12-07T04:00:00.000Z' } as const;

describe('createSetSigner', () => {
  it('refuses RSA under 2048 bits, a public key, a non-P-256 key for ES256 and an RSA key for ES256', () => {
    expect(() => createSetSigner({ issuer: ISSUER, key: rsa(1024), kid: 'k' })).toThrow(/2048/);
    const pub = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    expect(() => createSetSigner({ issuer: ISSUER, key: pub, kid: 'k' })).toThrow(/private/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    expect(() => createSetSigner({ issuer: ISSUER, key: p384, kid: 'k', alg: 'ES256' })).toThrow(/P-256/);
    expect(() => createSetSigner({ issuer: ISSUER, key: rsa(2048), kid: 'k', alg: 'ES256' })).toThrow(
      expect.objectContaining({ code: 'ERR_SSF_SIGNING_KEY', status: 500 }),
    );
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    expect(() => createSetSigner({ issuer: ISSUER, key: ec, kid: 'k' })).toThrow(/RSA/);
  });
});

describe('our transmitter, our receiver', () => {
  it('an RS256 SET verifies: typ, kid, sub_id, no exp', async () => {
    const signer = createSetSigner({ issuer: ISSUER, key: rsa(2048), kid: 'nt-1' });
    const content = setForSignal({ kind: 'session.revoked', ...base, sessionId: 's-1' });
    if (!content) throw new Error('no content');
    const jwt = await signSet(signer, { audience: AUD, ...content });
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: 'RS256', typ: 'secevent+jwt', kid: 'nt-1' });
    const set = await receiveOwn(signer, jwt);
    expect(set.claims.exp).toBeUndefined();
    expect(set.claims.sub_id).toEqual({ format: 'opaque', id: 's-1' });
    expect(signalsFromSet(set).signals).toMatchObject([
      { kind: 'session.revoked', sessionId: 's-1', reason: 'revoked by admin', at: base.at },
    ]);
  });

  it('an ES256 SET from a WebCrypto key verifies', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const signer = createSetSigner({ issuer: ISSUER, key: privateKey, kid: 'nt-ec', alg: 'ES256' });
    const jwt = await signSet(signer, {
      audience: AUD,
      subject: { format: 'email', email: 'bob@example.com' },
      events: { 'https://schemas.openid.net/secevent/risc/event-type/account-disabled': {} },
    });
    expect((await receiveOwn(signer, jwt)).alg).toBe('ES256');
  });

  it('every person and device signal comes back as the same kind, or the documented equivalent', async () => {
    const signer = createSetSigner({ issuer: ISSUER, key: rsa(2048), kid: 'nt-1' });
    const alice = { user: 'alice@example.com' };
    const cases: Array<[Signal, Partial<Signal> & { kind: string }]> = [
      [
        { kind: 'user.disabled', ...base, user: alice },
        { kind: 'user.disabled', user: alice },
      ],
      [
        { kind: 'user.logged-out', ...base, user: alice },
        { kind: 'user.logged-out', user: alice },
      ],
      [
        { kind: 'user.credentials-changed', ...base, user: { user: 'u-7', issuer: 'https://idp.example', sub: 'u-7' } },
        { kind: 'user.logged-out', user: { user: 'u-7', issuer: 'https://idp.example', sub: 'u-7' } },
      ],
      [
        { kind: 'device.lost', ...base, deviceId: 'd-1' },
        { kind: 'device.non-compliant', deviceId: 'd-1' },
      ],
      [
        { kind: 'device.non-compliant', ...base, deviceId: 'd-1' },
        { kind: 'device.non-compliant', deviceId: 'd-1' },
      ],
      [
        { kind: 'risk.set', ...base, target: { type: 'device', deviceId: 'd-3' }, score: 0.95 },
        { kind: 'risk.set', target: { type: 'device', deviceId: 'd-3' }, score: 0.9 },
      ],
      [
        { kind: 'risk.set', ...base, target: { type: 'user', user: alice }, score: 0.4 },
        { kind: 'risk.set', target: { type: 'user', user: alice }, score: 0.5 },
      ],
    ];
    for (const [signal, expected] of cases) {
      signalSchema.parse(signal);
      const content = setForSignal(signal);
      if (!content) throw new Error(`no SET for ${signal.kind}`);
      const back = signalsFromSet(await receiveOwn(signer, await signSet(signer, { audience: AUD, ...content })));
      expect(back.signals, signal.kind).toMatchObject([{ ...expected, source: 'ssf', reason: 'revoked by admin' }]);
    }
  });

  it('workload, agent and SVID signals stay inside nevertrust', () => {
    expect(setForSignal({ kind: 'workload.entry-deleted', ...base, entryId: 'e-1' })).toBeUndefined();
    expect(setForSignal({ kind: 'agent.banned', ...base, agentId: 'a-1' })).toBeUndefined();
    expect(setForSignal({ kind: 'svid.revoked', ...base, serial: '0a1b' })).toBeUndefined();
  });

  it('risk levels', () => {
    expect([0, 0.29, 0.3, 0.69, 0.7, 1].map(riskLevelOf)).toEqual(['LOW', 'LOW', 'MEDIUM', 'MEDIUM', 'HIGH', 'HIGH']);
  });
});

describe('ssfConfiguration', () => {
  it('builds the metadata under the issuer, with push and poll', () => {
    expect(ssfConfiguration({ issuer: 'https://nt.example/' })).toEqual({
      spec_version: '1_0',
      issuer: 'https://nt.example/',
      jwks_uri: 'https://nt.example/ssf/jwks.json',
      delivery_methods_supported: ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936'],
      configuration_endpoint: 'https://nt.example/ssf/stream',
      status_endpoint: 'https://nt.example/ssf/status',
      add_subject_endpoint: 'https://nt.example/ssf/subjects:add',
      remove_subject_endpoint: 'https://nt.example/ssf/subjects:remove',
      verification_endpoint: 'https://nt.example/ssf/verify',
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6749' }],
    });
    expect(ssfConfiguration({ issuer: 'http://localhost:8443', jwksUri: 'https://keys.example/jwks' }).jwks_uri).toBe(
      'https://keys.example/jwks',
    );
  });

  it('refuses a plain-http issuer off localhost, a non-URL, a query', () => {
    for (const issuer of ['http://nt.example', 'nt.example', 'https://nt.example/?a=1']) {
      expect(() => ssfConfiguration({ issuer })).toThrow(expect.objectContaining({ code: 'ERR_SSF_BAD_CONFIG' }));
    }
    expect(() => ssfConfiguration({ issuer: 'https://nt.example', statusEndpoint: 'ftp://x' })).toThrow(
      /statusEndpoint/,
    );
  });
});
