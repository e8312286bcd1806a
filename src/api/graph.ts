/**
 * The service graph on the wire (`GET /v1/admin/graph`, the console's first page): who called whom
 * over a window, aggregated from the audit log's decision events on the server, with the policy's
 * allowed edges overlaid. Nodes are the audit log's source and target keys (`sourceKey()` /
 * `targetKey()` of src/audit/event.ts), so an edge's ends are what `GET /v1/admin/audit/events`
 * takes as `source=` and `target=` to list its decisions.
 */
import { z } from 'zod';
import { parseDuration } from '../util/duration.js';
import { isoTime } from './fields.js';

/** Longest window a graph may cover (and the default one). */
export const GRAPH_MAX_WINDOW_MS = 31 * 86_400_000;
export const GRAPH_DEFAULT_WINDOW_MS = 3_600_000;
/** Most edges in one answer: the most active first, then `truncated: true`. */
export const GRAPH_MAX_EDGES = 2000;
export const GRAPH_SCOPES = ['all', 'workloads', 'people'] as const;
export type GraphScope = (typeof GRAPH_SCOPES)[number];

const epochMs = z
  .string()
  .max(16)
  .regex(/^\d+$/, 'epoch milliseconds (digits only)')
  .transform(Number)
  .pipe(z.number().int().min(0).max(8.64e15));

const windowText = z
  .string()
  .max(32)
  .transform((v, ctx) => {
    let s: number;
    try {
      s = parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
    const ms = Math.round(s * 1000);
    if (ms < 1000 || ms > GRAPH_MAX_WINDOW_MS) {
      ctx.addIssue({ code: 'custom', message: 'between 1s and 31d' });
      return z.NEVER;
    }
    return ms;
  });

/**
 * The query string of `GET /v1/admin/graph`: `window=24h` (ending now), or `from` and `to` (epoch
 * ms, `from` < `to`, at most 31 days apart); `scope` keeps the edges whose source is a workload or
 * a person. Parse `Object.fromEntries(url.searchParams)` with `parseWire`.
 */
export const graphQuerySchema = z
  .strictObject({
    window: windowText.optional(),
    from: epochMs.optional(),
    to: epochMs.optional(),
    scope: z.enum(GRAPH_SCOPES).default('all'),
  })
  .superRefine((q, ctx) => {
    if (q.window !== undefined && (q.from !== undefined || q.to !== undefined))
      ctx.addIssue({ code: 'custom', path: ['window'], message: 'give window, or from and to, not both' });
    if ((q.from === undefined) !== (q.to === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [q.from === undefined ? 'from' : 'to'],
        message: 'from and to go together',
      });
    if (q.from !== undefined && q.to !== undefined) {
      if (q.from >= q.to) ctx.addIssue({ code: 'custom', path: ['from'], message: 'from must be before to' });
      else if (q.to - q.from > GRAPH_MAX_WINDOW_MS)
        ctx.addIssue({ code: 'custom', path: ['to'], message: 'at most 31 days after from' });
    }
  });
export type GraphQuery = z.output<typeof graphQuerySchema>;

export const graphNodeSchema = z.strictObject({
  /** The audit log's key: a SPIFFE ID, a user, a service name or an address. */
  id: z.string(),
  /** Short: a SPIFFE ID's service (`…/sa/<name>`, else its last segment), else the id. */
  label: z.string(),
  kind: z.enum(['workload', 'person', 'other']),
});
export type GraphNode = z.infer<typeof graphNodeSchema>;

export const graphEdgeSchema = z.strictObject({
  source: z.string(),
  target: z.string(),
  allowed: z.number().int().min(0),
  denied: z.number().int().min(0),
  /** step_up, error and decisions without an outcome. */
  other: z.number().int().min(0),
  /** Null on an unused edge (no decision in the window). */
  first_seen: isoTime.nullable(),
  last_seen: isoTime.nullable(),
  /** First seen in the window, and not seen in the same length of time before it. */
  new: z.boolean(),
  /** Whether an ALLOW rule of the policy in force covers the edge (`unknown`: it cannot be told from the names). */
  policy: z.enum(['allowed', 'not_allowed', 'unknown']),
  /** Allowed by the policy and no decision in the window: a least-privilege candidate. */
  unused: z.boolean(),
});
export type GraphEdge = z.infer<typeof graphEdgeSchema>;

export const graphResponseSchema = z.strictObject({
  from: isoTime,
  to: isoTime,
  /** Decision events in the window (in scope), counted before truncation. */
  events: z.number().int().min(0),
  computed_ms: z.number().min(0),
  policy_version: z.string().nullable(),
  nodes: z.array(graphNodeSchema),
  edges: z.array(graphEdgeSchema),
  /** More edges than {@link GRAPH_MAX_EDGES}: the least active were left out. */
  truncated: z.boolean(),
});
export type GraphResponse = z.infer<typeof graphResponseSchema>;
