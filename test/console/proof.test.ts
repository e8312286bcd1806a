/**
 * The console's in-browser proof check (src/console/web/proof.ts, WebCrypto only) against a real
 * audit log on SQLite: an event the log holds verifies against its signed checkpoint, and every
 * forgery a compromised server or a man in the middle could hand the browser is refused — a changed
 * event, a changed path, a changed checkpoint, another key, a proof for another leaf.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditEventInput,
  AuditLog,
  canonicalJson as serverCanonicalJson,
  type InclusionProofResult,
  normalizeEvent,
} from '../../src/audit/index.js';
import { canonicalJson, checkInclusion, rootFromPath } from '../../src/console/web/proof.js';
import type { AuditEvent } from '../../src/console/web/wire.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

function ev(i: number): AuditEventInput {
  return {
    kind: 'access.decision',
    time: 1_767_225_600_000 + i * 1000,
    decision_id: `d-${i}`,
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 5}`, ip: '10.0.0.1', user: `ünïcode-${i}` },
    target: { service: `target-${i % 3}`, method: 'GET', path: `/v1/items/${i}?q="x"\\y` },
    outcome: i % 4 === 0 ? 'deny' : 'allow',
    reason: 'rule matched — “quoted” \u2028 line',
    policy: 'p',
    rule: 'r',
    latency_us: 3.5,
    details: { nested: { b: [1, null, true], a: 'z' }, version: 'sha256:ab', emoji: '🔒' },
  };
}

/** What the admin API sends: the stored event and its proof, through JSON. */
async function wire(log: AuditLog, seq: number) {
  const event = JSON.parse(JSON.stringify(await log.get(seq))) as AuditEvent;
  const inclusion = JSON.parse(JSON.stringify(await log.inclusionProof(seq))) as InclusionProofResult;
  return { event, inclusion };
}

describe('the console checks inclusion proofs in the browser', () => {
  const stores: Store[] = [];
  const logs: AuditLog[] = [];
  let log: AuditLog;
  let other: AuditLog;

  async function openLog(n: number): Promise<AuditLog> {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    stores.push(store);
    const l = await AuditLog.open(store, { dataDir, checkpointEvery: 1000, checkpointIntervalMs: 0 });
    logs.push(l);
    await l.append(Array.from({ length: n }, (_, i) => normalizeEvent(ev(i))));
    await l.checkpoint();
    return l;
  }

  beforeAll(async () => {
    log = await openLog(77);
    other = await openLog(77);
  });
  afterAll(async () => {
    for (const l of logs) await l.close();
    for (const s of stores) await s.close();
  });

  it('hashes events exactly as the log does (sorted keys, escapes, unicode, nested details)', async () => {
    for (const seq of [0, 1, 40, 76]) {
      const { event } = await wire(log, seq);
      expect(canonicalJson(event)).toBe(serverCanonicalJson(event));
    }
  });

  it('verifies every leaf position of a 77-leaf tree against the signed checkpoint', async () => {
    for (const seq of [0, 1, 2, 31, 32, 63, 64, 75, 76]) {
      const { event, inclusion } = await wire(log, seq);
      const c = await checkInclusion(event, inclusion, log.signer.publicKeyPem);
      expect(c, `seq ${seq}`).toMatchObject({ leaf: true, path: true, signature: true, keyId: true, ok: true });
    }
  });

  it('refuses a changed event (an allow turned into a deny, a changed detail)', async () => {
    const { event, inclusion } = await wire(log, 5);
    const flipped = { ...event, outcome: event.outcome === 'allow' ? 'deny' : 'allow' } as AuditEvent;
    expect(await checkInclusion(flipped, inclusion, log.signer.publicKeyPem)).toMatchObject({ leaf: false, ok: false });
    const detail = { ...event, details: { ...event.details, version: 'sha256:cd' } };
    expect(await checkInclusion(detail, inclusion, log.signer.publicKeyPem)).toMatchObject({ ok: false });
  });

  it('refuses a proof for another leaf, a changed path, a truncated path', async () => {
    const five = await wire(log, 5);
    const six = await wire(log, 6);
    expect(await checkInclusion(five.event, six.inclusion, log.signer.publicKeyPem)).toMatchObject({ ok: false });
    const swapped = { ...five.inclusion, proof: [...five.inclusion.proof].reverse() };
    expect(await checkInclusion(five.event, swapped, log.signer.publicKeyPem)).toMatchObject({
      path: false,
      ok: false,
    });
    const short = { ...five.inclusion, proof: five.inclusion.proof.slice(1) };
    expect(await checkInclusion(five.event, short, log.signer.publicKeyPem)).toMatchObject({ path: false, ok: false });
    const junk = { ...five.inclusion, proof: ['zz', ...five.inclusion.proof.slice(1)] };
    expect(await checkInclusion(five.event, junk, log.signer.publicKeyPem)).toMatchObject({ ok: false });
  });

  it('refuses a checkpoint whose root, size or time was changed after signing', async () => {
    const { event, inclusion } = await wire(log, 9);
    const cp = inclusion.checkpoint;
    const later = { ...inclusion, checkpoint: { ...cp, time: cp.time + 1 } };
    expect(await checkInclusion(event, later, log.signer.publicKeyPem)).toMatchObject({ signature: false, ok: false });
    // A path recomputed to a forged root still needs the log's signature over that root.
    const forged = await wire(other, 9);
    const mixed = {
      ...inclusion,
      checkpoint: { ...forged.inclusion.checkpoint, signature: cp.signature, key_id: cp.key_id },
    };
    expect(await checkInclusion(forged.event, mixed, log.signer.publicKeyPem)).toMatchObject({ ok: false });
  });

  it('refuses a checkpoint signed by another key (another log of the same events)', async () => {
    const { event, inclusion } = await wire(other, 9);
    const c = await checkInclusion(event, inclusion, log.signer.publicKeyPem);
    expect(c).toMatchObject({ leaf: true, path: true, signature: false, keyId: false, ok: false });
    expect(c.message).toMatch(/signature is not valid/);
  });

  it('computes no root for an index outside the tree', async () => {
    expect(await rootFromPath(5, 5, new Uint8Array(32), [])).toBeNull();
    expect(await rootFromPath(0, 1, new Uint8Array(32), [new Uint8Array(32)])).toBeNull();
  });
});
