import { describe, expect, it } from 'vitest';
import { personClaims } from '../../src/access/proxy/person-assertion.js';
import { ISSUER, person } from './fixed-authenticator.js';

describe('person assertion claims', () => {
  it('names the user, the last second factor and the bound device; never a token', () => {
    const bob = { ...person('bob', ['admins'], ['pwd', 'otp']), user: 'bob' };
    const claims = personClaims({ kind: 'session', person: bob, sessionId: 'sid-1' }, 'dec-1', 'dev-7');
    expect(claims).toEqual({
      sub: 'bob',
      user: 'bob',
      email: 'bob@example.test',
      groups: ['admins'],
      amr: ['pwd', 'otp'],
      auth_time: 1_780_000_000,
      mfa_at: 1_780_000_000,
      sid: 'sid-1',
      device: 'dev-7',
      idp: ISSUER,
      decision_id: 'dec-1',
    });
  });

  it('omits mfa_at without a second factor, device without a device, sid for a bearer caller', () => {
    const claims = personClaims({ kind: 'bearer', person: person('eve', []) }, 'dec-2');
    expect(claims.user).toBe('eve@example.test');
    for (const absent of ['mfa_at', 'device', 'sid']) expect(claims).not.toHaveProperty(absent);
  });
});
