/**
 * The service graph (`GET /v1/admin/graph`): decision events (`access.decision`) over a window,
 * counted per (source key, target key) and outcome, without reading event rows where it can help it.
 *
 * The audit query index keeps events in blocks of 4,096 with their term ids as int32 columns and
 * each block's time range (src/store/audit-blocks.ts). A full block never changes, so its edges are
 * counted once and kept (`audit_block_edges`, src/store/audit-block-edges.ts): a block wholly inside
 * the window is one small summary row. Blocks cut by the window's edges and the open last block are
 * counted from their columns and their rows' times. A summary is made when a full block is first
 * needed, or ahead of time by {@link ServiceGraph.summarize} (the server runs it after blocks fill).
 *
 * `new`: the same counting over the same length of time just before the window (presence only).
 */
import { toIso } from '../api/fields.js';
import { GRAPH_MAX_EDGES, type GraphEdge, type GraphNode, type GraphResponse, type GraphScope } from '../api/graph.js';
import type { AllowEdge } from '../policy/graph.js';
import { spiffeParts } from '../policy/identity.js';
import type { Policy } from '../policy/model.js';
import { BLOCK_EVENTS, readColumn } from '../store/audit-blocks.js';
import {
  EdgeTally,
  encodeBlockEdges,
  OUTCOME_CLASS,
  type OutcomeClass,
  outcomeClassOf,
  readBlockEdges,
  writeBlockEdges,
} from '../store/audit-block-edges.js';
import type { Store } from '../store/index.js';
import type { AuditEvent } from './event.js';
import { type NodeKind, PolicyOverlay, type PolicyVerdict } from './graph-policy.js';
import { findTermId } from './terms.js';

/** The kind of event the graph counts. */
export const DECISION_KIND = 'access.decision';

/** What a graph is asked for: `[from, to)` in epoch ms, a scope, and the snapshot in force. */
export interface GraphRequest {
  from: number;
  to: number;
  scope: GraphScope;
  /** The policy snapshot in force; without one every edge's policy is `unknown`. */
  policy?: { version: string; policies: readonly Policy[] };
  /** Most edges in the answer (default and at most GRAPH_MAX_EDGES). */
  maxEdges?: number;
}

/** Counting of one stretch of time `[lo, hi)`. */
interface Span {
  lo: number;
  hi: number;
  tally: EdgeTally;
}

/** Columns of one block, in the order kind, outcome, source, target. */
type Columns = [Int32Array, Int32Array, Int32Array, Int32Array];

// Blocks whose summaries (or columns) are read per round trip.
const PAGE = 128;
const COLUMN_PAGE = 16;
// Full blocks never change: the merged tally of CHUNK consecutive ones is kept (at most MAX_CHUNKS,
// ~1,500 edges each), so a warm graph over millions of events merges a few dozen tallies.
const CHUNK = 64;
const MAX_CHUNKS = 4096;
// Times of full blocks kept (32 KiB each): the few a window's edges cut, read again by the next graph.
const MAX_TIMES = 64;
// Node kinds remembered per process (term ids never change meaning); beyond this the cache starts over.
const MAX_KINDS = 100_000;

/**
 * The service graph of one store. Keeps what never changes (node kinds per term, the overlay of a
 * policy version) between calls; summaries it makes are stored for every server on the database.
 */
export class ServiceGraph {
  private readonly kinds = new Map<string, NodeKind>();
  private readonly chunks = new Map<number, EdgeTally>();
  private readonly fullTimes = new Map<number, Float64Array>();
  private overlay: { version: string; overlay: PolicyOverlay } | undefined;

  private readonly chunk: number;

  /** The graph over `store`'s audit log; `chunkBlocks` (default 64) is for tests of the in-memory roll-up. */
  constructor(
    private readonly store: Store,
    opts: { chunkBlocks?: number } = {},
  ) {
    this.chunk = opts.chunkBlocks ?? CHUNK;
  }

  /**
   * The graph of decisions in `[req.from, req.to)`.
   *
   * @example
   * const g = await new ServiceGraph(store).graph({ from: Date.now() - 86_400_000, to: Date.now(), scope: 'all' });
   */
  async graph(req: GraphRequest): Promise<GraphResponse> {
    const started = performance.now();
    const cur: Span = { lo: req.from, hi: req.to, tally: new EdgeTally() };
    const prev: Span = { lo: req.from - (req.to - req.from), hi: req.from, tally: new EdgeTally() };
    const kind = await findTermId(this.store.db, 'kind', DECISION_KIND);
    if (kind !== undefined) await this.count(kind, [prev, cur]);
    const answer = await this.answer(req, cur, prev);
    return { ...answer, computed_ms: Math.round((performance.now() - started) * 10) / 10 };
  }

  /**
   * Summarizes up to `max` full blocks that have no summary yet, newest first (the ones graphs
   * ask for most); returns how many it wrote. Run off the append path, after blocks fill.
   */
  async summarize(max = 64): Promise<number> {
    const kind = await findTermId(this.store.db, 'kind', DECISION_KIND);
    if (kind === undefined) return 0;
    const missing = await this.store.db
      .selectFrom('audit_block as b')
      .leftJoin('audit_block_edges as e', 'e.block', 'b.block')
      .select('b.block')
      .where('b.size', '=', BLOCK_EVENTS)
      .where('e.block', 'is', null)
      .orderBy('b.block', 'desc')
      .limit(max)
      .execute();
    const built = await this.build(
      kind,
      missing.map((m) => Number(m.block)),
      await this.outcomeClasses(),
    );
    return built.size;
  }

  /** Counts the decisions of every block that overlaps a span into that span's tally. */
  private async count(kind: number, spans: readonly Span[]): Promise<void> {
    const lo = Math.min(...spans.map((s) => s.lo));
    const hi = Math.max(...spans.map((s) => s.hi));
    const metas = await this.store.db
      .selectFrom('audit_block')
      .select(['block', 'size', 'min_time', 'max_time'])
      .where('max_time', '>=', lo)
      .where('min_time', '<', hi)
      .orderBy('block')
      .execute();
    const whole = new Map<number, Span>();
    const cut: number[] = [];
    for (const m of metas) {
      const min = Number(m.min_time);
      const max = Number(m.max_time);
      const inside = spans.find((s) => min >= s.lo && max < s.hi);
      if (Number(m.size) === BLOCK_EVENTS && inside) whole.set(Number(m.block), inside);
      else cut.push(Number(m.block));
    }
    const classes = await this.outcomeClasses();
    // Runs of `chunk` whole blocks in one span: their merged tally, kept in memory after the first use.
    const chunks = new Map<number, EdgeTally>();
    for (const [b, span] of whole) {
      const c = Math.floor(b / this.chunk);
      if (b % this.chunk !== 0 || chunks.has(c)) continue;
      let all = true;
      for (let k = b; k < b + this.chunk && all; k++) all = whole.get(k) === span;
      if (!all) continue;
      const cached = this.chunks.get(c);
      if (cached) span.tally.mergeTally(cached);
      else chunks.set(c, new EdgeTally());
      for (let k = b; k < b + this.chunk; k++) if (cached) whole.delete(k);
    }
    const blocks = [...whole.keys()];
    for (let i = 0; i < blocks.length; i += PAGE) {
      const page = blocks.slice(i, i + PAGE);
      const stored = await readBlockEdges(this.store.db, page);
      const missing = page.filter((b) => !stored.has(b));
      for (const [b, data] of await this.build(kind, missing, classes)) stored.set(b, data);
      for (const b of page) {
        const data = stored.get(b);
        const chunk = chunks.get(Math.floor(b / this.chunk));
        if (data) {
          (whole.get(b) as Span).tally.merge(data, b);
          chunk?.merge(data, b);
        } else {
          // A full block whose rows are not all there (part of it sealed): counted from what is.
          cut.push(b);
          chunks.delete(Math.floor(b / this.chunk));
        }
      }
    }
    if (this.chunks.size + chunks.size > MAX_CHUNKS) this.chunks.clear();
    for (const [c, tally] of chunks) this.chunks.set(c, tally);
    for (let i = 0; i < cut.length; i += COLUMN_PAGE) {
      const page = cut.slice(i, i + COLUMN_PAGE);
      const cols = await this.columns(page);
      for (const b of page) {
        const c = cols.get(b);
        if (c) tallyBlock(b, c, (await this.times(b)).times, kind, classes, spans);
      }
    }
  }

  /** Summaries of full blocks `blocks` from their columns and rows, stored; blocks missing rows are left out. */
  private async build(
    kind: number,
    blocks: readonly number[],
    classes: Map<number, OutcomeClass>,
  ): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    for (let i = 0; i < blocks.length; i += COLUMN_PAGE) {
      const page = blocks.slice(i, i + COLUMN_PAGE);
      const cols = await this.columns(page);
      const rows: { block: number; data: Buffer }[] = [];
      for (const b of page) {
        const c = cols.get(b);
        if (!c || c[0].length !== BLOCK_EVENTS) continue;
        const { times, found } = await this.times(b);
        if (found !== BLOCK_EVENTS) continue;
        const all: Span = { lo: Number.NEGATIVE_INFINITY, hi: Number.POSITIVE_INFINITY, tally: new EdgeTally() };
        tallyBlock(b, c, times, kind, classes, [all]);
        const data = encodeBlockEdges(all.tally);
        rows.push({ block: b, data });
        out.set(b, data);
      }
      await writeBlockEdges(this.store.db, rows);
    }
    return out;
  }

  /** The four columns of each of `blocks` that has them all. */
  private async columns(blocks: readonly number[]): Promise<Map<number, Columns>> {
    const out = new Map<number, Columns>();
    if (blocks.length === 0) return out;
    const rows = await this.store.db
      .selectFrom('audit_block_column')
      .select(['block', 'field', 'ids'])
      .where('block', 'in', blocks)
      .execute();
    const by = new Map<number, Map<string, Int32Array>>();
    for (const r of rows) {
      const m = by.get(Number(r.block)) ?? new Map<string, Int32Array>();
      by.set(Number(r.block), m);
      m.set(r.field, readColumn(r.ids));
    }
    for (const [b, m] of by) {
      const k = m.get('kind');
      const o = m.get('outcome');
      const s = m.get('source');
      const t = m.get('target');
      if (k && o && s && t) out.set(b, [k, o, s, t]);
    }
    return out;
  }

  /** The time of each position of `block` that has a row (NaN where none), and how many have one. */
  private async times(block: number): Promise<{ times: Float64Array; found: number }> {
    // A full block's times never change: the blocks a window's edges cut are read once.
    const cached = this.fullTimes.get(block);
    if (cached) return { times: cached, found: BLOCK_EVENTS };
    const start = block * BLOCK_EVENTS;
    const rows = await this.store.db
      .selectFrom('audit_event')
      .select(['seq', 'time'])
      .where('seq', '>=', start)
      .where('seq', '<', start + BLOCK_EVENTS)
      .execute();
    const times = new Float64Array(BLOCK_EVENTS).fill(Number.NaN);
    for (const r of rows) times[Number(r.seq) - start] = Number(r.time);
    if (rows.length === BLOCK_EVENTS) {
      if (this.fullTimes.size >= MAX_TIMES) this.fullTimes.clear();
      this.fullTimes.set(block, times);
    }
    return { times, found: rows.length };
  }

  /** Outcome term id → what it counts as (terms never change, but new ones appear). */
  private async outcomeClasses(): Promise<Map<number, OutcomeClass>> {
    const rows = await this.store.db
      .selectFrom('audit_term')
      .select(['id', 'value'])
      .where('field', '=', 'outcome')
      .execute();
    const out = new Map<number, OutcomeClass>();
    for (const r of rows) out.set(Number(r.id), outcomeClassOf(r.value));
    return out;
  }

  /** The answer from the tallies: names, node kinds, scope, the policy overlay, the bound. */
  private async answer(req: GraphRequest, cur: Span, prev: Span): Promise<Omit<GraphResponse, 'computed_ms'>> {
    const counted = [...cur.tally.edges()];
    const sources = await this.names('source', new Set(counted.map((e) => e[0])));
    const targets = await this.names('target', new Set(counted.map((e) => e[1])));
    const nodeKinds = await this.nodeKinds(counted, sources, targets);
    const overlay = this.overlayOf(req.policy);
    const used = new Set<AllowEdge>();
    const nodes = new Map<string, GraphNode>();
    const addNode = (id: string, kind: NodeKind) => {
      const have = nodes.get(id);
      if (!have || (have.kind === 'other' && kind !== 'other')) nodes.set(id, { id, label: labelOf(id, kind), kind });
    };
    const edges: (GraphEdge & { total: number; kinds: [NodeKind, NodeKind] })[] = [];
    let events = 0;
    for (const [s, t, c] of counted) {
      const source = sources.get(s) ?? '';
      const target = targets.get(t) ?? '';
      const sk = nodeKinds.get(`source:${s}`) ?? 'other';
      const tk = nodeKinds.get(`target:${t}`) ?? 'other';
      if (!inScope(req.scope, sk)) continue;
      const total = c.allow + c.deny + c.other;
      events += total;
      const policy: PolicyVerdict = overlay ? overlay.verdict(source, sk, target, tk, used) : 'unknown';
      edges.push({
        source,
        target,
        allowed: c.allow,
        denied: c.deny,
        other: c.other,
        first_seen: toIso(c.first),
        last_seen: toIso(c.last),
        new: !prev.tally.bySource.get(s)?.has(t),
        policy,
        unused: false,
        total,
        kinds: [sk, tk],
      });
    }
    edges.sort((a, b) => b.total - a.total || a.source.localeCompare(b.source) || a.target.localeCompare(b.target));
    const max = Math.min(req.maxEdges ?? GRAPH_MAX_EDGES, GRAPH_MAX_EDGES);
    const observed = new Set(edges.map((e) => JSON.stringify([e.source, e.target])));
    const unused =
      overlay && req.scope !== 'people'
        ? overlay.unused(used).filter((u) => !observed.has(JSON.stringify([u.source, u.target])))
        : [];
    const kept: GraphEdge[] = [];
    for (const { total: _, kinds, ...e } of edges.slice(0, max)) {
      kept.push(e);
      addNode(e.source, kinds[0]);
      addNode(e.target, kinds[1]);
    }
    // The ends of an allowed pair are a SPIFFE ID or a service name: workloads either way.
    for (const u of unused.slice(0, Math.max(0, max - kept.length))) {
      addNode(u.source, 'workload');
      addNode(u.target, 'workload');
      kept.push({
        source: u.source,
        target: u.target,
        allowed: 0,
        denied: 0,
        other: 0,
        first_seen: null,
        last_seen: null,
        new: false,
        policy: 'allowed',
        unused: true,
      });
    }
    return {
      from: toIso(req.from),
      to: toIso(req.to),
      events,
      policy_version: req.policy?.version ?? null,
      nodes: [...nodes.values()],
      edges: kept,
      truncated: edges.length + unused.length > kept.length,
    };
  }

  private overlayOf(policy: GraphRequest['policy']): PolicyOverlay | undefined {
    if (!policy) return undefined;
    if (this.overlay?.version !== policy.version)
      this.overlay = { version: policy.version, overlay: new PolicyOverlay(policy.policies) };
    return this.overlay.overlay;
  }

  /** Term id → value for `ids` of `field`. */
  private async names(field: 'source' | 'target', ids: ReadonlySet<number>): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const all = [...ids];
    for (let i = 0; i < all.length; i += 500) {
      const rows = await this.store.db
        .selectFrom('audit_term')
        .select(['id', 'value'])
        .where('field', '=', field)
        .where('id', 'in', all.slice(i, i + 500))
        .execute();
      for (const r of rows) out.set(Number(r.id), r.value);
    }
    return out;
  }

  /**
   * `source:<term>` / `target:<term>` → node kind. A SPIFFE ID is a workload; any other key is
   * looked up in one event that has it (a person is a source with a user and no SPIFFE ID), found
   * through the block the edge was last seen in: its column gives the position, the row the event.
   */
  private async nodeKinds(
    counted: readonly [number, number, { block: number }][],
    sources: Map<number, string>,
    targets: Map<number, string>,
  ): Promise<Map<string, NodeKind>> {
    const want = new Map<string, { field: 'source' | 'target'; term: number; block: number }>();
    for (const [s, t, c] of counted) {
      for (const [field, term, names] of [
        ['source', s, sources],
        ['target', t, targets],
      ] as const) {
        const key = `${field}:${term}`;
        if (this.kinds.has(key) || want.has(key)) continue;
        if (names.get(term)?.startsWith('spiffe://')) this.remember(key, 'workload');
        else want.set(key, { field, term, block: c.block });
      }
    }
    const pending = [...want.values()];
    for (let i = 0; i < pending.length; i += COLUMN_PAGE * 4) {
      const page = pending.slice(i, i + COLUMN_PAGE * 4);
      const cols = await this.columns([...new Set(page.map((p) => p.block))]);
      const seqs = new Map<number, (typeof page)[number][]>();
      for (const p of page) {
        const col = cols.get(p.block)?.[p.field === 'source' ? 2 : 3];
        const pos = col ? col.lastIndexOf(p.term) : -1;
        if (pos < 0) continue;
        const seq = p.block * BLOCK_EVENTS + pos;
        seqs.set(seq, [...(seqs.get(seq) ?? []), p]);
      }
      if (seqs.size === 0) continue;
      const rows = await this.store.db
        .selectFrom('audit_event')
        .select(['seq', 'body'])
        .where('seq', 'in', [...seqs.keys()])
        .execute();
      for (const r of rows) {
        const e = JSON.parse(r.body) as AuditEvent;
        for (const p of seqs.get(Number(r.seq)) ?? [])
          this.remember(`${p.field}:${p.term}`, p.field === 'source' ? sourceKind(e) : targetKind(e));
      }
    }
    return this.kinds;
  }

  private remember(key: string, kind: NodeKind): void {
    if (this.kinds.size >= MAX_KINDS) this.kinds.clear();
    this.kinds.set(key, kind);
  }
}

/** Counts the decisions of one block into the span that holds each one's time. */
function tallyBlock(
  block: number,
  [kinds, outcomes, sources, targets]: Columns,
  times: Float64Array,
  kind: number,
  classes: Map<number, OutcomeClass>,
  spans: readonly Span[],
): void {
  const n = Math.min(kinds.length, outcomes.length, sources.length, targets.length);
  for (let p = 0; p < n; p++) {
    if (kinds[p] !== kind) continue;
    const t = times[p] as number;
    // NaN (no row: sealed, or appended after the columns were read) is in no span.
    for (const s of spans) {
      if (t >= s.lo && t < s.hi) {
        s.tally.add(
          sources[p] as number,
          targets[p] as number,
          classes.get(outcomes[p] as number) ?? OUTCOME_CLASS.other,
          t,
          block,
        );
        break;
      }
    }
  }
}

function sourceKind(e: AuditEvent): NodeKind {
  const s = e.source;
  if (s?.spiffe_id || (s?.user === undefined && s?.service)) return 'workload';
  return s?.user !== undefined ? 'person' : 'other';
}

function targetKind(e: AuditEvent): NodeKind {
  return e.target?.service || e.target?.spiffe_id ? 'workload' : 'other';
}

function inScope(scope: GraphScope, sourceKind: NodeKind): boolean {
  return scope === 'all' || (scope === 'workloads' ? sourceKind === 'workload' : sourceKind === 'person');
}

/** A short label: a SPIFFE ID's service (`…/sa/<name>`, else its last segment), else the key itself. */
function labelOf(id: string, kind: NodeKind): string {
  if (id === '') return '(none)';
  const name = kind === 'workload' && id.startsWith('spiffe://') ? (spiffeParts(id)?.service ?? id) : id;
  return name.length > 64 ? `${name.slice(0, 63)}…` : name;
}
