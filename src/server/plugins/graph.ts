/**
 * The console's service graph: `GET /v1/admin/graph?window=24h&scope=all|workloads|people` (or
 * `from`/`to` epoch ms), aggregated from the audit log's decision events with the policy in force
 * overlaid (src/audit/graph.ts; contract src/api/graph.ts). Admin only, like every `/v1/admin` call.
 *
 * Off the append path, the plugin summarizes full blocks of the audit index in the background: the
 * ones that were missing at start, then each block shortly after it fills, so a graph over a long
 * window reads one summary row per 4,096 events.
 */
import { GRAPH_DEFAULT_WINDOW_MS, graphQuerySchema } from '../../api/graph.js';
import { firstIssue } from '../../api/parse.js';
import { ServiceGraph } from '../../audit/graph.js';
import { BLOCK_EVENTS } from '../../store/audit-blocks.js';
import { HttpError, sendJson } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext, type ServerPlugin } from '../server.js';
import type { AuditHandle } from './audit.js';
import type { PolicyHandle } from './policy.js';

export interface GraphPluginOptions {
  audit: AuditHandle;
  policy: PolicyHandle;
  /** Summarize full blocks in the background (default true; tests turn it off to see the lazy path). */
  background?: boolean;
}

// A summarizing round: this many blocks, then the event loop's turn.
const ROUND = 32;
// After a block fills, wait this long (appends come in bursts; one round takes the burst's blocks).
const AFTER_FILL_MS = 1000;

/** `GET /v1/admin/graph`. */
function graphRoute(graph: ServiceGraph, policy: PolicyHandle): AdminHandler {
  return async (_req, res, url) => {
    const parsed = graphQuerySchema.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) {
      const { field, message } = firstIssue(parsed.error);
      throw new HttpError(400, 'bad_query', `${field}: ${message}`, { field });
    }
    const q = parsed.data;
    const to = q.to ?? Date.now();
    const from = q.from ?? to - (q.window ?? GRAPH_DEFAULT_WINDOW_MS);
    const snap = policy.current();
    sendJson(res, 200, await graph.graph({ from, to, scope: q.scope, policy: snap }));
  };
}

/**
 * The graph plugin; after `audit` and `policy`.
 *
 * @example
 * plugins: [policy, audit, graphPlugin({ audit: audit.handle, policy: policy.handle })]
 */
export function graphPlugin(opts: GraphPluginOptions): ServerPlugin {
  let timer: NodeJS.Timeout | undefined;
  let stopAppends: (() => void) | undefined;
  let closed = false;
  let running: Promise<void> | undefined;
  return {
    name: 'graph',
    dependsOn: ['policy', 'audit'],
    async register(ctx: ServerContext) {
      const graph = new ServiceGraph(ctx.store);
      ctx.router.add([
        { method: 'GET', path: '/v1/admin/graph', handler: adminRoute(ctx, graphRoute(graph, opts.policy)) },
      ]);
      if (opts.background === false) return;
      // Rounds until nothing is missing; a failure is logged and retried at the next fill.
      const catchUp = () => {
        timer = undefined;
        if (running || closed) return;
        running = (async () => {
          while (!closed && (await graph.summarize(ROUND)) === ROUND) await new Promise((r) => setImmediate(r));
        })()
          .catch((err: unknown) => ctx.logger.warn({ err }, 'summarizing audit blocks for the service graph failed'))
          .finally(() => {
            running = undefined;
          });
      };
      const log = opts.audit.log();
      let block = Math.floor(log.treeSize / BLOCK_EVENTS);
      stopAppends = log.onAppend(() => {
        const now = Math.floor(log.treeSize / BLOCK_EVENTS);
        if (now === block) return;
        block = now;
        timer ??= setTimeout(catchUp, AFTER_FILL_MS).unref();
      });
      timer = setTimeout(catchUp, 0).unref();
    },
    async close() {
      closed = true;
      stopAppends?.();
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
