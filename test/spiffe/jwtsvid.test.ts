import { createSecretKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  JwtSvidError,
  mintJwtSvid,
  parseTrustDomain,
  TrustBundle,
  validateJwtSvid,
  bundleSet,
} from '../../src/spiffe/index.js';

const ID = 'spiffe://example.org/ns/prod/sa/api';
const td = parseTrustDomain('example.org');
let ec: { publicKey: KeyObject; privateKey: KeyObject };
let rsa: { publicKey: KeyObject; privateKey: KeyObject };
let outsider: { publicKey: KeyObject; privateKey: KeyObject };
let bundle: TrustBundle;

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!(e instanceof JwtSvidError)) throw e;
    return e.code;
  }
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

beforeAll(() => {
  ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  outsider = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  bundle = new TrustBundle({ trustDomain: td, jwtAuthorities: { k1: ec.publicKey, k2: rsa.publicKey } });
});

describe('JWT-SVID mint and validate', () => {
  it('round-trips ES256 and RS256/PS256', async () => {
    const t = await mintJwtSvid({ spiffeId: ID, audience: ['payments'], key: ec.privateKey, kid: 'k1' });
    const v = await validateJwtSvid(t, bundle, 'payments');
    expect(v.spiffeId.toString()).toBe(ID);
    expect(v.audience).toEqual(['payments']);
    expect(v.kid).toBe('k1');
    expect(v.expiresAt.getTime()).toBeGreaterThan(Date.now() + 250_000);
    for (const alg of ['RS256', 'PS256'] as const) {
      const r = await mintJwtSvid({ spiffeId: ID, audience: 'payments', key: rsa.privateKey, kid: 'k2', alg });
      expect((await validateJwtSvid(r, bundle, 'payments')).spiffeId.toString()).toBe(ID);
    }
  });

  it('accepts typ JOSE and absent typ, and a string aud', async () => {
    for (const typ of ['JOSE', undefined]) {
      const header = typ ? { alg: 'ES256', kid: 'k1', typ } : { alg: 'ES256', kid: 'k1' };
      const t = await new SignJWT({ sub: ID, aud: 'payments', exp: now() + 60 })
        .setProtectedHeader(header)
        .sign(ec.privateKey);
      expect((await validateJwtSvid(t, bundle, 'payments')).spiffeId.toString()).toBe(ID);
    }
  });

  it('caps exp at notAfter and refuses an empty audience', async () => {
    const notAfter = new Date(Date.now() + 10_000);
    const t = await mintJwtSvid({ spiffeId: ID, audience: ['a'], key: ec.privateKey, kid: 'k1', notAfter });
    expect((await validateJwtSvid(t, bundle, 'a')).expiresAt.getTime()).toBeLessThanOrEqual(notAfter.getTime());
    expect(await codeOf(mintJwtSvid({ spiffeId: ID, audience: [], key: ec.privateKey, kid: 'k1' }))).toBe(
      'ERR_JWTSVID_INVALID_REQUEST',
    );
  });
});

describe('validateJwtSvid rejects, each with its own code', () => {
  it('alg none', async () => {
    const t = `${b64({ alg: 'none', kid: 'k1' })}.${b64({ sub: ID, aud: ['payments'], exp: now() + 60 })}.`;
    expect(await codeOf(validateJwtSvid(t, bundle, 'payments'))).toBe('ERR_JWTSVID_ALG_NOT_ALLOWED');
  });

  it('HS256, before any key lookup (even with a kid the bundle knows)', async () => {
    const secret = createSecretKey(Buffer.alloc(32, 7));
    const t = await new SignJWT({ sub: ID, aud: ['payments'], exp: now() + 60 })
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .sign(secret);
    expect(await codeOf(validateJwtSvid(t, bundle, 'payments'))).toBe('ERR_JWTSVID_ALG_NOT_ALLOWED');
  });

  it('EdDSA (not in the JWT-SVID list)', async () => {
    const ed = generateKeyPairSync('ed25519');
    const t = await new SignJWT({ sub: ID, aud: ['p'], exp: now() + 60 })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .sign(ed.privateKey);
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_ALG_NOT_ALLOWED');
  });

  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}, key = ec.privateKey) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT', ...header }).sign(key);

  it('missing aud', async () => {
    expect(await codeOf(validateJwtSvid(await sign({ sub: ID, exp: now() + 60 }), bundle, 'payments'))).toBe(
      'ERR_JWTSVID_AUD_MISSING',
    );
    expect(await codeOf(validateJwtSvid(await sign({ sub: ID, aud: [], exp: now() + 60 }), bundle, 'payments'))).toBe(
      'ERR_JWTSVID_AUD_MISSING',
    );
  });

  it('wrong aud', async () => {
    const t = await sign({ sub: ID, aud: ['billing'], exp: now() + 60 });
    expect(await codeOf(validateJwtSvid(t, bundle, 'payments'))).toBe('ERR_JWTSVID_AUD_MISMATCH');
  });

  it('expired, beyond the leeway; accepted within it', async () => {
    const t = await sign({ sub: ID, aud: ['p'], exp: now() - 120 });
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_EXPIRED');
    const recent = await sign({ sub: ID, aud: ['p'], exp: now() - 5 });
    expect((await validateJwtSvid(recent, bundle, 'p')).spiffeId.toString()).toBe(ID);
    expect(await codeOf(validateJwtSvid(recent, bundle, 'p', { leewaySeconds: 0 }))).toBe('ERR_JWTSVID_EXPIRED');
  });

  it('missing exp', async () => {
    expect(await codeOf(validateJwtSvid(await sign({ sub: ID, aud: ['p'] }), bundle, 'p'))).toBe(
      'ERR_JWTSVID_EXP_MISSING',
    );
  });

  it('nbf in the future', async () => {
    const t = await sign({ sub: ID, aud: ['p'], exp: now() + 600, nbf: now() + 300 });
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_NOT_YET_VALID');
  });

  it('unknown kid and missing kid', async () => {
    expect(
      await codeOf(validateJwtSvid(await sign({ sub: ID, aud: ['p'], exp: now() + 60 }, { kid: 'nope' }), bundle, 'p')),
    ).toBe('ERR_JWTSVID_UNKNOWN_KID');
    const noKid = await new SignJWT({ sub: ID, aud: ['p'], exp: now() + 60 })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(ec.privateKey);
    expect(await codeOf(validateJwtSvid(noKid, bundle, 'p'))).toBe('ERR_JWTSVID_KID_MISSING');
  });

  it('bad typ', async () => {
    const t = await sign({ sub: ID, aud: ['p'], exp: now() + 60 }, { typ: 'at+jwt' });
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_BAD_TYP');
  });

  it('a token signed by a key outside the bundle', async () => {
    const t = await sign({ sub: ID, aud: ['p'], exp: now() + 60 }, {}, outsider.privateKey);
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_BAD_SIGNATURE');
  });

  it('a tampered payload', async () => {
    const t = await sign({ sub: ID, aud: ['p'], exp: now() + 60 });
    const [h, , s] = t.split('.');
    const forged = `${h}.${b64({ sub: 'spiffe://example.org/admin', aud: ['p'], exp: now() + 60 })}.${s}`;
    expect(await codeOf(validateJwtSvid(forged, bundle, 'p'))).toBe('ERR_JWTSVID_BAD_SIGNATURE');
  });

  it('an alg that does not fit the key (RS256 header, EC key in bundle)', async () => {
    const t = await new SignJWT({ sub: ID, aud: ['p'], exp: now() + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .sign(rsa.privateKey);
    expect(await codeOf(validateJwtSvid(t, bundle, 'p'))).toBe('ERR_JWTSVID_BAD_SIGNATURE');
  });

  it('sub missing, sub not a SPIFFE ID, sub of a trust domain without a bundle', async () => {
    expect(await codeOf(validateJwtSvid(await sign({ aud: ['p'], exp: now() + 60 }), bundle, 'p'))).toBe(
      'ERR_JWTSVID_SUBJECT_MISSING',
    );
    expect(await codeOf(validateJwtSvid(await sign({ sub: 'alice', aud: ['p'], exp: now() + 60 }), bundle, 'p'))).toBe(
      'ERR_JWTSVID_SUBJECT_INVALID',
    );
    const other = await sign({ sub: 'spiffe://other.org/x', aud: ['p'], exp: now() + 60 });
    expect(await codeOf(validateJwtSvid(other, bundleSet(bundle), 'p'))).toBe('ERR_JWTSVID_NO_BUNDLE');
  });

  it('garbage', async () => {
    expect(await codeOf(validateJwtSvid('abc', bundle, 'p'))).toBe('ERR_JWTSVID_MALFORMED');
    expect(await codeOf(validateJwtSvid('a.b.c', bundle, 'p'))).toBe('ERR_JWTSVID_MALFORMED');
  });
});

describe('JWT-SVID claim conformance (hostile claims, validly signed)', () => {
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' }).sign(ec.privateKey);
  const base = () => ({ sub: ID, aud: ['p'], exp: now() + 60 });

  it.each([
    ['nbf as a string', { nbf: String(now() - 10) }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['exp as a string', { exp: String(now() + 60) }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['exp of 1e300', { exp: 1e300 }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['exp past year 9999', { exp: 253_402_300_800 }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['negative iat', { iat: -1 }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['iat as an object', { iat: { $date: 1 } }, 'ERR_JWTSVID_BAD_NUMERIC_DATE'],
    ['iat a year ahead', { iat: now() + 365 * 86_400 }, 'ERR_JWTSVID_ISSUED_IN_FUTURE'],
    ['iat beyond the skew', { iat: now() + 120 }, 'ERR_JWTSVID_ISSUED_IN_FUTURE'],
    ['a trust-domain-only sub', { sub: 'spiffe://example.org' }, 'ERR_JWTSVID_SUBJECT_INVALID'],
    ['an uppercase-scheme sub', { sub: 'SPIFFE://example.org/ns/prod/sa/api' }, 'ERR_JWTSVID_SUBJECT_INVALID'],
  ])('%s is refused', async (_what, extra, code) => {
    expect(await codeOf(validateJwtSvid(await sign({ ...base(), ...extra }), bundle, 'p'))).toBe(code);
  });

  it('iat within the skew, now and in the past are fine', async () => {
    for (const iat of [now() + 10, now(), now() - 3600]) {
      const v = await validateJwtSvid(await sign({ ...base(), iat }), bundle, 'p');
      expect(v.spiffeId.toString()).toBe(ID);
    }
  });

  it('with trustDomain, the subject must be in it (a bundle belongs to one trust domain)', async () => {
    const t = await sign(base());
    expect((await validateJwtSvid(t, bundle, 'p', { trustDomain: td })).spiffeId.toString()).toBe(ID);
    expect(await codeOf(validateJwtSvid(t, bundle, 'p', { trustDomain: parseTrustDomain('other.org') }))).toBe(
      'ERR_JWTSVID_TRUST_DOMAIN_MISMATCH',
    );
  });

  it('refuses to mint a JWT-SVID for a trust-domain ID', async () => {
    await expect(
      mintJwtSvid({ spiffeId: 'spiffe://example.org', audience: 'p', key: ec.privateKey, kid: 'k1' }),
    ).rejects.toThrow(/path/);
  });
});
