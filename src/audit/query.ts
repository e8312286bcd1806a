/**
 * Queries over the hot log, newest first, with keyset pagination. Time, decision id and no filter
 * at all are index range scans (`audit_event_time`, `audit_event_decision`, the rowid). Kind,
 * outcome, source and target go through the block index (`audit_block`, migration 0005): blocks
 * are pruned by their presence bitmaps and time range, the rest have their term columns scanned
 * newest first, and only the matching rows are read, by seq. User, device, rule and reason have no
 * index: they are checked on the rows the indexed filters leave, and a page examines at most
 * {@link MAX_EXAMINED} of them (`scan_limited` says when it stopped there; `next_cursor` goes on).
 */
import { sql } from 'kysely';
import { z } from 'zod';
import { firstIssue } from '../api/parse.js';
import { spiffeParts } from '../policy/identity.js';
import { BLOCK_EVENTS, mayContain, readColumn } from '../store/audit-blocks.js';
import type { Store } from '../store/index.js';
import { AuditEventError } from './errors.js';
import { OUTCOMES, type StoredAuditEvent } from './event.js';
import { findTermId, type TermField } from './terms.js';

/** Longest value of a row filter (`user`, `device`, `rule`, `reason`). */
export const SEARCH_TEXT_MAX = 200;
const searchText = z.string().min(1).max(SEARCH_TEXT_MAX);

export const auditQuerySchema = z.strictObject({
  source: z.string().min(1).max(2048).optional(),
  target: z.string().min(1).max(2048).optional(),
  outcome: z.enum(OUTCOMES).optional(),
  kind: z.string().min(1).max(64).optional(),
  decision_id: z.string().min(1).max(128).optional(),
  /** The caller's user (`source.user`), exactly. */
  user: searchText.optional(),
  /** The device (`source.device_id`, or `details.device` of the access proxy's decisions), exactly. */
  device: searchText.optional(),
  /** The rule that decided, exactly. */
  rule: searchText.optional(),
  /** A part of the reason, in any case. */
  reason: searchText.optional(),
  /** Epoch ms, inclusive. */
  since: z.number().int().min(0).optional(),
  /** Epoch ms, exclusive. */
  until: z.number().int().min(0).optional(),
  /** At most 1000 (default 100). */
  limit: z.number().int().min(1).max(1000).default(100),
  /** `next_cursor` of the previous page: events with seq below it. */
  cursor: z.number().int().min(0).optional(),
});

export type AuditQuery = z.input<typeof auditQuerySchema>;

export interface AuditQueryResult {
  events: StoredAuditEvent[];
  /** Pass as `cursor` for the next (older) page; absent on the last page. */
  next_cursor?: number;
  /**
   * With row filters (user, device, rule, reason, or a caller's `match`): true when the page stopped
   * at the examination bound rather than at `limit` or the end; `next_cursor` then continues after
   * the last row examined.
   */
  scan_limited?: boolean;
  /** With row filters: how many rows the page looked at. */
  examined?: number;
}

/** Rows a page of a row-filtered query examines at most (default of {@link ScanOptions.maxExamined}). */
export const MAX_EXAMINED = 100_000;

/** Options of {@link queryAuditLog} for callers in the server. */
export interface ScanOptions {
  /** Rows examined at most when row filters apply (default {@link MAX_EXAMINED}). */
  maxExamined?: number;
  /** A further row filter, checked like the query's own (e.g. "has dry-run notes"). */
  match?: (e: StoredAuditEvent) => boolean;
}

/**
 * Parses query-string parameters (`?source=…&outcome=deny&since=…&limit=50`) into an AuditQuery.
 * Times may be epoch ms or ISO-8601. Throws AuditEventError (naming the parameter) on a bad value.
 */
export function parseQueryParams(params: URLSearchParams): z.output<typeof auditQuerySchema> {
  const raw = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of params) {
    // A repeated parameter would silently drop all but one value: refused instead.
    if (Object.hasOwn(raw, k)) throw new AuditEventError(`${k}: given more than once`, k);
    if (k === 'since' || k === 'until') {
      const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
      if (Number.isNaN(n)) throw new AuditEventError(`${k}: not a time (epoch ms or ISO-8601): ${v}`, k);
      raw[k] = n;
    } else if (k === 'limit' || k === 'cursor') {
      if (!/^\d+$/.test(v)) throw new AuditEventError(`${k}: not a number: ${v}`, k);
      raw[k] = Number(v);
    } else raw[k] = v;
  }
  const p = auditQuerySchema.safeParse(raw);
  if (!p.success) {
    const { field, message } = firstIssue(p.error);
    throw new AuditEventError(`bad query: ${field}: ${message}`, field);
  }
  return p.data;
}

/**
 * Runs a filtered query, newest first, with keyset pagination.
 *
 * @example
 * const { events, next_cursor } = await queryAuditLog(store, { source: 'spiffe://example.org/ns/a/sa/b', outcome: 'deny', limit: 50 });
 * const found = await queryAuditLog(store, { kind: 'access.decision', reason: 'default deny', since });
 * if (found.scan_limited) console.log('searched 100,000 events; more with cursor', found.next_cursor);
 */
export async function queryAuditLog(
  store: Store,
  query: AuditQuery,
  opts: ScanOptions = {},
): Promise<AuditQueryResult> {
  const q = auditQuerySchema.parse(query);
  const match = rowFilter(q, opts.match);
  // Kind, outcome, source and target are stored as dictionary term ids (migration 0004): a value
  // that was never stored has no term, so nothing can match it.
  const terms: TermFilter[] = [];
  for (const [field, value] of [
    ['source', q.source],
    ['target', q.target],
    ['outcome', q.outcome],
    ['kind', q.kind],
  ] as const) {
    if (value === undefined) continue;
    const ids = await termIds(store, field, value);
    if (ids.length === 0) return match ? { events: [], scan_limited: false, examined: 0 } : { events: [] };
    terms.push({ field, ids });
  }
  // A decision id names at most a few rows: its index beats any scan, and the term columns filter them.
  const fetch: Fetch =
    terms.length > 0 && q.decision_id === undefined
      ? (cursor, want) => scanBlocks(store, q, terms, cursor, want)
      : (cursor, want) => scanRows(store, q, terms, cursor, want);
  if (match) return filteredPage(q, fetch, match, opts.maxExamined ?? MAX_EXAMINED);
  const rows = await fetch(q.cursor, q.limit + 1);
  const more = rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const events = page.map((r) => JSON.parse(r.body) as StoredAuditEvent);
  const last = page[page.length - 1];
  return more && last ? { events, next_cursor: Number(last.seq) } : { events };
}

/** The row filter of a query's user, device, rule and reason (and a caller's), or undefined when none. */
function rowFilter(q: Parsed, extra: ScanOptions['match']): ((e: StoredAuditEvent) => boolean) | undefined {
  const tests: ((e: StoredAuditEvent) => boolean)[] = [];
  const { user, device, rule, reason } = q;
  if (user !== undefined) tests.push((e) => e.source?.user === user);
  if (device !== undefined) tests.push((e) => e.source?.device_id === device || e.details?.device === device);
  if (rule !== undefined) tests.push((e) => e.rule === rule);
  if (reason !== undefined) {
    const part = reason.toLowerCase();
    tests.push((e) => e.reason?.toLowerCase().includes(part) === true);
  }
  if (extra) tests.push(extra);
  if (tests.length === 0) return undefined;
  return (e) => tests.every((t) => t(e));
}

/**
 * Rows read by the first round trip of a row-filtered query, and the most by any: a search that
 * matches often ends within the first, one that rarely does pays for few round trips.
 */
const FILTER_PAGE_FIRST = 1000;
const FILTER_PAGE_MAX = 16_000;

/**
 * A page of a row-filtered query: rows from `fetch`, newest first, in round trips that double from
 * {@link FILTER_PAGE_FIRST}, until `limit` + 1 match, the rows end, or `maxExamined` were looked at.
 */
async function filteredPage(
  q: Parsed,
  fetch: Fetch,
  match: (e: StoredAuditEvent) => boolean,
  maxExamined: number,
): Promise<AuditQueryResult> {
  const events: StoredAuditEvent[] = [];
  let cursor = q.cursor;
  let examined = 0;
  // Rows examined up to the page's last event: the next page starts after it, so pages add up.
  let uptoLast = 0;
  let lastSeq: number | undefined;
  let ended = false;
  let size = FILTER_PAGE_FIRST;
  while (events.length <= q.limit && examined < maxExamined) {
    const want = Math.min(size, maxExamined - examined);
    size = Math.min(2 * size, FILTER_PAGE_MAX);
    const rows = await fetch(cursor, want);
    for (const r of rows) {
      examined++;
      lastSeq = Number(r.seq);
      const e = JSON.parse(r.body) as StoredAuditEvent;
      if (!match(e)) continue;
      if (events.push(e) > q.limit) break;
      uptoLast = examined;
    }
    if (rows.length < want) {
      ended = events.length <= q.limit;
      break;
    }
    cursor = lastSeq;
  }
  if (events.length > q.limit) {
    const page = events.slice(0, q.limit);
    const next = (page[page.length - 1] as StoredAuditEvent).seq;
    return { events: page, next_cursor: next, scan_limited: false, examined: uptoLast };
  }
  // At the bound exactly where the rows end: one look below says whether anything is left.
  if (!ended && lastSeq !== undefined && (await fetch(lastSeq, 1)).length === 0) ended = true;
  if (ended || lastSeq === undefined) return { events, scan_limited: false, examined };
  // Stopped at the bound: the next page starts below the last row looked at.
  return { events, next_cursor: lastSeq, scan_limited: true, examined };
}

interface TermFilter {
  field: TermField;
  /** Any of these terms matches (one, except for a service name; see termIds). */
  ids: number[];
}

// At most this many SPIFFE IDs answer for one service name (the rest are left out, newest terms first).
const MAX_NAME_TERMS = 1000;

/**
 * The term ids a filter value stands for: the value itself, and — for a source or target given as a
 * plain name such as `payment-service` — every stored SPIFFE ID whose service is that name
 * (`…/ns/<ns>/sa/<name>`, else the last path segment, as the policy engine derives it). Events
 * name a workload by its SPIFFE ID; people name it by its service.
 */
async function termIds(store: Store, field: TermField, value: string): Promise<number[]> {
  const exact = await findTermId(store.db, field, value);
  const ids = exact === undefined ? [] : [exact];
  if ((field !== 'source' && field !== 'target') || !/^[^/\s]+$/.test(value) || /^spiffe:/i.test(value)) return ids;
  // LIKE narrows (its case rules differ between engines); the derivation decides exactly.
  const pattern = `spiffe://%/${value.replace(/[\\%_]/g, (c) => `\\${c}`)}`;
  const named = await store.db
    .selectFrom('audit_term')
    .select(['id', 'value'])
    .where('field', '=', field)
    // SPIFFE IDs only (their scheme is lowercase by the spec): a range of the (field, value) index.
    .where('value', '>=', 'spiffe://')
    .where('value', '<', 'spiffe:/0')
    .where(sql<boolean>`value like ${pattern} escape '\\'`)
    .orderBy('id', 'desc')
    .limit(MAX_NAME_TERMS)
    .execute();
  for (const t of named) if (spiffeParts(t.value)?.service === value) ids.push(Number(t.id));
  return ids;
}

function hasTerm(ids: readonly number[], v: number): boolean {
  return ids.length === 1 ? ids[0] === v : ids.includes(v);
}

const TERM_COLUMN = {
  kind: 'kind_term',
  outcome: 'outcome_term',
  source: 'source_term',
  target: 'target_term',
} as const satisfies Record<TermField, string>;

type Parsed = z.output<typeof auditQuerySchema>;
type Found = { seq: number | string; body: string }[];
/** Up to `want` rows of the query's indexed filters with seq below `cursor`, newest first. */
type Fetch = (cursor: number | undefined, want: number) => Promise<Found>;

/** Up to `want` rows through the indexes on the row (time, decision id, rowid). */
async function scanRows(
  store: Store,
  q: Parsed,
  terms: readonly TermFilter[],
  cursor: number | undefined,
  want: number,
): Promise<Found> {
  let sel = store.db.selectFrom('audit_event').select(['seq', 'body']);
  for (const t of terms) sel = sel.where(TERM_COLUMN[t.field], 'in', t.ids);
  if (q.decision_id !== undefined) sel = sel.where('decision_id', '=', q.decision_id);
  if (q.since !== undefined) sel = sel.where('time', '>=', q.since);
  if (q.until !== undefined) sel = sel.where('time', '<', q.until);
  if (cursor !== undefined) sel = sel.where('seq', '<', cursor);
  return sel.orderBy('seq', 'desc').limit(want).execute();
}

// Blocks whose bitmaps are read per round trip, and matching seqs read per row query.
const META_PAGE = 256;
const EMPTY = new Uint8Array(0);
const COLUMN_PAGE = 16;
const SEQ_PAGE = 500;

/**
 * Up to `want` rows through the block index, newest first: per page of blocks, the time ranges
 * and bitmaps (small rows) rule blocks out; the term columns of the rest — only those filtered on —
 * are scanned; matching seqs are read as rows (with the time filter, on the row's own time).
 */
async function scanBlocks(
  store: Store,
  q: Parsed,
  terms: readonly TermFilter[],
  cursor: number | undefined,
  want: number,
): Promise<Found> {
  const db = store.db;
  const out: Found = [];
  // Positions below `upper` (exclusive): the cursor, else everything.
  const upper = cursor ?? Number.MAX_SAFE_INTEGER;
  if (upper <= 0) return out;
  let next = Math.floor((upper - 1) / BLOCK_EVENTS);
  const fields = [...new Set(terms.map((t) => t.field))];
  while (out.length < want && next >= 0) {
    let metas = db.selectFrom('audit_block').select(['block', 'present']).where('block', '<=', next);
    if (q.since !== undefined) metas = metas.where('max_time', '>=', q.since);
    if (q.until !== undefined) metas = metas.where('min_time', '<', q.until);
    const page = await metas.orderBy('block', 'desc').limit(META_PAGE).execute();
    if (page.length === 0) break;
    next = Number((page[page.length - 1] as (typeof page)[number]).block) - 1;
    const candidates = page
      .filter((m) => terms.every((t) => t.ids.some((id) => mayContain(m.present, t.field, id))))
      .map((m) => Number(m.block));
    for (let i = 0; i < candidates.length && out.length < want; i += COLUMN_PAGE) {
      const chunk = candidates.slice(i, i + COLUMN_PAGE);
      const rows = await db
        .selectFrom('audit_block_column')
        .select(['block', 'field', 'ids'])
        .where('block', 'in', chunk)
        .where('field', 'in', fields)
        .execute();
      const byBlock = new Map<number, Map<string, Buffer>>();
      for (const r of rows) {
        const m = byBlock.get(Number(r.block)) ?? new Map<string, Buffer>();
        byBlock.set(Number(r.block), m);
        m.set(r.field, r.ids);
      }
      // Matches of the whole page of blocks, newest first (blocks are in descending order), read
      // as rows together: one row query per page, not one per block.
      const seqs: number[] = [];
      for (const block of chunk) {
        const have = byBlock.get(block);
        const cols = terms.map((t) => readColumn(have?.get(t.field) ?? EMPTY));
        matchingSeqs(cols, terms, block * BLOCK_EVENTS, upper, seqs);
      }
      // The row's own columns decide (the block only narrows the search), so a block that is
      // wrong can hide an event from a query but never put a stranger into its answer.
      let j = 0;
      while (j < seqs.length && out.length < want) {
        const n = Math.min(SEQ_PAGE, want - out.length);
        let sel = db
          .selectFrom('audit_event')
          .select(['seq', 'body'])
          .where('seq', 'in', seqs.slice(j, j + n));
        for (const t of terms) sel = sel.where(TERM_COLUMN[t.field], 'in', t.ids);
        if (q.since !== undefined) sel = sel.where('time', '>=', q.since);
        if (q.until !== undefined) sel = sel.where('time', '<', q.until);
        out.push(...(await sel.orderBy('seq', 'desc').execute()));
        j += n;
      }
    }
  }
  return out;
}

/**
 * Appends to `seqs` the seqs of a block whose every filtered column holds the filter's term,
 * newest first. A tight loop over the first (most selective: source, target, outcome, kind)
 * column; the others are looked at only where it matches.
 */
function matchingSeqs(
  cols: Int32Array[],
  terms: readonly TermFilter[],
  start: number,
  upper: number,
  seqs: number[],
): void {
  let top = upper - start;
  for (const c of cols) top = Math.min(top, c.length);
  const first = cols[0] as Int32Array;
  const ids = (terms[0] as TermFilter).ids;
  for (let p = top - 1; p >= 0; p--) {
    if (!hasTerm(ids, first[p] as number)) continue;
    let all = true;
    for (let k = 1; k < cols.length && all; k++)
      all = hasTerm((terms[k] as TermFilter).ids, (cols[k] as Int32Array)[p] as number);
    if (all) seqs.push(start + p);
  }
}

/** Events with seq ≥ `fromSeq`, oldest first (for `tail`). */
export async function readAuditSince(store: Store, fromSeq: number, limit = 1000): Promise<StoredAuditEvent[]> {
  const rows = await store.db
    .selectFrom('audit_event')
    .select('body')
    .where('seq', '>=', fromSeq)
    .orderBy('seq')
    .limit(limit)
    .execute();
  return rows.map((r) => JSON.parse(r.body) as StoredAuditEvent);
}
