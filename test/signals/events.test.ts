import { beforeAll, describe, expect, it } from 'vitest';
import { CAEP, RISC, signalsFromSet } from '../../src/signals/ssf/events.js';
import { verifySet } from '../../src/signals/ssf/set.js';
import { createTestTransmitter, receiverOptions, type TestTransmitter } from './transmitter.js';

let tx: TestTransmitter;
beforeAll(async () => {
  tx = await createTestTransmitter();
});

const email = { format: 'email', email: 'alice@example.com' };
const issSub = { format: 'iss_sub', iss: 'https://idp.test.example', sub: 'u-7' };
const opaque = (id: string) => ({ format: 'opaque', id });

/** Receives one SET through the real verifier and maps it. */
async function receive(sub_id: unknown, events: Record<string, Record<string, unknown>>) {
  return signalsFromSet(
    await verifySet(await tx.mint({ sub_id, events, jti: `j-${Math.random()}` }), receiverOptions(tx)),
  );
}

describe('signalsFromSet', () => {
  it('session-revoked: an opaque id is a session, a person ends all their sessions', async () => {
    expect((await receive(opaque('s-1'), { [CAEP.sessionRevoked]: {} })).signals).toMatchObject([
      { kind: 'session.revoked', sessionId: 's-1' },
    ]);
    expect((await receive(issSub, { [CAEP.sessionRevoked]: {} })).signals).toMatchObject([
      { kind: 'user.logged-out', user: { user: 'u-7', issuer: 'https://idp.test.example', sub: 'u-7' } },
    ]);
  });

  it('carries the reason, the event time and the SET as origin', async () => {
    const r = await receive(email, {
      [RISC.accountDisabled]: {
        reason_admin: { de: 'gesperrt', en: 'disabled by HR' },
        event_timestamp: 1_700_000_000,
      },
    });
    expect(r.signals[0]).toMatchObject({
      reason: 'disabled by HR',
      source: 'ssf',
      at: new Date(1_700_000_000_000).toISOString(),
      origin: expect.stringMatching(/^ssf:https:\/\/idp\.test\.example#j-/),
    });
    const plain = await receive(email, { [RISC.accountPurged]: {} });
    expect(plain.signals[0]).toMatchObject({
      kind: 'user.disabled',
      reason: 'account-purged from https://idp.test.example',
    });
  });

  it('credential-change and credential-compromise change credentials; a created credential takes nothing', async () => {
    expect(
      (await receive(email, { [CAEP.credentialChange]: { credential_type: 'password', change_type: 'update' } }))
        .signals,
    ).toMatchObject([{ kind: 'user.credentials-changed', user: { user: 'alice@example.com' } }]);
    expect(
      (await receive(email, { [RISC.credentialCompromise]: { credential_type: 'password' } })).signals,
    ).toMatchObject([{ kind: 'user.credentials-changed' }]);
    const created = await receive(email, {
      [CAEP.credentialChange]: { credential_type: 'fido2-roaming', change_type: 'create' },
    });
    expect(created.signals).toEqual([]);
    expect(created.ignored).toEqual([{ type: CAEP.credentialChange, reason: expect.stringContaining('created') }]);
  });

  it('device-compliance-change: compliant again is reported, not acted on; a device must be opaque', async () => {
    const back = await receive(opaque('dev-1'), { [CAEP.deviceComplianceChange]: { current_status: 'compliant' } });
    expect(back.signals).toEqual([]);
    expect(back.ignored[0]?.reason).toContain('posture check');
    const byEmail = await receive(email, { [CAEP.deviceComplianceChange]: { current_status: 'not-compliant' } });
    expect(byEmail.signals).toEqual([]);
  });

  it('assurance-level-change: a decrease or an unstated direction ends sessions, an increase does not', async () => {
    expect(
      (await receive(opaque('s-9'), { [CAEP.assuranceLevelChange]: { change_direction: 'decrease' } })).signals,
    ).toMatchObject([{ kind: 'session.revoked', sessionId: 's-9' }]);
    expect(
      (await receive(email, { [CAEP.assuranceLevelChange]: { current_level: 'nist-aal1' } })).signals,
    ).toMatchObject([{ kind: 'user.logged-out' }]);
    expect((await receive(email, { [CAEP.assuranceLevelChange]: { change_direction: 'increase' } })).signals).toEqual(
      [],
    );
  });

  it('token-claims-change ends the session so the person signs in with the new claims', async () => {
    expect(
      (await receive(opaque('s-3'), { [CAEP.tokenClaimsChange]: { claims: { role: 'guest' } } })).signals,
    ).toMatchObject([{ kind: 'session.revoked', sessionId: 's-3' }]);
  });

  it('risk-level-change sets a score on a person or (opaque, principal DEVICE) a device', async () => {
    expect(
      (await receive(email, { [CAEP.riskLevelChange]: { principal: 'USER', current_level: 'HIGH' } })).signals,
    ).toMatchObject([{ kind: 'risk.set', target: { type: 'user', user: { user: 'alice@example.com' } }, score: 0.9 }]);
    expect(
      (await receive(opaque('d-2'), { [CAEP.riskLevelChange]: { principal: 'DEVICE', current_level: 'low' } })).signals,
    ).toMatchObject([{ kind: 'risk.set', target: { type: 'device', deviceId: 'd-2' }, score: 0.1 }]);
    expect(
      (await receive(opaque('x'), { [CAEP.riskLevelChange]: { principal: 'USER', current_level: 'HIGH' } })).signals,
    ).toEqual([]);
    expect((await receive(email, { [CAEP.riskLevelChange]: { current_level: 'extreme' } })).ignored).toHaveLength(1);
  });

  it('RISC account events with an opaque subject are reported, not guessed at', async () => {
    const r = await receive(opaque('acct-1'), { [RISC.accountDisabled]: {} });
    expect(r.signals).toEqual([]);
    expect(r.ignored[0]?.reason).toContain('opaque');
  });

  it("an unknown event type is ignored and reported, and the SET's other events still count", async () => {
    const r = await receive(opaque('s-5'), {
      'https://schemas.openid.net/secevent/caep/event-type/session-established': {},
      'https://example.com/events/weird': { anything: true },
      [CAEP.sessionRevoked]: {},
    });
    expect(r.signals).toMatchObject([{ kind: 'session.revoked', sessionId: 's-5' }]);
    expect(r.ignored.map((i) => i.type)).toEqual([
      'https://schemas.openid.net/secevent/caep/event-type/session-established',
      'https://example.com/events/weird',
    ]);
  });
});
