/**
 * The decisions search: `user`, `device`, `rule` and `reason` on a real SQLite log of two blocks.
 * User, device and rule match exactly, reason is a substring in any case (no LIKE wildcards); with
 * the indexed filters, paged to the end, a search returns exactly what a plain filter over the
 * appended events returns; a page stops at its examination bound and says so; oversized, empty and
 * repeated values are refused naming the parameter, over HTTP too, and the CLI passes the flags on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type AuditEventInput,
  AuditEventError,
  AuditLog,
  type AuditQuery,
  normalizeEvent,
  parseQueryParams,
  queryAuditLog,
} from '../../src/audit/index.js';
import { registerAuditCommands } from '../../src/cli/commands/audit.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const T0 = 1_767_225_600_000;
const N = 5000; // more than one block (4096 events)
const NEEDLES = new Set([N - 10, 100]);

/** Event i: users, devices (as the proxy and as other events name them) and rules that share prefixes. */
function ev(i: number): AuditEventInput {
  const device = `dev-${i % 12}`;
  return {
    kind: i % 17 === 0 ? 'admin.action' : 'access.decision',
    time: T0 + i * 10,
    decision_id: `d-${i}`,
    source: {
      ...(i % 3 === 0 ? { user: `user-${i % 12}` } : { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 5}` }),
      ...(i % 5 === 0 ? { device_id: device } : {}),
    },
    target: { service: `target-${i % 4}`, method: 'GET' },
    outcome: i % 7 === 0 ? 'deny' : 'allow',
    ...(i % 2 === 0 ? { rule: `rule-${i % 12}` } : {}),
    reason: NEEDLES.has(i)
      ? 'found the Needle here'
      : i % 11 === 0
        ? `Policy P${i % 9}: 50%_off matched`
        : `policy p${i % 9} matched: allow`,
    ...(i % 5 === 1 ? { details: { device } } : {}),
  };
}

/** What a search must return: a plain filter over the inputs, newest first (seq = i). */
function expected(q: AuditQuery): number[] {
  const out: number[] = [];
  for (let i = N - 1; i >= 0; i--) {
    const e = ev(i);
    if (q.user !== undefined && e.source?.user !== q.user) continue;
    if (q.device !== undefined && e.source?.device_id !== q.device && e.details?.device !== q.device) continue;
    if (q.rule !== undefined && e.rule !== q.rule) continue;
    if (q.reason !== undefined && !e.reason?.toLowerCase().includes(q.reason.toLowerCase())) continue;
    if (q.kind !== undefined && e.kind !== q.kind) continue;
    if (q.outcome !== undefined && e.outcome !== q.outcome) continue;
    if (q.target !== undefined && e.target?.service !== q.target) continue;
    if (q.decision_id !== undefined && e.decision_id !== q.decision_id) continue;
    if (q.since !== undefined && T0 + i * 10 < q.since) continue;
    if (q.until !== undefined && T0 + i * 10 >= q.until) continue;
    out.push(i);
  }
  return out;
}

/** Every page of a search, following next_cursor to the end; with the flags each page gave. */
async function allPages(store: Store, q: AuditQuery, maxExamined?: number) {
  const seqs: number[] = [];
  const pages: { limited: boolean | undefined; examined: number | undefined }[] = [];
  let cursor: number | undefined;
  for (let page = 0; page < 1000; page++) {
    const r = await queryAuditLog(store, { ...q, ...(cursor === undefined ? {} : { cursor }) }, { maxExamined });
    seqs.push(...r.events.map((e) => e.seq));
    pages.push({ limited: r.scan_limited, examined: r.examined });
    if (r.next_cursor === undefined) return { seqs, pages };
    cursor = r.next_cursor;
  }
  throw new Error('too many pages');
}

let store: Store;
let log: AuditLog;

beforeAll(async () => {
  const dataDir = tempDir();
  store = await openStore({ dataDir });
  log = await AuditLog.open(store, { dataDir, checkpointEvery: 100_000, checkpointIntervalMs: 0 });
  for (let i = 0; i < N; i += 1000) {
    await log.append(Array.from({ length: 1000 }, (_, k) => normalizeEvent(ev(i + k))));
  }
});

afterAll(async () => {
  await log?.close();
  await store?.close();
});

describe('the decisions search', () => {
  it.each<AuditQuery>([
    { user: 'user-1', limit: 37 }, // not user-10 or user-11
    { device: 'dev-2', limit: 50 }, // source.device_id and the proxy's details.device
    { rule: 'rule-4', outcome: 'allow', limit: 100 },
    { reason: 'P5 MATCHED', limit: 1000 }, // any case
    { reason: '%_off', limit: 1000 }, // the characters themselves, not LIKE wildcards
    { reason: '_', limit: 10 },
    { user: 'user-3', target: 'target-3', kind: 'access.decision', limit: 20 }, // with the block index
    { device: 'dev-0', rule: 'rule-0', reason: 'matched', limit: 1000 },
    { rule: 'rule-2', since: T0 + 10_000, until: T0 + 30_000, limit: 25 },
    { rule: 'rule-6', decision_id: 'd-30' },
    { rule: 'rule-7', decision_id: 'd-30' }, // d-30 has rule-6: nothing
    { user: 'nobody', limit: 10 },
  ])('%o: exactly the matching events, paged to the end', async (q) => {
    const { seqs, pages } = await allPages(store, q);
    expect(seqs).toEqual(expected(q));
    expect(pages.every((p) => p.limited === false)).toBe(true);
  });

  it('exact means exact: no prefix, no other case', async () => {
    expect((await queryAuditLog(store, { user: 'user-' })).events).toEqual([]);
    expect((await queryAuditLog(store, { rule: 'RULE-4' })).events).toEqual([]);
    expect((await queryAuditLog(store, { device: 'dev-1' })).events.length).toBeGreaterThan(0);
    expect((await queryAuditLog(store, { device: 'dev-1' })).events.every((e) => !/dev-1\d/.test(JSON.stringify(e))));
  });

  it('a page stops at the examination bound and says so; the pages still add up to every match', async () => {
    // Two events in 5000 say "needle": the newest and one near the start.
    const first = await queryAuditLog(store, { reason: 'needle', limit: 10 }, { maxExamined: 500 });
    expect(first.events.map((e) => e.seq)).toEqual([N - 10]);
    expect(first).toMatchObject({ scan_limited: true, examined: 500, next_cursor: N - 500 });

    const { seqs, pages } = await allPages(store, { reason: 'needle', limit: 10 }, 500);
    expect(seqs).toEqual([N - 10, 100]);
    expect(pages).toHaveLength(10); // the last one ends where the rows do: not limited
    expect(pages.slice(0, -1).every((p) => p.limited === true && p.examined === 500)).toBe(true);
    expect(pages.at(-1)).toEqual({ limited: false, examined: 500 });

    // The default bound (100,000) reaches every row here: one page, complete.
    const whole = await queryAuditLog(store, { reason: 'needle', limit: 10 });
    expect(whole).toMatchObject({ scan_limited: false, examined: N });
    expect(whole.next_cursor).toBeUndefined();
    // Without a row filter the answer is as it always was: no scan fields.
    const plain = await queryAuditLog(store, { kind: 'admin.action', limit: 5 });
    expect(plain.scan_limited).toBeUndefined();
  });

  it('refuses oversized, empty and repeated values, naming the parameter', () => {
    const refused = (params: string) => {
      try {
        parseQueryParams(new URLSearchParams(params));
      } catch (e) {
        expect(e).toBeInstanceOf(AuditEventError);
        return (e as AuditEventError).path;
      }
      return undefined;
    };
    for (const k of ['user', 'device', 'rule', 'reason']) {
      expect(refused(`${k}=${'x'.repeat(201)}`)).toBe(k);
      expect(refused(`${k}=`)).toBe(k);
      expect(refused(`${k}=a&${k}=b`)).toBe(k);
      expect(refused(`${k}=${'x'.repeat(200)}`)).toBeUndefined();
    }
    expect(refused('usr=alice')).toBe('(root)');
  });
});

describe('the decisions search over HTTP and the CLI', () => {
  let server: RunningServer;
  let dataDir: string;
  let token: string;

  beforeAll(async () => {
    dataDir = tempDir();
    const audit = auditPlugin({ checkpointIntervalMs: 0, anomaly: false });
    server = await startServer({
      config: configSchema.parse({ data_dir: dataDir, server: { port: 0, host: '127.0.0.1' } }),
      logger: createLogger('silent'),
      plugins: [audit],
    });
    token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    for (let i = 0; i < 60; i++) audit.handle.record(ev(i));
    await audit.handle.recorder().flush();
  });

  afterAll(async () => {
    await server?.close();
  });

  const get = (query: string) =>
    fetch(`${server.url}/v1/admin/audit/events?${query}`, { headers: { authorization: `Bearer ${token}` } });

  it('answers a search with scan_limited, and refuses bad values with a 400 naming the field', async () => {
    const r = await get('kind=access.decision&user=user-3&reason=MATCHED');
    expect(r.status).toBe(200);
    const body = (await r.json()) as { events: { decision_id: string }[]; scan_limited: boolean };
    expect(body.scan_limited).toBe(false);
    const want = expected({ kind: 'access.decision', user: 'user-3', reason: 'MATCHED' }).map((i) => `d-${i}`);
    // The server records its own events too (start-up); only the ones made here carry d-ids.
    expect(body.events.map((e) => e.decision_id).filter((d) => d?.startsWith('d-'))).toEqual(
      want.filter((d) => Number(d.slice(2)) < 60),
    );

    for (const [query, field] of [
      [`reason=${'r'.repeat(201)}`, 'reason'],
      ['user=', 'user'],
      ['device=a&device=b', 'device'],
      [`rule=${'x'.repeat(5000)}`, 'rule'],
    ]) {
      const bad = await get(query as string);
      expect(bad.status, query).toBe(400);
      expect(await bad.json(), query).toMatchObject({ error: 'bad_query', field });
    }
    const anonymous = await fetch(`${server.url}/v1/admin/audit/events?user=user-3`);
    expect(anonymous.status).toBe(401);
  });

  it('nevertrust audit query --user --device --rule --reason', async () => {
    const program = new Command('nevertrust').exitOverride();
    program.option('-d, --data-dir <dir>');
    registerAuditCommands(program);
    let text = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      text += chunk.toString();
      return true;
    });
    try {
      await program.parseAsync([
        'node',
        'nevertrust',
        '--data-dir',
        dataDir,
        'audit',
        'query',
        '--server',
        server.url,
        '--user',
        'user-0',
        '--device',
        'dev-0',
        '--rule',
        'rule-0',
        '--reason',
        'P0',
        '--format',
        'json',
      ]);
    } finally {
      spy.mockRestore();
    }
    const r = JSON.parse(text) as { events: { decision_id: string }[]; scan_limited: boolean };
    const want = expected({ user: 'user-0', device: 'dev-0', rule: 'rule-0', reason: 'P0' }).filter((i) => i < 60);
    expect(want.length).toBeGreaterThan(0);
    expect(r.events.map((e) => e.decision_id)).toEqual(want.map((i) => `d-${i}`));
    expect(r.scan_limited).toBe(false);
  });
});
