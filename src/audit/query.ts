/**
 * Queries over the hot log, newest first. Every filter has an index whose order is the log order
 * within the filter (see migrations 0003 and 0004), so a page is an index range scan whatever the log's size.
 */
import { z } from 'zod';
import type { Store } from '../store/index.js';
import { AuditEventError } from './errors.js';
import { OUTCOMES, type StoredAuditEvent } from './event.js';
import type { TermField } from './terms.js';

export const auditQuerySchema = z.strictObject({
  source: z.string().min(1).max(2048).optional(),
  target: z.string().min(1).max(2048).optional(),
  outcome: z.enum(OUTCOMES).optional(),
  kind: z.string().min(1).max(64).optional(),
  decision_id: z.string().min(1).max(128).optional(),
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
}

/**
 * Parses query-string parameters (`?source=…&outcome=deny&since=…&limit=50`) into an AuditQuery.
 * Times may be epoch ms or ISO-8601. Throws AuditEventError on a bad value.
 */
export function parseQueryParams(params: URLSearchParams): z.output<typeof auditQuerySchema> {
  const raw: Record<string, unknown> = {};
  for (const [k, v] of params) {
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
    const i = p.error.issues[0];
    throw new AuditEventError(`bad query: ${i?.path.join('.') || ''} ${i?.message ?? ''}`.trim(), i?.path.join('.'));
  }
  return p.data;
}

/**
 * Runs a filtered query, newest first, with keyset pagination.
 *
 * @example
 * const { events, next_cursor } = await queryAuditLog(store, { source: 'spiffe://example.org/ns/a/sa/b', outcome: 'deny', limit: 50 });
 */
export async function queryAuditLog(store: Store, query: AuditQuery): Promise<AuditQueryResult> {
  const q = auditQuerySchema.parse(query);
  let sel = store.db.selectFrom('audit_event').select(['seq', 'body']);
  // Kind, outcome, source and target are stored as dictionary term ids (migration 0004): a value
  // that was never stored has no term, so nothing can match it.
  const filters: [TermField, 'kind_term' | 'outcome_term' | 'source_term' | 'target_term', string | undefined][] = [
    ['source', 'source_term', q.source],
    ['target', 'target_term', q.target],
    ['outcome', 'outcome_term', q.outcome],
    ['kind', 'kind_term', q.kind],
  ];
  for (const [field, column, value] of filters) {
    if (value === undefined) continue;
    const term = await store.db
      .selectFrom('audit_term')
      .select('id')
      .where('field', '=', field)
      .where('value', '=', value)
      .executeTakeFirst();
    if (!term) return { events: [] };
    sel = sel.where(column, '=', Number(term.id));
  }
  if (q.decision_id !== undefined) sel = sel.where('decision_id', '=', q.decision_id);
  if (q.since !== undefined) sel = sel.where('time', '>=', q.since);
  if (q.until !== undefined) sel = sel.where('time', '<', q.until);
  if (q.cursor !== undefined) sel = sel.where('seq', '<', q.cursor);
  const rows = await sel
    .orderBy('seq', 'desc')
    .limit(q.limit + 1)
    .execute();
  const more = rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const events = page.map((r) => JSON.parse(r.body) as StoredAuditEvent);
  const last = page[page.length - 1];
  return more && last ? { events, next_cursor: Number(last.seq) } : { events };
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
