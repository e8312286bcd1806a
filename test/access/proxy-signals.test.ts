/**
 * What a signal takes away at the access proxy (`signalRefusal`, `riskScore`): a revoked session; a
 * person cut off only for sessions begun before the cutoff (a bearer token without `auth_time` counts
 * as before: fail closed); a revoked device; a non-compliant device until a compliant posture
 * collected after the report, and never by an older or a non-compliant one.
 */
import { describe, expect, it } from 'vitest';
import type { DevicePosture, DeviceRecord } from '../../src/api/devices.js';
import type { Signal } from '../../src/api/signals.js';
import type { PersonIdentity } from '../../src/access/identity.js';
import { riskScore, signalRefusal } from '../../src/access/proxy/signals.js';
import { RevocationState } from '../../src/signals/state.js';

const T0 = Date.parse('2026-12-07T06:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const bob: PersonIdentity = { issuer: 'https://idp', sub: 'b-1', user: 'bob', groups: [], amr: [], claims: {} };
const common = { reason: 'test', source: 'admin' as const };

function device(posture: Partial<DevicePosture> | null): DeviceRecord {
  return {
    id: 'laptop-1',
    owner: 'bob',
    name: null,
    spiffeId: 'spiffe://example.org/device/laptop-1',
    enrolledAt: T0 - 1e6,
    certSerial: '01',
    certNotAfter: T0 + 1e9,
    renewedAt: null,
    revokedAt: null,
    revokedReason: null,
    posture: posture as DevicePosture | null,
  };
}

describe('signalRefusal', () => {
  it('refuses a revoked session, and only that one', () => {
    const s = new RevocationState();
    s.apply(1, { kind: 'session.revoked', sessionId: 's-1', at: iso(T0), ...common } as Signal);
    expect(signalRefusal(s, { person: bob, session: { id: 's-1', startedAt: T0 - 1000 } })).toMatchObject({
      error: 'session_revoked',
      signal: { seq: 1, kind: 'session.revoked', subject: 'session:s-1' },
    });
    expect(signalRefusal(s, { person: bob, session: { id: 's-2', startedAt: T0 - 1000 } })).toBeUndefined();
  });

  it('a person cut off: sessions begun before the cutoff die, later ones live; a bearer without auth_time dies', () => {
    const s = new RevocationState();
    s.apply(1, { kind: 'user.disabled', user: { user: 'bob' }, at: iso(T0), ...common } as Signal, T0);
    expect(signalRefusal(s, { person: bob, session: { id: 'a', startedAt: T0 - 1 } })?.error).toBe('user_cut_off');
    expect(signalRefusal(s, { person: bob, session: { id: 'b', startedAt: T0 + 1000 } })).toBeUndefined();
    expect(signalRefusal(s, { person: bob })?.error).toBe('user_cut_off');
    expect(signalRefusal(s, { person: { ...bob, authTime: (T0 + 5000) / 1000 } })).toBeUndefined();
    // A session whose start is unknown counts as before.
    expect(signalRefusal(s, { person: bob, session: { id: 'c' } })?.error).toBe('user_cut_off');
  });

  it('a non-compliant device stands until a compliant posture collected after it', () => {
    const s = new RevocationState();
    s.apply(1, { kind: 'device.non-compliant', deviceId: 'laptop-1', at: iso(T0), ...common } as Signal, T0);
    const older = device({ compliant: true, collected_at: iso(T0 - 1000) });
    const newerBad = device({ compliant: false, collected_at: iso(T0 + 1000) });
    const newerGood = device({ compliant: true, collected_at: iso(T0 + 1000) });
    expect(signalRefusal(s, { person: bob, device: older })?.error).toBe('device_non_compliant');
    expect(signalRefusal(s, { person: bob, device: newerBad })?.error).toBe('device_non_compliant');
    expect(signalRefusal(s, { person: bob, device: device(null) })?.error).toBe('device_non_compliant');
    expect(signalRefusal(s, { person: bob, deviceId: 'laptop-1' })?.error).toBe('device_non_compliant');
    expect(signalRefusal(s, { person: bob, device: newerGood })).toBeUndefined();
  });

  it('device_non_compliant: policy: the signal refuses nothing by itself, a revoked device still is', () => {
    const s = new RevocationState();
    s.apply(1, { kind: 'device.non-compliant', deviceId: 'laptop-1', at: iso(T0), ...common } as Signal, T0);
    const bad = device({ compliant: false, collected_at: iso(T0 + 1000) });
    expect(signalRefusal(s, { person: bob, device: bad }, 'refuse')?.error).toBe('device_non_compliant');
    expect(signalRefusal(s, { person: bob, device: bad }, 'policy')).toBeUndefined();
    expect(signalRefusal(s, { person: bob, deviceId: 'laptop-1' }, 'policy')).toBeUndefined();
    s.apply(2, { kind: 'device.revoked', deviceId: 'laptop-1', at: iso(T0), ...common } as Signal);
    expect(signalRefusal(s, { person: bob, device: bad }, 'policy')?.error).toBe('device_revoked');
  });

  it('a revoked device is refused whatever its posture', () => {
    const s = new RevocationState();
    s.apply(1, { kind: 'device.revoked', deviceId: 'laptop-1', at: iso(T0), ...common } as Signal);
    expect(
      signalRefusal(s, { person: bob, device: device({ compliant: true, collected_at: iso(T0 + 1000) }) }),
    ).toMatchObject({ error: 'device_revoked', signal: { subject: 'device:laptop-1' } });
  });

  it('risk: the higher of the person and the device', () => {
    const s = new RevocationState();
    expect(riskScore(s, bob, 'laptop-1')).toBeUndefined();
    s.apply(1, {
      kind: 'risk.set',
      target: { type: 'user', user: { user: 'bob' } },
      score: 0.3,
      at: iso(T0),
      ...common,
    } as Signal);
    s.apply(2, {
      kind: 'risk.set',
      target: { type: 'device', deviceId: 'laptop-1' },
      score: 0.8,
      at: iso(T0),
      ...common,
    } as Signal);
    expect(riskScore(s, bob)).toBe(0.3);
    expect(riskScore(s, bob, 'laptop-1')).toBe(0.8);
  });
});
