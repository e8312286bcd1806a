/**
 * Identity assertions end to end: a signer registers its key with a real server over mTLS, tokens
 * verify with jose against the served JWKS, every forgery is refused with its own code, rotation
 * keeps tokens in flight verifiable, a failed rotation keeps the current key, and tokens are cached.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer } from 'node:net';
import { calculateJwkThumbprint, createRemoteJWKSet, type JWTPayload, jwtVerify, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import {
  ASSERTION_JWKS_PATH,
  ASSERTION_KEYS_PATH,
  ASSERTION_TYP,
  type AssertionFetch,
  type AssertionSigner,
  assertionKeySet,
  IdentityAssertionError,
  type IdentityAssertionErrorCode,
  PERSON_ASSERTION_TYP,
  startAssertionSigner,
  verifyIdentityAssertion,
} from '../../src/pep/assertion.js';
import { SERVER_ID_PATH } from '../../src/pep/assertion/wire.js';
import { authorizeId, createMtlsFetch, MemorySvidSource } from '../../src/pep/mtls/index.js';
import type { RunningServer } from '../../src/server/index.js';
import { SERVER_SVID_PATH } from '../../src/server/plugins/agent-endpoint.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import { startAssertionServer } from './assertion-server.js';

const TD = 'example.org';
const id = (name: string) => `spiffe://${TD}/ns/payments/sa/${name}`;
const PAYMENTS = id('payment-service');
const GATEWAY = id('api-gateway');

let server: RunningServer;
let ca: ReturnType<typeof caPlugin>;
let agentUrl: string;
const signers: AssertionSigner[] = [];
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ({ server, ca, agentUrl } = await startAssertionServer(TD));
});
afterAll(async () => {
  for (const s of signers) await s.close();
  for (const c of closers) await c();
  await server?.close();
});

function sourceFor(name: string) {
  const m = ca.handle.current().mintX509Svid({ spiffeId: id(name), ttlSeconds: 3600 });
  return new MemorySvidSource(
    {
      spiffeId: id(name),
      certChainPem: certificatesToPem(m.chain),
      privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    },
    [ca.handle.current().bundle()],
  );
}

async function signerFor(name: string, opts: Partial<Parameters<typeof startAssertionSigner>[0]> = {}) {
  const s = await startAssertionSigner({ source: sourceFor(name), server: agentUrl, ...opts });
  signers.push(s);
  return s;
}

const keysOf = (issuer: string) => assertionKeySet(server.url, issuer, { cooldownMs: 0 });
const jwksObject = async (query = '') =>
  (await (await fetch(`${server.url}${ASSERTION_JWKS_PATH}${query}`)).json()) as { keys: Record<string, string>[] };

async function codeOf(p: Promise<unknown>): Promise<IdentityAssertionErrorCode | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof IdentityAssertionError) return e.code;
    throw e;
  }
}

/** A key of our own registered under `name` (the test holds that SVID), to sign arbitrary tokens with it. */
async function registeredKey(name: string): Promise<{ key: KeyObject; kid: string }> {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const jwk = { kty, crv, x, y };
  const f = createMtlsFetch(sourceFor(name), { authorize: authorizeId(`spiffe://${TD}${SERVER_SVID_PATH}`) });
  closers.push(() => f.close());
  const res = await f(`${agentUrl}${ASSERTION_KEYS_PATH}`, {
    method: 'POST',
    body: JSON.stringify({ jwk, expires_at: new Date(Date.now() + 3_600_000).toISOString() }),
  });
  expect(res.status).toBe(201);
  return { key: privateKey, kid: await calculateJwkThumbprint(jwk as { kty: string }, 'sha256') };
}

/** A local port nothing listens on (fetch refuses port 1 as a "bad port" before connecting). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

const claims = (over: JWTPayload = {}): JWTPayload => ({
  iss: PAYMENTS,
  sub: GATEWAY,
  aud: PAYMENTS,
  iat: Math.floor(Date.now() / 1000),
  exp: Math.floor(Date.now() / 1000) + 60,
  nevertrust: { identity: 'x509' },
  ...over,
});
const signWith = (key: KeyObject, kid: string, payload: JWTPayload, header: Record<string, unknown> = {}) =>
  new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: ASSERTION_TYP, ...header }).sign(key);

describe('identity assertions', () => {
  let payments: AssertionSigner;
  beforeAll(async () => {
    payments = await signerFor('payment-service');
  });

  it('the default server ID is the one the agent port presents', () => {
    expect(SERVER_ID_PATH).toBe(SERVER_SVID_PATH);
  });

  it('a token verifies with plain jose against the served JWKS, and with verifyIdentityAssertion', async () => {
    expect(payments.issuer).toBe(PAYMENTS);
    expect(payments.stats().keysRegistered).toBe(1);
    const token = await payments.assertionFor({ kind: 'x509', spiffeId: GATEWAY });

    // Any JWT library: jose against the JWKS URL, as documented.
    const url = new URL(`${ASSERTION_JWKS_PATH}?issuer=${encodeURIComponent(PAYMENTS)}`, server.url);
    const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(url), {
      issuer: PAYMENTS,
      audience: PAYMENTS,
      typ: ASSERTION_TYP,
      algorithms: ['ES256'],
    });
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: payments.stats().kid, typ: ASSERTION_TYP });
    expect(payload).toMatchObject({ iss: PAYMENTS, sub: GATEWAY, aud: PAYMENTS, nevertrust: { identity: 'x509' } });
    expect((payload.exp as number) - (payload.iat as number)).toBe(60);
    expect(payload).not.toHaveProperty('decision_id');

    const v = await verifyIdentityAssertion(token, keysOf(PAYMENTS), { issuer: PAYMENTS });
    expect(v).toMatchObject({ issuer: PAYMENTS, subject: GATEWAY, spiffeId: GATEWAY, identity: 'x509' });
    // A JWKS object works too.
    expect((await verifyIdentityAssertion(token, await jwksObject(), { issuer: PAYMENTS })).subject).toBe(GATEWAY);

    const user = await payments.assertionFor({ kind: 'user-jwt', user: 'alice@example.com' });
    expect(await verifyIdentityAssertion(user, keysOf(PAYMENTS), { issuer: PAYMENTS })).toMatchObject({
      identity: 'user-jwt',
      user: 'alice@example.com',
    });
  });

  it('forgeries are refused, each with its code', async () => {
    const keys = keysOf(PAYMENTS);
    const v = (t: string, o: Partial<Parameters<typeof verifyIdentityAssertion>[2]> = {}) =>
      codeOf(verifyIdentityAssertion(t, keys, { issuer: PAYMENTS, ...o }));
    const token = await payments.assertionFor({ kind: 'jwt-svid', spiffeId: GATEWAY });
    const [h, p, s] = token.split('.') as [string, string, string];

    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: id('x') }));
    expect(await v(`${h}.${forged.toString('base64url')}.${s}`)).toBe('ERR_ASSERTION_BAD_SIGNATURE');

    const none = new UnsecuredJWT(claims()).encode();
    expect(await v(none)).toBe('ERR_ASSERTION_ALG_NOT_ALLOWED');

    // HS256 keyed with the published public key (the classic algorithm-confusion attack).
    const pub = (await jwksObject(`?issuer=${encodeURIComponent(PAYMENTS)}`)).keys[0] as Record<string, string>;
    const hs = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: pub.kid, typ: ASSERTION_TYP })
      .sign(new TextEncoder().encode(JSON.stringify(pub)));
    expect(await v(hs)).toBe('ERR_ASSERTION_ALG_NOT_ALLOWED');

    // Another sidecar's genuine token is not ours.
    const audit = await signerFor('audit-service');
    const theirs = await audit.assertionFor({ kind: 'x509', spiffeId: GATEWAY });
    expect(await v(theirs)).toBe('ERR_ASSERTION_ISSUER_MISMATCH');
    // Another workload's registered key claiming to be this sidecar: not among this issuer's keys,
    // neither from the issuer-filtered JWKS URL nor from the full JWKS as an object.
    const evil = await registeredKey('evil');
    const impostor = await signWith(evil.key, evil.kid, claims());
    expect(await v(impostor)).toBe('ERR_ASSERTION_UNKNOWN_KID');
    expect(await codeOf(verifyIdentityAssertion(impostor, await jwksObject(), { issuer: PAYMENTS }))).toBe(
      'ERR_ASSERTION_UNKNOWN_KID',
    );

    expect(await v(token, { now: new Date(Date.now() + 120_000) })).toBe('ERR_ASSERTION_EXPIRED');
    expect(await v(token, { audience: 'spiffe://example.org/other' })).toBe('ERR_ASSERTION_AUD_MISMATCH');

    // Header rules come before any key: a token signed by anyone shows them.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(await v(await signWith(privateKey, 'k', claims(), { typ: 'JWT' }))).toBe('ERR_ASSERTION_BAD_TYP');
    expect(await v(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: 'k' }).sign(privateKey))).toBe(
      'ERR_ASSERTION_BAD_TYP',
    );
    expect(
      await v(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', typ: ASSERTION_TYP }).sign(privateKey)),
    ).toBe('ERR_ASSERTION_KID_MISSING');
    expect(await v('not.a-token')).toBe('ERR_ASSERTION_MALFORMED');
    expect(await v('e30.e30.e30')).toBe('ERR_ASSERTION_ALG_NOT_ALLOWED');

    // Claim rules, with a key genuinely registered under this sidecar's SPIFFE ID.
    const own = await registeredKey('payment-service');
    const { exp: _exp, ...noExp } = claims();
    expect(await v(await signWith(own.key, own.kid, noExp))).toBe('ERR_ASSERTION_EXP_MISSING');
    expect(await v(await signWith(own.key, own.kid, claims({ nbf: Math.floor(Date.now() / 1000) + 600 })))).toBe(
      'ERR_ASSERTION_NOT_YET_VALID',
    );
    expect(await v(await signWith(own.key, own.kid, claims({ sub: 'alice' })))).toBe('ERR_ASSERTION_SUBJECT_INVALID');
    expect(await v(await signWith(own.key, own.kid, claims({ nevertrust: { identity: 'trust-me' } })))).toBe(
      'ERR_ASSERTION_IDENTITY_INVALID',
    );
    expect(await v(await signWith(own.key, own.kid, claims()))).toBe('ok');

    // The key server is away: the keys are unavailable, never "valid".
    const away = assertionKeySet(`http://127.0.0.1:${await closedPort()}`, PAYMENTS, { timeoutMs: 1000 });
    expect(await codeOf(verifyIdentityAssertion(token, away, { issuer: PAYMENTS }))).toBe(
      'ERR_ASSERTION_KEYS_UNAVAILABLE',
    );
  });

  it('one signature per caller per half lifetime, not per request', async () => {
    const s = await signerFor('cache-service');
    const first = await s.assertionFor({ kind: 'x509', spiffeId: GATEWAY });
    const many = await Promise.all(
      Array.from({ length: 500 }, () => s.assertionFor({ kind: 'x509', spiffeId: GATEWAY })),
    );
    expect(new Set(many)).toEqual(new Set([first]));
    expect(s.stats()).toMatchObject({ signed: 1, cacheHits: 500, cached: 1 });
    await s.assertionFor({ kind: 'xfcc', spiffeId: GATEWAY }); // another kind is another claim set
    await s.assertionFor({ kind: 'x509', spiffeId: id('audit-service') });
    expect(s.stats().signed).toBe(3);
  });

  it('signClaims: a given claim set, our iss and the given typ and aud; never the workload typ; closed refuses', async () => {
    const s = await signerFor('person-proxy', { ttlSeconds: 40 });
    const t = await s.signClaims(
      { sub: 'alice', iss: 'https://forged.example', exp: 9_999_999_999, decision_id: 'd1' },
      { typ: PERSON_ASSERTION_TYP, audience: 'https://wiki.example.test' },
    );
    const { payload, protectedHeader } = await jwtVerify(t, keysOf(id('person-proxy')), {
      issuer: id('person-proxy'),
      audience: 'https://wiki.example.test',
      typ: PERSON_ASSERTION_TYP,
    });
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: s.stats().kid });
    // iss and exp are the signer's, whatever the claims said.
    expect((payload.exp as number) - (payload.iat as number)).toBe(40);
    expect(payload).toMatchObject({ sub: 'alice', decision_id: 'd1' });
    // Not cached: every call signs (a person assertion carries its decision id).
    const before = s.stats().signed;
    await s.signClaims({ sub: 'alice' }, { typ: PERSON_ASSERTION_TYP, audience: 'a' });
    await s.signClaims({ sub: 'alice' }, { typ: PERSON_ASSERTION_TYP, audience: 'a' });
    expect(s.stats().signed).toBe(before + 2);
    expect(await codeOf(s.signClaims({ sub: GATEWAY }, { typ: ASSERTION_TYP, audience: id('person-proxy') }))).toBe(
      'ERR_ASSERTION_CONFIG',
    );
    await s.close();
    expect(await codeOf(s.signClaims({ sub: 'alice' }, { typ: PERSON_ASSERTION_TYP, audience: 'a' }))).toBe(
      'ERR_ASSERTION_CLOSED',
    );
  });

  it('refuses callers it cannot vouch for, and works no more once closed', async () => {
    const s = await signerFor('strict-service');
    expect(await codeOf(s.assertionFor({ kind: 'anonymous' }))).toBe('ERR_ASSERTION_INVALID_CALLER');
    expect(await codeOf(s.assertionFor({ kind: 'x509', spiffeId: 'not-spiffe' }))).toBe('ERR_ASSERTION_INVALID_CALLER');
    expect(await codeOf(s.assertionFor({ kind: 'user-jwt' }))).toBe('ERR_ASSERTION_INVALID_CALLER');
    await s.close();
    expect(await codeOf(s.assertionFor({ kind: 'x509', spiffeId: GATEWAY }))).toBe('ERR_ASSERTION_CLOSED');
  });

  it('rotation: the next key is published before use; tokens of the old key verify until they expire', async () => {
    const s = await signerFor('rotating-service', { ttlSeconds: 3, rotateSeconds: 2, prepublishSeconds: 1 });
    const issuer = id('rotating-service');
    const kid1 = s.stats().kid;
    const t1 = await s.assertionFor({ kind: 'x509', spiffeId: GATEWAY });
    // Prepublished: the next key is in the JWKS while the first still signs.
    await expect
      .poll(async () => (await jwksObject(`?issuer=${encodeURIComponent(issuer)}`)).keys.length, { timeout: 4000 })
      .toBe(2);
    expect(s.stats().kid).toBe(kid1);
    await expect.poll(() => s.stats().kid, { timeout: 4000 }).not.toBe(kid1);
    const t2 = await s.assertionFor({ kind: 'x509', spiffeId: id('other-caller') });
    expect(JSON.parse(Buffer.from(t2.split('.')[0] as string, 'base64url').toString()).kid).toBe(s.stats().kid);
    // The old token still verifies after the switch (a fresh key set: what a new app instance sees).
    expect((await verifyIdentityAssertion(t1, keysOf(issuer), { issuer })).kid).toBe(kid1);
    expect((await verifyIdentityAssertion(t2, keysOf(issuer), { issuer })).subject).toBe(id('other-caller'));
    // Past its exp (and the 5 s leeway) it is refused as expired, while its key is still published.
    const exp1 = JSON.parse(Buffer.from(t1.split('.')[1] as string, 'base64url').toString()).exp as number;
    const later = new Date(exp1 * 1000 + 6000);
    expect(await codeOf(verifyIdentityAssertion(t1, keysOf(issuer), { issuer, now: later }))).toBe(
      'ERR_ASSERTION_EXPIRED',
    );
    expect((await jwksObject(`?issuer=${encodeURIComponent(issuer)}`)).keys.map((k) => k.kid)).toContain(kid1);
  }, 20_000);

  it('a failed rotation keeps the current key and retries; the start fails clearly when nothing registers', async () => {
    const source = sourceFor('flaky-service');
    const real = createMtlsFetch(source, { authorize: authorizeId(`spiffe://${TD}${SERVER_SVID_PATH}`) });
    closers.push(() => real.close());
    let failing = false;
    const flaky: AssertionFetch = async (url, init) => {
      if (failing) throw new Error('server unreachable (test)');
      return real(url, init);
    };
    const logs: string[] = [];
    const s = await startAssertionSigner({
      source,
      server: agentUrl,
      fetch: flaky,
      ttlSeconds: 2,
      rotateSeconds: 1,
      prepublishSeconds: 0,
      log: (m) => logs.push(m),
    });
    signers.push(s);
    const kid1 = s.stats().kid;
    failing = true;
    await expect.poll(() => s.stats().registrationFailures, { timeout: 5000 }).toBeGreaterThan(0);
    expect(s.stats().kid).toBe(kid1);
    const t = await s.assertionFor({ kind: 'x509', spiffeId: GATEWAY });
    const issuer = id('flaky-service');
    expect((await verifyIdentityAssertion(t, keysOf(issuer), { issuer })).kid).toBe(kid1);
    expect(logs.some((m) => m.includes('rotation failed'))).toBe(true);
    failing = false;
    await expect.poll(() => s.stats().kid, { timeout: 8000 }).not.toBe(kid1);

    const nowhere = startAssertionSigner({
      source,
      server: `https://127.0.0.1:${await closedPort()}`,
      startTimeoutMs: 800,
    });
    await expect(nowhere).rejects.toMatchObject({
      code: 'ERR_ASSERTION_REGISTER_TIMEOUT',
      message: expect.stringMatching(/within 800 ms: .*ECONNREFUSED/),
    });
    // A server that does not present the expected SPIFFE ID is never sent a key.
    const wrongServer = startAssertionSigner({
      source,
      server: agentUrl,
      serverId: `spiffe://${TD}/not-the-server`,
      startTimeoutMs: 800,
    });
    await expect(wrongServer).rejects.toMatchObject({
      code: 'ERR_ASSERTION_REGISTER_TIMEOUT',
      message: expect.stringMatching(/not authorized/),
    });
    await expect(startAssertionSigner({ source, server: 'http://127.0.0.1:8081' })).rejects.toMatchObject({
      code: 'ERR_ASSERTION_CONFIG',
    });
    await expect(startAssertionSigner({ source, server: agentUrl, ttlSeconds: 0 })).rejects.toMatchObject({
      code: 'ERR_ASSERTION_CONFIG',
    });
  }, 30_000);
});
