/**
 * Policies in the server: loads the configured file or directory as one snapshot, watches it, and
 * keeps the last good snapshot in force when a change is broken. Loads run on a worker thread, so
 * decisions keep being answered (from the previous snapshot) while a large policy set is parsed.
 * Every accepted snapshot is stored with its version (content hash) and recorded as a
 * `policy.changed` event; a rejected change is recorded too, with the file, line and column of the
 * mistake. `GET /v1/admin/policy` shows the last error, warnings and the state of the watch; lint,
 * evaluate and dry-run over the snapshot in force are in policy-tools.ts.
 */
import { resolve } from 'node:path';
import type { PolicyLimits } from '../../policy/load.js';
import { pathOptionsFor } from '../../policy/path.js';
import type { PolicySnapshot } from '../../policy/snapshot.js';
import { PolicyWatcher } from '../../policy/watcher.js';
import { formatIssue } from '../../policy/yamldoc.js';
import { policyToolRoutes } from './policy-tools.js';
import { type Route, sendJson } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

export interface PolicyHandle {
  /** The snapshot in force, or undefined when no policy source is configured (deny everything). */
  current(): PolicySnapshot | undefined;
}

/** What the policy routes read: the watcher and when its snapshot came into force. */
interface PolicyState {
  source: string | undefined;
  watcher(): PolicyWatcher | undefined;
  loadedAt(): number;
}

/** `GET /v1/admin/policy`: the source, the version in force, the last error, warnings and the watch. */
function showPolicy(state: PolicyState): AdminHandler {
  return (_req, res) => {
    const watcher = state.watcher();
    const snap = watcher?.current;
    const watch = watcher?.watchStatus;
    const loadedAt = state.loadedAt();
    sendJson(res, 200, {
      source: state.source ?? null,
      version: snap?.version ?? null,
      rules: snap?.ruleCount ?? 0,
      loaded_at: loadedAt ? new Date(loadedAt).toISOString() : null,
      last_error: watcher?.lastError?.issues.map(formatIssue).join('\n') ?? null,
      warnings: watcher?.warnings.map(formatIssue) ?? [],
      watch: watch ? { ok: watch.ok, error: watch.error, since: new Date(watch.since).toISOString() } : null,
    });
  };
}

/** `GET /v1/admin/policy/snapshot`: the policies in force. */
function showSnapshot(state: PolicyState): AdminHandler {
  return (_req, res) => {
    const snap = state.watcher()?.current;
    sendJson(res, 200, { version: snap?.version ?? null, policies: snap?.policies ?? [] });
  };
}

/** The policy plugin's routes (admin only). */
function policyRoutes(ctx: ServerContext, state: PolicyState): Route[] {
  return [
    { method: 'GET', path: '/v1/admin/policy', handler: adminRoute(ctx, showPolicy(state)) },
    { method: 'GET', path: '/v1/admin/policy/snapshot', handler: adminRoute(ctx, showSnapshot(state)) },
    ...policyToolRoutes(ctx, { snapshot: () => state.watcher()?.current }),
  ];
}

export function policyPlugin(): ServerPlugin & { handle: PolicyHandle } {
  let watcher: PolicyWatcher | undefined;
  let loadedAt = 0;
  return {
    name: 'policy',
    handle: { current: () => watcher?.current },
    async register(ctx: ServerContext) {
      const { config, store, events, logger, router, metrics } = ctx;
      const source = config.policies ? resolve(config.policies) : undefined;
      const accept = async (snap: PolicySnapshot) => {
        loadedAt = Date.now();
        const isNew = await store.policySnapshots.put({
          version: snap.version,
          createdAt: loadedAt,
          source: source ?? '',
          documents: JSON.stringify(snap.policies),
          ruleCount: snap.ruleCount,
        });
        events.record({
          kind: 'policy.changed',
          outcome: 'allow',
          source: { id: 'server' },
          target: { resource: source },
          reason: isNew ? 'policy snapshot accepted' : 'policy snapshot (seen before) back in force',
          details: { version: snap.version, rules: snap.ruleCount },
        });
        logger.info({ version: snap.version, rules: snap.ruleCount, source }, 'policy snapshot in force');
      };
      if (source) {
        const l = config.policy_limits;
        const limits: Partial<PolicyLimits> = {
          ...(l.max_file_bytes !== undefined && { maxFileBytes: l.max_file_bytes }),
          ...(l.max_total_bytes !== undefined && { maxTotalBytes: l.max_total_bytes }),
          ...(l.max_rules !== undefined && { maxRules: l.max_rules }),
        };
        // A broken policy at start is a start failure: nothing to fall back to.
        const w = await PolicyWatcher.open(source, { limits, path: pathOptionsFor(config.path_normalization) });
        watcher = w;
        await accept(w.current);
        for (const warning of w.warnings) logger.warn({ source }, formatIssue(warning));
        w.on(
          'reload',
          (snap) =>
            void accept(snap).catch((err: unknown) => logger.error({ err }, 'storing the policy snapshot failed')),
        );
        w.on('loaded', (_snap, changed) => metrics.policyReloads.inc({ result: changed ? 'changed' : 'unchanged' }));
        w.on('warning', (warnings) => {
          for (const warning of warnings) logger.warn({ source }, formatIssue(warning));
        });
        w.on('watch-error', (err) => {
          metrics.policyWatchErrors.inc();
          logger.error({ err: err.message, source }, 'watching the policy path failed; changes are found by polling');
        });
        w.on('error', (err) => {
          metrics.policyReloads.inc({ result: 'rejected' });
          const text = err.issues.map(formatIssue).join('\n');
          logger.error({ issues: err.issues }, 'policy change rejected; the last good snapshot stays in force');
          events.record({
            kind: 'policy.changed',
            outcome: 'deny',
            source: { id: 'server' },
            target: { resource: source },
            reason: `rejected: ${text}`,
            details: { kept_version: w.current.version },
          });
        });
        ctx.announce('policies', `${source} (${w.current.ruleCount} rules, ${w.current.version.slice(0, 19)}…)`);
      } else {
        ctx.announce('policies', 'none loaded: every request is denied (set --policies PATH)');
      }

      router.add(policyRoutes(ctx, { source, watcher: () => watcher, loadedAt: () => loadedAt }));
    },
    close() {
      watcher?.close();
    },
  };
}
