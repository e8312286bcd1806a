/**
 * What is not yet durable is counted: events recorded but neither stored nor fsynced show in
 * `nevertrust_audit_not_durable` (what a kill -9 now would lose), and events a restart finds in
 * the spill buffer are counted in `nevertrust_audit_recovered_total` as they ship. Real log on a real
 * SQLite file, real spill files.
 */
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { type AuditEvent, AuditLog, AuditRecorder, type AuditSink } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
});

const metric = async (registry: Registry, name: string) => {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
};

describe('durability accounting', () => {
  it('counts events not yet durable while the sink holds them, and 0 once stored', async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    stores.push(store);
    const log = await AuditLog.open(store, { dataDir, checkpointIntervalMs: 0 });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    // The sink stores only once released: a slow commit, as under load.
    const slow: AuditSink = {
      append: async (events: AuditEvent[]) => {
        await gate;
        return log.append(events);
      },
    };
    const registry = new Registry();
    const rec = new AuditRecorder({ sink: slow, spillDir: join(dataDir, 'spill'), registry, batchSize: 100 });
    for (let i = 0; i < 250; i++) rec.record({ kind: 'access.decision', decision_id: `d${i}`, outcome: 'allow' });
    expect(await metric(registry, 'nevertrust_audit_not_durable')).toBe(250);
    await new Promise((r) => setTimeout(r, 50)); // the first batch is now with the sink
    expect(rec.stats().notDurable).toBe(250);
    expect(await metric(registry, 'nevertrust_audit_not_durable')).toBe(250);
    release();
    await rec.flush();
    expect(log.treeSize).toBe(250);
    expect(await metric(registry, 'nevertrust_audit_not_durable')).toBe(0);
    await rec.close();
  });

  it('a restart counts what it recovered from the spill buffer', async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    stores.push(store);
    const log = await AuditLog.open(store, { dataDir, checkpointIntervalMs: 0 });
    const spillDir = join(dataDir, 'spill');
    const down: AuditSink = {
      append: async () => {
        throw new Error('sink down');
      },
    };
    const first = new AuditRecorder({ sink: down, spillDir, retryMinMs: 10_000 });
    for (let i = 0; i < 40; i++) first.record({ kind: 'access.decision', decision_id: `r${i}`, outcome: 'deny' });
    await first.close(100); // what cannot ship is fsynced to the spill buffer
    expect(first.stats()).toMatchObject({ notDurable: 0, lost: 0 });
    const registry = new Registry();
    const second = new AuditRecorder({ sink: log, spillDir, registry });
    expect(second.stats().recovered).toBe(40);
    expect(await metric(registry, 'nevertrust_audit_recovered_total')).toBe(40);
    await second.flush();
    expect(log.treeSize).toBe(40);
    await second.close();
  });
});
