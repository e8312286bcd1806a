/** Export sinks receive committed events; a failing sink never fails the log. */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, type ExportSink, fileSink, normalizeEvent, stdoutSink, webhookSink } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
});

describe('export sinks', () => {
  it('stdout (JSON lines), file and webhook get every committed event; a broken sink is only counted', async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    stores.push(store);
    const received: unknown[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received.push(...(JSON.parse(body) as { events: unknown[] }).events);
        res.end('{}');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    const port = (hook.address() as { port: number }).port;
    const out = new PassThrough();
    let stdout = '';
    out.on('data', (d) => (stdout += d));
    const file = join(dataDir, 'siem.ndjson');
    const broken: ExportSink = {
      name: 'broken',
      write: async () => {
        throw new Error('SIEM down');
      },
    };
    const log = await AuditLog.open(store, {
      dataDir,
      checkpointIntervalMs: 0,
      sinks: [stdoutSink(out), fileSink(file), webhookSink(`http://127.0.0.1:${port}/collect`), broken],
    });
    await log.append([
      normalizeEvent({ kind: 'admin.action', outcome: 'allow' }),
      normalizeEvent({ kind: 'revocation' }),
    ]);
    await new Promise((r) => setTimeout(r, 200));
    expect(
      stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { seq: number }).seq),
    ).toEqual([0, 1]);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2);
    expect(received).toHaveLength(2);
    expect(log.counters.sinkErrors).toBe(1);
    expect(log.treeSize).toBe(2);
    await log.close();
    hook.close();
  });
});
