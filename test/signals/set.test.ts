import { createHmac, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { SsfError, type SsfErrorCode } from '../../src/signals/ssf/errors.js';
import { CAEP, RISC, signalsFromSet } from '../../src/signals/ssf/events.js';
import { createMemorySeenSet, SET_MAX_BYTES, verifySet } from '../../src/signals/ssf/set.js';
import { createTestTransmitter, RX_AUDIENCE, receiverOptions, type TestTransmitter, TX_ISSUER } from './transmitter.js';

let tx: TestTransmitter;
beforeAll(async () => {
  tx = await createTestTransmitter();
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

async function refused(jwt: unknown, code: SsfErrorCode, err: string, opts = receiverOptions(tx)): Promise<SsfError> {
  const e = await verifySet(jwt, opts).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(SsfError);
  const s = e as SsfError;
  expect({ code: s.code, err: s.err }).toEqual({ code, err });
  return s;
}

describe('verifySet accepts', () => {
  it('a CAEP session-revoked for an opaque session id', async () => {
    const set = await verifySet(await tx.mint(), receiverOptions(tx));
    expect(set.issuer).toBe(TX_ISSUER);
    expect(set.kid).toBe('tx-1');
    expect(set.events).toEqual([
      { type: CAEP.sessionRevoked, subject: { format: 'opaque', id: 'sess-1' }, payload: {} },
    ]);
    expect(signalsFromSet(set).signals).toMatchObject([
      { kind: 'session.revoked', sessionId: 'sess-1', source: 'ssf' },
    ]);
  });

  it('a RISC account-disabled for an email subject', async () => {
    const jwt = await tx.mint({
      sub_id: { format: 'email', email: 'alice@example.com' },
      events: { [RISC.accountDisabled]: { reason: 'hijacking' } },
    });
    const { signals, ignored } = signalsFromSet(await verifySet(jwt, receiverOptions(tx)));
    expect(ignored).toEqual([]);
    expect(signals).toMatchObject([{ kind: 'user.disabled', user: { user: 'alice@example.com' } }]);
  });

  it('a CAEP device-compliance-change to not-compliant', async () => {
    const jwt = await tx.mint({
      sub_id: { format: 'opaque', id: 'dev-42' },
      events: { [CAEP.deviceComplianceChange]: { previous_status: 'compliant', current_status: 'not-compliant' } },
    });
    const { signals } = signalsFromSet(await verifySet(jwt, receiverOptions(tx)));
    expect(signals).toMatchObject([{ kind: 'device.non-compliant', deviceId: 'dev-42' }]);
  });

  it('an aud array containing us, a trailing newline, and exp in the future', async () => {
    const jwt = await tx.mint({ aud: ['https://other.example', RX_AUDIENCE], exp: now() + 60 });
    await expect(verifySet(`${jwt}\n`, receiverOptions(tx))).resolves.toMatchObject({ issuer: TX_ISSUER });
  });

  it('the legacy subject inside a CAEP draft event, and an equal one beside sub_id', async () => {
    const subject = { format: 'iss_sub', iss: 'https://idp.test.example', sub: 'u-7' };
    const legacy = await tx.mint({ sub_id: undefined, events: { [CAEP.sessionRevoked]: { subject } } });
    const set = await verifySet(legacy, receiverOptions(tx));
    expect(set.events[0]?.subject).toEqual(subject);
    const both = await tx.mint({ sub_id: subject, events: { [CAEP.sessionRevoked]: { subject } } });
    await expect(verifySet(both, receiverOptions(tx))).resolves.toBeDefined();
  });
});

describe('verifySet refuses', () => {
  it('a SET signed by another key under the same kid', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await refused(await tx.mint({}, {}, other), 'ERR_SSF_BAD_SIGNATURE', 'invalid_key');
  });

  it('a tampered payload', async () => {
    const [h, p, s] = (await tx.mint()).split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.sub_id.id = 'someone-elses-session';
    await refused(`${h}.${b64(claims)}.${s}`, 'ERR_SSF_BAD_SIGNATURE', 'invalid_key');
  });

  it('alg none', async () => {
    const [, p] = (await tx.mint()).split('.') as [string, string];
    await refused(`${b64({ alg: 'none', typ: 'secevent+jwt' })}.${p}.`, 'ERR_SSF_ALG_NOT_ALLOWED', 'invalid_key');
  });

  it('HS256 with the public key as the HMAC secret', async () => {
    const [, p] = (await tx.mint()).split('.') as [string, string];
    const h = b64({ alg: 'HS256', typ: 'secevent+jwt', kid: 'tx-1' });
    const secret = tx.publicKey.export({ type: 'spki', format: 'pem' });
    const sig = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
    // Refused on the header: the key set is never consulted.
    let lookups = 0;
    const opts = receiverOptions(tx, {
      jwks: (header, token) => {
        lookups++;
        return tx.jwks(header, token);
      },
    });
    await refused(`${h}.${p}.${sig}`, 'ERR_SSF_ALG_NOT_ALLOWED', 'invalid_key', opts);
    expect(lookups).toBe(0);
  });

  it('another alg than the one the key is published for (PS256 under an RS256 key)', async () => {
    await refused(await tx.mint({}, { alg: 'PS256' }), 'ERR_SSF_UNKNOWN_KEY', 'invalid_key');
  });

  it('a kid the transmitter does not publish', async () => {
    await refused(await tx.mint({}, { kid: 'tx-2' }), 'ERR_SSF_UNKNOWN_KEY', 'invalid_key');
  });

  it('a wrong aud', async () => {
    await refused(await tx.mint({ aud: 'https://someone-else.example' }), 'ERR_SSF_BAD_AUDIENCE', 'invalid_audience');
  });

  it('a wrong iss', async () => {
    await refused(await tx.mint({ iss: 'https://evil.example' }), 'ERR_SSF_BAD_ISSUER', 'invalid_issuer');
  });

  it('a replayed jti, and a forged SET does not spend a jti', async () => {
    const opts = receiverOptions(tx);
    const jwt = await tx.mint({ jti: 'j-1' });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await refused(await tx.mint({ jti: 'j-1' }, {}, other), 'ERR_SSF_BAD_SIGNATURE', 'invalid_key', opts);
    await refused(await tx.mint({ jti: 'j-1', aud: 'x' }), 'ERR_SSF_BAD_AUDIENCE', 'invalid_audience', opts);
    await verifySet(jwt, opts);
    await refused(jwt, 'ERR_SSF_REPLAYED', 'invalid_request', opts);
    await refused(await tx.mint({ jti: 'j-1' }), 'ERR_SSF_REPLAYED', 'invalid_request', opts);
  });

  it('a replay a racing store reports from add()', async () => {
    const opts = receiverOptions(tx, { seen: { has: () => false, add: async () => false } });
    await refused(await tx.mint(), 'ERR_SSF_REPLAYED', 'invalid_request', opts);
  });

  it('a stale iat', async () => {
    await refused(await tx.mint({ iat: now() - 301 }), 'ERR_SSF_IAT_STALE', 'invalid_request');
  });

  it('an iat in the future beyond the skew', async () => {
    await refused(await tx.mint({ iat: now() + 120 }), 'ERR_SSF_IAT_FUTURE', 'invalid_request');
    await expect(verifySet(await tx.mint({ iat: now() + 10 }), receiverOptions(tx))).resolves.toBeDefined();
  });

  it('an expired exp, when present', async () => {
    await refused(await tx.mint({ exp: now() - 60 }), 'ERR_SSF_EXPIRED', 'invalid_request');
  });

  it('a missing jti, iat or events', async () => {
    await refused(await tx.mint({ jti: undefined }), 'ERR_SSF_JTI_MISSING', 'invalid_request');
    await refused(await tx.mint({ iat: undefined }), 'ERR_SSF_IAT_MISSING', 'invalid_request');
    await refused(await tx.mint({ events: undefined }), 'ERR_SSF_EVENTS_INVALID', 'invalid_request');
  });

  it('an iat that is not a number, and a jti that is not a non-empty string', async () => {
    await refused(await tx.mint({ iat: String(now()) }), 'ERR_SSF_MALFORMED', 'invalid_request');
    await refused(await tx.mint({ jti: 42 }), 'ERR_SSF_JTI_MISSING', 'invalid_request');
    await refused(await tx.mint({ jti: '' }), 'ERR_SSF_JTI_MISSING', 'invalid_request');
  });

  it('events that are empty, not an object, or not keyed by URIs', async () => {
    await refused(await tx.mint({ events: {} }), 'ERR_SSF_EVENTS_INVALID', 'invalid_request');
    await refused(await tx.mint({ events: [] }), 'ERR_SSF_EVENTS_INVALID', 'invalid_request');
    await refused(await tx.mint({ events: { 'session-revoked': {} } }), 'ERR_SSF_EVENTS_INVALID', 'invalid_request');
    await refused(
      await tx.mint({ events: { [CAEP.sessionRevoked]: 'yes' } }),
      'ERR_SSF_EVENTS_INVALID',
      'invalid_request',
    );
  });

  it('a wrong or missing typ (an ID token or access token is not a SET)', async () => {
    await refused(await tx.mint({}, { typ: 'JWT' }), 'ERR_SSF_BAD_TYP', 'invalid_request');
    await refused(await tx.mint({}, { typ: undefined }), 'ERR_SSF_BAD_TYP', 'invalid_request');
  });

  it('an unknown subject format, and a subject in neither place', async () => {
    for (const sub_id of [
      { format: 'phone_number', phone_number: '+12065550100' },
      { format: 'complex', user: { format: 'email', email: 'a@example.com' } },
      { format: 'email', email: 'not-an-address' },
      { format: 'opaque' },
      'sess-1',
    ]) {
      await refused(await tx.mint({ sub_id }), 'ERR_SSF_SUBJECT_FORMAT', 'invalid_request');
    }
    await refused(await tx.mint({ sub_id: undefined }), 'ERR_SSF_SUBJECT_MISSING', 'invalid_request');
  });

  it('a legacy event subject that differs from sub_id', async () => {
    const jwt = await tx.mint({
      sub_id: { format: 'opaque', id: 'sess-1' },
      events: { [CAEP.sessionRevoked]: { subject: { format: 'opaque', id: 'sess-2' } } },
    });
    await refused(jwt, 'ERR_SSF_SUBJECT_CONFLICT', 'invalid_request');
  });

  it('a token over 64 KiB, before any parsing', async () => {
    const jwt = await tx.mint({ padding: 'x'.repeat(SET_MAX_BYTES) });
    const e = await refused(jwt, 'ERR_SSF_TOO_LARGE', 'invalid_request');
    expect(e.status).toBe(413);
    // Just under the cap is still read (the cap bounds work; it does not judge content).
    await expect(verifySet(await tx.mint({ padding: 'x'.repeat(40_000) }), receiverOptions(tx))).resolves.toBeDefined();
  });

  it('garbage', async () => {
    await refused('not.a.jwt', 'ERR_SSF_MALFORMED', 'invalid_request');
    await refused('', 'ERR_SSF_MALFORMED', 'invalid_request');
    await refused(42, 'ERR_SSF_MALFORMED', 'invalid_request');
    await refused(Buffer.from(await tx.mint()), 'ERR_SSF_MALFORMED', 'invalid_request');
  });

  it('when the key set cannot be fetched: 503, so a transmitter retries', async () => {
    const opts = receiverOptions(tx, {
      jwks: async () => {
        throw new Error('connect ECONNREFUSED');
      },
    });
    const e = await refused(await tx.mint(), 'ERR_SSF_KEYS_UNAVAILABLE', 'invalid_key', opts);
    expect(e.status).toBe(503);
    expect(e.toPushError()).toEqual({ err: 'invalid_key', description: e.message });
  });
});

describe('createMemorySeenSet', () => {
  it('forgets a jti after its until, and refuses new ones when full of live entries', () => {
    let t = 1_000;
    const seen = createMemorySeenSet({ maxEntries: 2, now: () => t });
    expect(seen.add('a', new Date(2_000))).toBe(true);
    expect(seen.add('a', new Date(2_000))).toBe(false);
    expect(seen.has('a')).toBe(true);
    seen.add('b', new Date(5_000));
    expect(() => seen.add('c', new Date(5_000))).toThrow(
      expect.objectContaining({ code: 'ERR_SSF_REPLAY_CACHE_FULL' }),
    );
    t = 3_000;
    expect(seen.has('a')).toBe(false);
    expect(seen.add('c', new Date(5_000))).toBe(true);
    expect(seen.size).toBe(2);
  });
});
