/**
 * The store-backed log on SQLite and PostgreSQL: append, proofs (checked by the independent reference
 * in ./reference.ts), restart, and tampering with rows directly in SQL, which verify must name.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type AuditEventInput,
  AuditLog,
  canonicalJson,
  normalizeEvent,
  queryAuditLog,
  readCheckpointFile,
  sealSegments,
  type StoredAuditEvent,
  verifyLog,
} from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';
import { H, LEAF, mth, rootFromPath, subproofRoots } from './reference.js';

const engines: { name: string; open: () => Promise<{ url?: string; dataDir: string }> }[] = [
  { name: 'sqlite', open: async () => ({ dataDir: tempDir() }) },
  { name: 'postgres', open: async () => ({ url: await createTestDatabase('audit'), dataDir: tempDir() }) },
];

function ev(i: number, over: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    kind: 'access.decision',
    time: 1_767_225_600_000 + i * 1000,
    decision_id: `d-${i}`,
    source: { spiffe_id: `spiffe://example.org/ns/prod/sa/svc-${i % 5}`, ip: '10.0.0.1' },
    target: { service: `target-${i % 3}`, method: 'GET', path: `/v1/items/${i}` },
    outcome: i % 4 === 0 ? 'deny' : 'allow',
    reason: 'rule matched',
    policy: 'p',
    rule: 'r',
    enforcer: 'sidecar-1',
    latency_us: 3,
    ...over,
  };
}

const hex = (b: string) => Buffer.from(b, 'hex');

/** Inserts a forged row the way an attacker with SQL access would: every column consistent with its body. */
async function forge(store: Store, seq: number, e: StoredAuditEvent, body: string): Promise<void> {
  const term = (field: string, value: string) =>
    sql`(select id from audit_term where field = ${field} and value = ${value})`;
  await sql`insert into audit_event (seq, id, time, kind_term, outcome_term, source_term, target_term, decision_id, body, leaf_hash)
    values (${seq}, ${e.id}, ${e.time}, ${term('kind', e.kind)}, ${term('outcome', e.outcome ?? '')},
      ${term('source', e.source?.spiffe_id ?? '')}, ${term('target', e.target?.service ?? '')}, ${e.decision_id ?? null},
      ${body}, ${LEAF(Buffer.from(body))})`.execute(store.db);
}

describe.each(engines)('audit log on $name', ({ open }) => {
  const stores: Store[] = [];
  const logs: AuditLog[] = [];
  afterAll(async () => {
    for (const l of logs) await l.close();
    for (const s of stores) await s.close();
  });

  async function fresh(n: number, opts: { checkpointEvery?: number; checkpointFile?: string } = {}) {
    const where = await open();
    const store = await openStore(where);
    stores.push(store);
    const log = await AuditLog.open(store, {
      dataDir: where.dataDir,
      checkpointEvery: opts.checkpointEvery ?? 100,
      checkpointIntervalMs: 0,
      checkpointFile: opts.checkpointFile,
    });
    logs.push(log);
    for (let i = 0; i < n; i += 250) {
      await log.append(Array.from({ length: Math.min(250, n - i) }, (_, j) => normalizeEvent(ev(i + j))));
    }
    return { store, log, where };
  }

  it('appends, signs checkpoints, proves inclusion and consistency (checked independently)', async () => {
    const { store, log } = await fresh(700);
    expect(log.treeSize).toBe(700);
    const rows = await store.db.selectFrom('audit_event').select(['seq', 'body']).orderBy('seq').execute();
    const leaves = rows.map((r) => LEAF(Buffer.from(r.body)));
    expect(log.rootHash()).toBe(mth(leaves).toString('hex'));
    const cps = await log.checkpoints();
    expect(cps.map((c) => c.tree_size)).toEqual([250, 500, 700].filter((s) => s >= 100));
    const pub = createPublicKey(log.signer.publicKeyPem);
    for (const cp of cps) {
      expect(cp.root_hash).toBe(mth(leaves.slice(0, cp.tree_size)).toString('hex'));
      const msg = Buffer.from(`nevertrust-audit-checkpoint/v1\n${cp.tree_size}\n${cp.root_hash}\n${cp.time}\n`);
      expect(cryptoVerify(null, msg, pub, Buffer.from(cp.signature, 'base64'))).toBe(true);
    }
    for (const seq of [0, 1, 255, 256, 257, 511, 600, 699]) {
      const p = await log.inclusionProof(seq);
      expect(p.tree_size).toBe(700);
      expect(rootFromPath(seq, p.tree_size, hex(p.leaf_hash), p.proof.map(hex))?.toString('hex')).toBe(
        p.checkpoint.root_hash,
      );
      expect(p.leaf_hash).toBe((leaves[seq] as Buffer).toString('hex'));
    }
    const c = await log.consistencyProof(250, 700);
    const oldRoot = hex(c.from.root_hash);
    expect(subproofRoots(250, 700, true, c.proof.map(hex), oldRoot)?.map((b) => b.toString('hex'))).toEqual([
      c.from.root_hash,
      c.to.root_hash,
    ]);
    const report = await verifyLog(store);
    expect(report).toMatchObject({ ok: true, treeSize: 700, headSize: 700, checkpointsChecked: 3 });
    expect(H().length).toBe(32);
  });

  it('resumes after restart with the same tree and key, and skips duplicate ids', async () => {
    const { store, log, where } = await fresh(300);
    const root = log.rootHash();
    const keyId = log.signer.keyId;
    await log.close();
    const again = await AuditLog.open(store, { dataDir: where.dataDir, checkpointIntervalMs: 0 });
    logs.push(again);
    expect(again.treeSize).toBe(300);
    expect(again.rootHash()).toBe(root);
    expect(again.signer.keyId).toBe(keyId);
    const dup = normalizeEvent(ev(5));
    const r = await again.append([normalizeEvent(ev(1000)), dup, normalizeEvent({ ...ev(5), id: dup.id })]);
    expect(r).toMatchObject({ stored: 2, duplicates: 1, treeSize: 302 });
    const r2 = await again.append([dup]);
    expect(r2).toMatchObject({ stored: 0, duplicates: 1, treeSize: 302 });
    // A stored id in a batch that also brings a new term: the first attempt rolls back (its new term
    // too), the retry stores the rest.
    const mixed = await again.append([normalizeEvent({ ...ev(2000), source: { user: 'brand-new' } }), dup]);
    expect(mixed).toMatchObject({ stored: 1, duplicates: 1, firstSeq: 302, treeSize: 303 });
    expect((await queryAuditLog(store, { source: 'brand-new' })).events.map((e) => e.seq)).toEqual([302]);
    expect((await verifyLog(store)).ok).toBe(true);
  });

  it('a batch whose transaction fails leaves the log as before it: tree, root and new terms', async () => {
    const { store, log } = await fresh(300);
    const size = log.treeSize;
    const root = log.rootHash();
    // A trigger that fails the insert of one event: the batch's leaves are hashed and its new term
    // resolved by then, so the log's memory has moved on and must be put back.
    if (store.engine === 'sqlite') {
      await sql`create trigger boom before insert on audit_event when new.decision_id = 'boom'
        begin select raise(abort, 'boom'); end`.execute(store.db);
    } else {
      await sql`create function boom() returns trigger language plpgsql as $$
        begin if new.decision_id = 'boom' then raise exception 'boom'; end if; return new; end $$`.execute(store.db);
      await sql`create trigger boom before insert on audit_event for each row execute function boom()`.execute(
        store.db,
      );
    }
    const ghost = (i: number, decision: string) =>
      normalizeEvent({ ...ev(3000 + i), decision_id: decision, source: { user: 'ghost' } });
    await expect(log.append([ghost(0, 'ok'), ghost(1, 'boom')])).rejects.toThrow(/boom/);
    expect(log.treeSize).toBe(size);
    expect(log.rootHash()).toBe(root);
    await sql`drop trigger boom${sql.raw(store.engine === 'sqlite' ? '' : ' on audit_event')}`.execute(store.db);
    const r = await log.append([ghost(2, 'ok')]);
    expect(r).toMatchObject({ stored: 1, firstSeq: size, treeSize: size + 1 });
    expect((await queryAuditLog(store, { source: 'ghost' })).events.map((e) => e.seq)).toEqual([size]);
    expect((await verifyLog(store)).ok).toBe(true);
  });

  it('never stores secrets', async () => {
    const { store, log } = await fresh(0);
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2lnbmF0dXJl';
    await log.appendInputs([
      {
        ...ev(1),
        reason: `Bearer ${jwt}`,
        details: {
          headers: { authorization: `Bearer ${jwt}`, cookie: 'session=abc', 'x-request-id': 'r1' },
          client_secret: 'hunter2',
          private_key: '-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----',
          note: `token was ${jwt}`,
          password: 'p4ss',
        },
      },
    ]);
    const dump = JSON.stringify(await store.db.selectFrom('audit_event').selectAll().execute());
    for (const s of [jwt, 'session=abc', 'hunter2', 'PRIVATE KEY', 'p4ss']) expect(dump).not.toContain(s);
    const e = await log.get(0);
    expect(e?.details).toEqual({ headers: { 'x-request-id': 'r1' }, note: '[redacted]' });
    expect(e?.reason).toBe('[redacted]');
    expect(e?.redacted?.sort()).toEqual(
      [
        'details.client_secret',
        'details.headers.authorization',
        'details.headers.cookie',
        'details.note',
        'details.password',
        'details.private_key',
        'reason',
      ].sort(),
    );
  });

  it('rejects malformed and oversized events with a clear error, storing nothing', async () => {
    const { log } = await fresh(0);
    await expect(log.appendInputs([ev(1), { kind: 'Bad Kind' }])).rejects.toThrow(
      /event 1: invalid audit event at kind: a kind is dotted lowercase/,
    );
    await expect(log.appendInputs([{ ...ev(1), outcome: 'maybe' }])).rejects.toMatchObject({
      code: 'ERR_AUDIT_EVENT',
      path: 'outcome',
    });
    await expect(log.appendInputs([{ ...ev(1), surprise: 1 }])).rejects.toThrow(/unknown field\(s\) surprise/);
    await expect(log.appendInputs(['not an object'])).rejects.toThrow(/must be a JSON object/);
    await expect(log.appendInputs([{ ...ev(1), details: { blob: 'x'.repeat(20_000) } }])).rejects.toThrow(
      /event 0: audit event is \d+ bytes, over the 16384-byte limit/,
    );
    expect(log.treeSize).toBe(0);
  });

  it('queries filter by source, target, outcome, kind, decision id and time, with cursors', async () => {
    const { store } = await fresh(400);
    const src = 'spiffe://example.org/ns/prod/sa/svc-2';
    const all: number[] = [];
    let cursor: number | undefined;
    do {
      const page = await queryAuditLog(store, { source: src, limit: 30, cursor });
      all.push(...page.events.map((e) => e.seq));
      cursor = page.next_cursor;
    } while (cursor !== undefined);
    const want = Array.from({ length: 400 }, (_, i) => i)
      .filter((i) => i % 5 === 2)
      .reverse();
    expect(all).toEqual(want);
    const denies = await queryAuditLog(store, { target: 'target-1', outcome: 'deny', limit: 1000 });
    expect(denies.events.map((e) => e.seq)).toEqual(
      want.length
        ? Array.from({ length: 400 }, (_, i) => i)
            .filter((i) => i % 3 === 1 && i % 4 === 0)
            .reverse()
        : [],
    );
    const t0 = 1_767_225_600_000;
    const ranged = await queryAuditLog(store, { since: t0 + 10_000, until: t0 + 20_000, limit: 1000 });
    expect(ranged.events.map((e) => e.seq)).toEqual([19, 18, 17, 16, 15, 14, 13, 12, 11, 10]);
    expect((await queryAuditLog(store, { decision_id: 'd-42' })).events.map((e) => e.seq)).toEqual([42]);
    expect((await queryAuditLog(store, { kind: 'admin.action' })).events).toEqual([]);
  });

  it('a plain service name finds the workloads whose SPIFFE IDs name that service, and nothing else', async () => {
    const { store, log } = await fresh(0);
    const targets: AuditEventInput['target'][] = [
      { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service' },
      { spiffe_id: 'spiffe://other.org/ns/staging/sa/payment-service' },
      { service: 'payment-service' },
      { spiffe_id: 'spiffe://example.org/legacy/payment-service' },
      // Lookalikes: another name, a name inside the path, LIKE's wildcards, another case.
      { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment-service-2' },
      { spiffe_id: 'spiffe://example.org/ns/payment-service/sa/ledger' },
      { spiffe_id: 'spiffe://example.org/ns/payments/sa/payment_service' },
      { spiffe_id: 'spiffe://example.org/ns/payments/sa/Payment-Service' },
    ];
    await log.appendInputs(targets.map((target, i) => ev(i, { target, source: { user: `u-${i}` } })));
    const seqs = async (q: Parameters<typeof queryAuditLog>[1]) =>
      (await queryAuditLog(store, q)).events.map((e) => e.seq).sort((a, b) => a - b);
    expect(await seqs({ target: 'payment-service' })).toEqual([0, 1, 2, 3]);
    expect(await seqs({ target: 'payment-service', outcome: 'deny' })).toEqual([0]);
    expect(await seqs({ target: 'payment%service' })).toEqual([]);
    expect(await seqs({ target: 'payment_service' })).toEqual([6]);
    // A full SPIFFE ID still means exactly that one.
    expect(await seqs({ target: 'spiffe://other.org/ns/staging/sa/payment-service' })).toEqual([1]);
    // Sources too: a caller's service name matches its SPIFFE IDs; a user name matches itself.
    await log.appendInputs([
      ev(10, { source: { spiffe_id: 'spiffe://example.org/ns/prod/sa/api-gateway' } }),
      ev(11, { source: { user: 'api-gateway' } }),
    ]);
    expect(await seqs({ source: 'api-gateway' })).toEqual([8, 9]);
    expect(await seqs({ source: 'u-3' })).toEqual([3]);
  });

  it('a caller known only by a service name is indexed by that name; logs indexed by its IP still verify', async () => {
    const { store, log } = await fresh(0);
    await log.appendInputs([
      ev(0, { source: { service: 'orders', ip: '10.0.0.9' } }),
      ev(1, { source: { service: 'billing', ip: '10.0.0.9' } }),
    ]);
    const seqs = async (source: string) => (await queryAuditLog(store, { source })).events.map((e) => e.seq);
    expect(await seqs('orders')).toEqual([0]);
    expect(await seqs('billing')).toEqual([1]);
    expect((await verifyLog(store)).firstBad).toBeUndefined();
    // As a log written before service names were keyed has it: the row indexed by the IP.
    await sql`insert into audit_term (id, field, value) values ((select max(id) + 1 from audit_term), 'source', '10.0.0.9')`.execute(
      store.db,
    );
    const term = (v: string) => sql`(select id from audit_term where field = 'source' and value = ${v})`;
    await sql`update audit_event set source_term = ${term('10.0.0.9')} where seq = 0`.execute(store.db);
    const legacy = (await verifyLog(store)).firstBad;
    // The log verifies; only the query index (built from the new key) may disagree with the row.
    expect(legacy === undefined || /the log itself verifies/.test(legacy.message)).toBe(true);
    // Any other value is a changed column.
    await sql`update audit_event set source_term = ${term('billing')} where seq = 0`.execute(store.db);
    expect((await verifyLog(store)).firstBad).toMatchObject({ index: 0, kind: 'changed' });
  });

  describe('tampering with SQL is named by verify', () => {
    it('a changed event body', async () => {
      const { store } = await fresh(600);
      await sql`update audit_event set body = replace(body, '"deny"', '"allow"') where seq = 300`.execute(store.db);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 300, kind: 'changed' });
    });

    it('a changed indexed column', async () => {
      const { store } = await fresh(600);
      await sql`update audit_event set outcome_term = (select id from audit_term where field = 'outcome' and value = 'allow')
        where seq = 44`.execute(store.db);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 44, kind: 'changed' });
    });

    it('a changed dictionary term (every row using it disagrees with its bytes: the first is named)', async () => {
      const { store } = await fresh(600);
      await sql`update audit_term set value = 'target-9' where field = 'target' and value = 'target-2'`.execute(
        store.db,
      );
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 2, kind: 'changed' });
    });

    it('a changed body with its leaf hash recomputed is caught by the stored subtree roots and checkpoints', async () => {
      const { store } = await fresh(600);
      const row = await store.db.selectFrom('audit_event').selectAll().where('seq', '=', 410).executeTakeFirstOrThrow();
      const body = row.body.replace('"allow"', '"deny"');
      const leaf = LEAF(Buffer.from(body));
      await sql`update audit_event set body = ${body}, leaf_hash = ${leaf},
        outcome_term = (select id from audit_term where field = 'outcome' and value = 'deny') where seq = 410`.execute(
        store.db,
      );
      const r = await verifyLog(store);
      expect(r.ok).toBe(false);
      // The signed checkpoint at 500 bounds it to 250..499 (the last good checkpoint was at 250).
      expect(r.firstBad).toMatchObject({ index: 250, kind: 'changed' });
      // Without the checkpoints, the subtree root stored for 256..511 still catches it.
      await sql`delete from audit_checkpoint`.execute(store.db);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 256, kind: 'changed' });
    });

    it('a deleted row', async () => {
      const { store } = await fresh(600);
      await sql`delete from audit_event where seq = 123`.execute(store.db);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 123, kind: 'removed' });
    });

    it('a deleted row with the rest renumbered', async () => {
      const { store } = await fresh(600);
      await sql`delete from audit_event where seq = 77`.execute(store.db);
      await sql`update audit_event set seq = -seq where seq > 77`.execute(store.db);
      await sql`update audit_event set seq = -seq - 1 where seq < 0`.execute(store.db);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 77, kind: 'removed' });
    });

    it('an inserted row (the rest renumbered)', async () => {
      const { store } = await fresh(600);
      await sql`update audit_event set seq = -seq - 1 where seq >= 200`.execute(store.db);
      await sql`update audit_event set seq = -seq where seq < 0`.execute(store.db);
      const forged = { ...normalizeEvent(ev(9999)), seq: 200 };
      const body = canonicalJson(forged);
      await forge(store, 200, forged, body);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 200, kind: 'inserted' });
    });

    it('a row appended behind the log', async () => {
      const { store } = await fresh(300);
      const forged = { ...normalizeEvent(ev(9999)), seq: 300 };
      const body = canonicalJson(forged);
      await forge(store, 300, forged, body);
      expect((await verifyLog(store)).firstBad).toMatchObject({ index: 300, kind: 'inserted' });
    });

    it('a truncated tail with the head and checkpoints rewritten is caught by the external checkpoint file', async () => {
      const dir = tempDir();
      const file = join(dir, 'checkpoints.ndjson');
      const { store } = await fresh(600, { checkpointFile: file });
      // External writes are asynchronous: wait until the three checkpoints are in the file.
      // (The file itself appears with the first write, which may come after `fresh` resolves.)
      const lines = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0);
      for (let i = 0; i < 200 && lines() < 3; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await sql`delete from audit_event where seq >= 450`.execute(store.db);
      await sql`delete from audit_checkpoint where tree_size > 450`.execute(store.db);
      await sql`delete from audit_node where level > 0`.execute(store.db);
      await sql`update audit_head set tree_size = 450`.execute(store.db);
      // Without the external file nothing inside the database contradicts the shorter log (except the head root).
      const ext = readCheckpointFile(file);
      expect(ext.map((c) => c.tree_size)).toEqual([250, 500, 600].filter((s) => s >= 100));
      const r = await verifyLog(store, { externalCheckpoints: ext });
      expect(r.firstBad).toMatchObject({ index: 450, kind: 'removed' });
      expect(r.firstBad?.message).toMatch(/external checkpoint covers 500 events/);
    });

    it('a forged checkpoint row is reported', async () => {
      const { store } = await fresh(300);
      await sql`update audit_checkpoint set root_hash = ${'0'.repeat(64)} where tree_size = 250`.execute(store.db);
      const r = await verifyLog(store);
      expect(r.ok).toBe(false);
      expect(r.badCheckpoints[0]).toMatchObject({ tree_size: 250, source: 'database' });
    });
  });

  it('seals old events into gzip NDJSON segments that stay verifiable, and proofs still work', async () => {
    const { store, log, where } = await fresh(700);
    const dir = join(where.dataDir, 'segments');
    const now = 1_767_225_600_000 + 600 * 1000; // events 0..549 are older than a 50 s window
    const sealed = await sealSegments(log, { dir, hotWindowMs: 50_000, now, maxSegmentEvents: 256 });
    expect(sealed.map((s) => [s.from, s.to])).toEqual([
      [0, 256],
      [256, 512],
    ]);
    expect(
      Number(
        (await store.db.selectFrom('audit_event').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow()).n,
      ),
    ).toBe(188);
    const r = await verifyLog(store, { segmentDir: dir });
    expect(r).toMatchObject({ ok: true, treeSize: 700, segmentsChecked: 2 });
    const p = await log.inclusionProof(650);
    expect(rootFromPath(650, p.tree_size, hex(p.leaf_hash), p.proof.map(hex))?.toString('hex')).toBe(
      p.checkpoint.root_hash,
    );
    // Without the files, the sealed range is reported as unverified, the rest still verifies.
    expect(await verifyLog(store)).toMatchObject({
      ok: true,
      unverifiedRanges: [
        [0, 256],
        [256, 512],
      ],
    });
    // A changed line inside a segment file is named.
    const file = sealed[1]?.file as string;
    const lines = gunzipSync(readFileSync(file)).toString().split('\n');
    lines[1 + 12] = (lines[1 + 12] as string).replace('"deny"', '"allow"');
    writeFileSync(file, gzipSync(lines.join('\n')));
    const bad = await verifyLog(store, { segmentDir: dir });
    expect(bad.ok).toBe(false);
    expect(bad.firstBad?.index).toBe(256);
  });
});
