/**
 * The recorder: bounded non-blocking queue, spill to disk when full or when the sink is down,
 * shipping later with nothing lost, and a kill -9 of a process appending under load.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  AuditLog,
  AuditRecorder,
  type AuditSink,
  queryAuditLog,
  verifyLog,
} from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

/** A sink in front of the log that can be switched off (a database or network outage). */
function flakySink(log: AuditLog): AuditSink & { up: boolean; calls: number } {
  return {
    up: false,
    calls: 0,
    async append(events: AuditEvent[]) {
      this.calls++;
      if (!this.up) throw new Error('sink down');
      return log.append(events);
    },
  };
}

const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
});

async function openLog(url?: string) {
  const dataDir = tempDir();
  const store = await openStore({ dataDir, url });
  stores.push(store);
  const log = await AuditLog.open(store, { dataDir, checkpointEvery: 500, checkpointIntervalMs: 0 });
  return { dataDir, store, log };
}

describe('audit recorder', () => {
  it('record() is synchronous; flush() resolves once everything is stored', async () => {
    const { dataDir, store, log } = await openLog();
    const registry = new Registry();
    const r = new AuditRecorder({ sink: log, spillDir: join(dataDir, 'spill'), registry, batchSize: 100 });
    for (let i = 0; i < 1234; i++) r.record({ kind: 'access.decision', decision_id: `d${i}`, outcome: 'allow' });
    expect(log.treeSize).toBe(0); // nothing happened synchronously
    await r.flush();
    expect(log.treeSize).toBe(1234);
    expect(r.stats()).toMatchObject({ recorded: 1234, shipped: 1234, spilled: 0, lost: 0, queued: 0 });
    const text = await registry.metrics();
    expect(text).toMatch(/nevertrust_audit_shipped_total\{recorder="default"\} 1234/);
    expect(text).toMatch(/nevertrust_audit_lost_total\{recorder="default"\} 0/);
    expect((await verifyLog(store)).ok).toBe(true);
    await r.close();
  });

  it('a full queue spills to disk (fsynced) and ships later with nothing lost or duplicated', async () => {
    const { dataDir, store, log } = await openLog();
    const sink = flakySink(log);
    const spillDir = join(dataDir, 'spill');
    const r = new AuditRecorder({ sink, spillDir, maxQueue: 100, batchSize: 50, retryMinMs: 20, retryMaxMs: 50 });
    for (let i = 0; i < 3000; i++) {
      r.record({ id: `e-${i}`, kind: 'access.decision', outcome: i % 2 ? 'allow' : 'deny' });
      if (i % 500 === 0) await new Promise((res) => setTimeout(res, 5));
    }
    await new Promise((res) => setTimeout(res, 100));
    const s = r.stats();
    expect(s.spilled).toBeGreaterThan(2800);
    expect(s.lost).toBe(0);
    expect(readdirSync(spillDir).length).toBeGreaterThan(0);
    sink.up = true;
    await r.flush();
    expect(r.stats()).toMatchObject({ recorded: 3000, lost: 0, spillPending: 0 });
    expect(log.treeSize).toBe(3000);
    const ids = new Set<string>();
    let cursor: number | undefined;
    do {
      const page = await queryAuditLog(store, { limit: 1000, cursor });
      for (const e of page.events) ids.add(e.id);
      cursor = page.next_cursor;
    } while (cursor !== undefined);
    expect(ids.size).toBe(3000);
    for (let i = 0; i < 3000; i++) expect(ids.has(`e-${i}`)).toBe(true);
    expect(readdirSync(spillDir)).toEqual([]);
    expect((await verifyLog(store)).ok).toBe(true);
    await r.close();
  });

  it('close() with the sink down leaves everything on disk; a new recorder ships it', async () => {
    const { dataDir, log } = await openLog();
    const spillDir = join(dataDir, 'spill');
    const sink = flakySink(log);
    const r = new AuditRecorder({ sink, spillDir, retryMinMs: 10 });
    for (let i = 0; i < 250; i++) r.record({ id: `c-${i}`, kind: 'admin.action' });
    await r.close(200);
    expect(r.stats().lost).toBe(0);
    expect(readdirSync(spillDir).length).toBeGreaterThan(0);
    expect(() => r.record({ kind: 'admin.action' })).toThrow(/closed/);
    const r2 = new AuditRecorder({ sink: log, spillDir });
    await r2.flush();
    expect(log.treeSize).toBe(250);
    expect(readdirSync(spillDir)).toEqual([]);
    await r2.close();
  });

  it('malformed events are rejected with a clear error, never silently; oversized ones are clipped', async () => {
    const { dataDir, log } = await openLog();
    const rejected: string[] = [];
    const r = new AuditRecorder({
      sink: log,
      spillDir: join(dataDir, 'spill'),
      onRejected: (_e, err) => rejected.push(err.message),
    });
    r.record({ kind: 'access.decision', outcome: 'perhaps' as 'allow' });
    r.record({ kind: 'access.decision', details: { big: 'x'.repeat(40_000) } });
    r.record({ kind: 'access.decision' });
    await r.flush();
    expect(rejected[0]).toMatch(/invalid audit event at outcome/);
    // An oversized event is no longer refused: it is stored with its longest strings clipped.
    expect(rejected).toHaveLength(1);
    expect(r.stats()).toMatchObject({ rejected: 1, clipped: 1, shipped: 2, lost: 0 });
    await r.close();
  });
});

const CHILD = fileURLToPath(new URL('./fixtures/append-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe.each([
  { name: 'sqlite', url: async () => '', need: 20_000 },
  { name: 'postgres', url: () => createTestDatabase('auditkill'), need: 8_000 },
])('kill -9 while appending under load ($name)', ({ url, need }) => {
  it('every acknowledged event is present and the log verifies', async () => {
    const dataDir = tempDir();
    const dbUrl = await url();
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, dbUrl], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let acked = 0;
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const enough = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/ACK (\d+)/g)) acked = Math.max(acked, Number(m[1]));
        if (acked >= need) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    await enough;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const store = await openStore({ dataDir, url: dbUrl || undefined });
    stores.push(store);
    const report = await verifyLog(store);
    expect(report.ok).toBe(true);
    expect(report.treeSize).toBeGreaterThanOrEqual(acked);
    // Every acknowledged id is there (ids evt-0 … evt-(acked-1)).
    const rows = await store.db.selectFrom('audit_event').select('id').where('id', 'like', 'evt-%').execute();
    const ids = new Set(rows.map((r) => r.id));
    for (let i = 0; i < acked; i++) if (!ids.has(`evt-${i}`)) throw new Error(`acknowledged event evt-${i} missing`);
    // The log continues after the crash.
    const log = await AuditLog.open(store, { dataDir, checkpointIntervalMs: 0 });
    await log.appendInputs([{ kind: 'admin.action' }]);
    expect((await verifyLog(store)).ok).toBe(true);
    await log.close();
    expect(existsSync(join(dataDir, 'nevertrust.db')) || dbUrl !== '').toBe(true);
  }, 120_000);
});
