/**
 * Oversized records of hostile requests are clipped and stored, never dropped unseen: a decision
 * whose canonical form is over 16 KiB (control characters escape to six bytes each) is stored with
 * its longest strings clipped, and one that cannot be made to fit is counted in
 * `nevertrust_audit_lost_total`. Real recorder, real log on a real SQLite file.
 */
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, AuditRecorder, canonicalJson, queryAuditLog } from '../../src/audit/index.js';
import { CLIP_MARK, clipText, normalizeClipped } from '../../src/audit/clip.js';
import { DEFAULT_MAX_EVENT_BYTES } from '../../src/audit/event.js';
import { refuse } from '../../src/pep/decision.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
});

async function recorderOnLog() {
  const dataDir = tempDir();
  const store = await openStore({ dataDir });
  stores.push(store);
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 100, checkpointIntervalMs: 0 });
  const registry = new Registry();
  const rec = new AuditRecorder({ sink: log, spillDir: join(dataDir, 'spill'), registry });
  return { store, log, rec, registry };
}

describe('clipping', () => {
  it('clipText cuts to the limit and marks the cut', () => {
    expect(clipText('abc', 3)).toBe('abc');
    expect(clipText(undefined, 3)).toBeUndefined();
    const c = clipText('x'.repeat(16_384), 2048) as string;
    expect(c).toHaveLength(2048);
    expect(c.endsWith(CLIP_MARK)).toBe(true);
  });

  it('a decision over 16 KiB is stored clipped, with its decision id, and nothing counts as lost', async () => {
    const { store, rec, registry } = await recorderOnLog();
    // Each control character is six bytes in canonical JSON: a 2,048-unit path and reason (each
    // within the schema's field limit) make an event of about 25 KB.
    const hostile = '\u0001'.repeat(16_384);
    const d = refuse(`x509_invalid: ${hostile}`, { request: { method: 'GET', path: `/${hostile}` } }, rec, {
      pep: 'sidecar',
      ip: '10.0.0.9',
    });
    expect(d.allow).toBe(false);
    await rec.flush();
    const stored = (await queryAuditLog(store, { decision_id: d.decision_id })).events;
    expect(stored).toHaveLength(1);
    const e = stored[0];
    expect(e?.outcome).toBe('deny');
    expect(e?.target?.path?.endsWith(CLIP_MARK)).toBe(true);
    expect(Buffer.byteLength(canonicalJson({ ...e, seq: undefined }))).toBeLessThanOrEqual(DEFAULT_MAX_EVENT_BYTES);
    expect(rec.stats()).toMatchObject({ shipped: 1, clipped: 1, rejected: 0, lost: 0 });
    expect(await registry.metrics()).toMatch(/nevertrust_audit_clipped_total\{recorder="default"\} 1/);
    await rec.close();
  });

  it('an event that cannot be clipped to fit is counted as lost, not passed over', async () => {
    const { log, rec, registry } = await recorderOnLog();
    // Numbers cannot be clipped: 2,000 of them are over the limit whatever happens to the strings.
    const details = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, 1e15 + i]));
    rec.record({ kind: 'access.decision', outcome: 'allow', decision_id: 'too-big', details });
    rec.record({ kind: 'access.decision', outcome: 'allow', decision_id: 'fine' });
    await rec.flush();
    expect(log.treeSize).toBe(1);
    expect(rec.stats()).toMatchObject({ shipped: 1, lost: 1, rejected: 0 });
    expect(await registry.metrics()).toMatch(/nevertrust_audit_lost_total\{recorder="default"\} 1/);
    await rec.close();
  });

  it('keeps identifiers exact and leaves malformed events to be refused as before', () => {
    const r = normalizeClipped({
      kind: 'access.decision',
      decision_id: 'd-1',
      reason: '\u0002'.repeat(2048),
      details: { note: '\u0003'.repeat(3000) },
    });
    expect(r?.clipped).toBe(true);
    expect(r?.event.decision_id).toBe('d-1');
    expect(r?.event.kind).toBe('access.decision');
    expect(() => normalizeClipped({ kind: 'access.decision', target: { path: 'x'.repeat(5000) } })).toThrow(
      /invalid audit event at target.path/,
    );
  });
});
