/** RevocationState: the fold of sequenced signals every enforcement point holds. */
import { describe, expect, it } from 'vitest';
import type { Signal } from '../../src/api/signals.js';
import { RevocationState } from '../../src/signals/state.js';

const base = { reason: 'test', source: 'admin' as const };
const iso = (ms: number) => new Date(ms).toISOString();
const T = Date.parse('2026-12-07T05:00:00Z');

describe('RevocationState', () => {
  it('answers each question from the signals applied, and ignores an already-applied seq', () => {
    const s = new RevocationState();
    const sig: Signal[] = [
      { ...base, at: iso(T), kind: 'session.revoked', sessionId: 's1' },
      { ...base, at: iso(T), kind: 'device.revoked', deviceId: 'd1' },
      { ...base, at: iso(T), kind: 'device.lost', deviceId: 'd2' },
      { ...base, at: iso(T), kind: 'device.non-compliant', deviceId: 'd3' },
      { ...base, at: iso(T), kind: 'svid.revoked', serial: '00AbC' },
      { ...base, at: iso(T), kind: 'workload.entry-deleted', entryId: 'e1', spiffeId: 'spiffe://example.org/w' },
      { ...base, at: iso(T), kind: 'agent.banned', agentId: 'spiffe://example.org/spire/agent/x' },
      { ...base, at: iso(T), kind: 'risk.set', target: { type: 'device', deviceId: 'd4' }, score: 0.7 },
    ];
    for (const [i, x] of sig.entries()) expect(s.apply(i + 1, x)).toBe(true);
    expect(s.lastSeq).toBe(8);
    expect(s.apply(3, { ...base, at: iso(T), kind: 'session.revoked', sessionId: 'late' })).toBe(false);
    expect(s.sessionRevoked('late')).toBeUndefined();
    expect(s.sessionRevoked('s1')).toMatchObject({ seq: 1, kind: 'session.revoked', reason: 'test' });
    expect(s.sessionRevoked('s2')).toBeUndefined();
    expect(s.deviceRevoked('d1')?.seq).toBe(2);
    expect(s.deviceRevoked('d2')?.kind).toBe('device.lost');
    expect(s.deviceRevoked('d3')).toBeUndefined();
    expect(s.deviceNonCompliant('d3')?.seq).toBe(4);
    expect(s.svidRevoked('abc')?.seq).toBe(5);
    expect(s.svidRevoked('0ABC')?.seq).toBe(5);
    expect(s.svidRevoked('abcd')).toBeUndefined();
    expect(s.entryDeleted('e1')?.seq).toBe(6);
    expect(s.spiffeIdCut('spiffe://example.org/w')?.seq).toBe(6);
    expect(s.agentBanned('spiffe://example.org/spire/agent/x')?.seq).toBe(7);
    expect(s.risk({ deviceId: 'd4' })).toEqual({ score: 0.7, seq: 8, reason: 'test' });
    expect(s.risk({ user: 'alice' })).toBeUndefined();
  });

  it("a person's cutoff only moves later; by name and by issuer+subject; capped by the received time", () => {
    const s = new RevocationState();
    const user = { user: 'alice', issuer: 'https://idp', sub: 'u-1' };
    s.apply(1, { ...base, at: iso(T), kind: 'user.logged-out', user });
    expect(s.userCutoff('alice')?.cutoffMs).toBe(T);
    expect(s.userCutoff({ issuer: 'https://idp', sub: 'u-1' })?.cutoffMs).toBe(T);
    expect(s.userCutoff({ issuer: 'https://other', sub: 'u-1' })).toBeUndefined();
    // An older event does not move the cutoff back.
    s.apply(2, { ...base, at: iso(T - 10_000), kind: 'user.disabled', user: { user: 'alice' } });
    expect(s.userCutoff('alice')).toMatchObject({ cutoffMs: T, seq: 1 });
    s.apply(3, { ...base, at: iso(T + 5_000), kind: 'user.credentials-changed', user: { user: 'alice' } });
    expect(s.userCutoff('alice')).toMatchObject({ cutoffMs: T + 5_000, seq: 3 });
    expect(s.userSessionCut(['alice'], T + 4_000)?.seq).toBe(3);
    expect(s.userSessionCut(['alice'], T + 6_000)).toBeUndefined();
    // A source's clock in the future: the cutoff is the time the server received it.
    s.apply(4, { ...base, at: iso(T + 3_600_000), kind: 'user.logged-out', user: { user: 'bob' } }, iso(T + 1_000));
    expect(s.userCutoff('bob')?.cutoffMs).toBe(T + 1_000);
  });

  it('risk is the newest score; per person by name and by issuer+subject', () => {
    const s = new RevocationState();
    const target = { type: 'user' as const, user: { user: 'alice', issuer: 'https://idp', sub: 'u-1' } };
    s.apply(1, { ...base, at: iso(T), kind: 'risk.set', target, score: 0.9 });
    s.apply(2, { ...base, at: iso(T), kind: 'risk.set', target, score: 0.2 });
    expect(s.risk({ user: 'alice' })?.score).toBe(0.2);
    expect(s.risk({ user: { issuer: 'https://idp', sub: 'u-1' } })?.score).toBe(0.2);
  });

  it('is bounded: past the cap the subject revoked longest ago is forgotten', () => {
    const s = new RevocationState({ cap: 3 });
    for (let i = 1; i <= 4; i++) s.apply(i, { ...base, at: iso(T), kind: 'session.revoked', sessionId: `s${i}` });
    expect(s.sessionRevoked('s1')).toBeUndefined();
    expect(s.sessionRevoked('s2')?.seq).toBe(2);
    expect(s.sessionRevoked('s4')?.seq).toBe(4);
    expect(() => new RevocationState({ cap: 0 })).toThrow(RangeError);
  });

  it('starts after a given seq', () => {
    const s = new RevocationState({ after: 10 });
    expect(s.apply(10, { ...base, at: iso(T), kind: 'session.revoked', sessionId: 'x' })).toBe(false);
    expect(s.apply(11, { ...base, at: iso(T), kind: 'session.revoked', sessionId: 'x' })).toBe(true);
  });
});
