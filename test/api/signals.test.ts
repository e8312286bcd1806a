import { describe, expect, it } from 'vitest';
import { SIGNAL_KINDS, signalSchema } from '../../src/api/signals.js';

const base = { reason: 'r', source: 'admin', at: '2026-12-07T04:00:00Z' };

describe('signalSchema', () => {
  it('accepts one of each kind', () => {
    const examples = [
      { kind: 'session.revoked', sessionId: 's' },
      { kind: 'user.disabled', user: { user: 'alice' } },
      { kind: 'user.logged-out', user: { user: 'u', issuer: 'https://idp', sub: 'u' } },
      { kind: 'user.credentials-changed', user: { user: 'alice' } },
      { kind: 'device.revoked', deviceId: 'd' },
      { kind: 'device.lost', deviceId: 'd' },
      { kind: 'device.non-compliant', deviceId: 'd' },
      { kind: 'risk.set', target: { type: 'device', deviceId: 'd' }, score: 1 },
      { kind: 'workload.entry-deleted', entryId: 'e' },
      { kind: 'agent.banned', agentId: 'a' },
      { kind: 'svid.revoked', serial: '7F00aa' },
    ];
    expect(examples.map((e) => signalSchema.parse({ ...e, ...base }).kind)).toEqual([...SIGNAL_KINDS]);
  });

  it('refuses bad input', () => {
    const bad = [
      { kind: 'session.granted', sessionId: 's' },
      { kind: 'session.revoked', sessionId: '' },
      { kind: 'session.revoked', sessionId: 's', source: 'someone' },
      { kind: 'session.revoked', sessionId: 's', at: 'yesterday' },
      { kind: 'session.revoked', sessionId: 's', seq: 4 },
      { kind: 'user.disabled', user: { user: 'u', issuer: 'https://idp' } },
      { kind: 'risk.set', target: { type: 'user', user: { user: 'u' } }, score: 1.5 },
      { kind: 'risk.set', target: { type: 'session', id: 's' }, score: 0.5 },
      { kind: 'svid.revoked', serial: 'zz' },
    ];
    for (const b of bad) expect(signalSchema.safeParse({ ...base, ...b }).success, JSON.stringify(b)).toBe(false);
  });
});
