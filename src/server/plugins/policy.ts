/**
 * Policies in the server: loads the configured file or directory as one snapshot, watches it, and
 * keeps the last good snapshot in force when a change is broken. Every accepted snapshot is stored
 * with its version (content hash) and recorded as a `policy.changed` event; a rejected change is
 * recorded too, with the file, line and column of the mistake.
 */
import { resolve } from 'node:path';
import { type PolicySnapshot, PolicyWatcher, formatIssue, pathOptionsFor } from '../../policy/index.js';
import { sendJson } from '../router.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

export interface PolicyHandle {
  /** The snapshot in force, or undefined when no policy source is configured (deny everything). */
  current(): PolicySnapshot | undefined;
}

export function policyPlugin(): ServerPlugin & { handle: PolicyHandle } {
  let watcher: PolicyWatcher | undefined;
  let lastError: string | undefined;
  let loadedAt = 0;
  return {
    name: 'policy',
    handle: { current: () => watcher?.current },
    async register(ctx: ServerContext) {
      const { config, store, events, logger, router } = ctx;
      const source = config.policies ? resolve(config.policies) : undefined;
      const accept = async (snap: PolicySnapshot) => {
        loadedAt = Date.now();
        lastError = undefined;
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
        // A broken policy at start is a start failure: nothing to fall back to.
        // Agents get the normalization with the snapshot (its options), so they decide alike.
        watcher = new PolicyWatcher(source, { path: pathOptionsFor(config.path_normalization) });
        await accept(watcher.current);
        watcher.on(
          'reload',
          (snap) =>
            void accept(snap).catch((err: unknown) => logger.error({ err }, 'storing the policy snapshot failed')),
        );
        watcher.on('error', (err) => {
          lastError = err.issues.map(formatIssue).join('\n');
          logger.error({ issues: err.issues }, 'policy change rejected; the last good snapshot stays in force');
          events.record({
            kind: 'policy.changed',
            outcome: 'deny',
            source: { id: 'server' },
            target: { resource: source },
            reason: `rejected: ${lastError}`,
            details: { kept_version: watcher?.current.version },
          });
        });
        ctx.announce(
          'policies',
          `${source} (${watcher.current.ruleCount} rules, ${watcher.current.version.slice(0, 19)}…)`,
        );
      } else {
        ctx.announce('policies', 'none loaded: every request is denied (set --policies PATH)');
      }

      router.on(
        'GET',
        '/v1/admin/policy',
        adminRoute(ctx, (_req, res) => {
          const snap = watcher?.current;
          sendJson(res, 200, {
            source: source ?? null,
            version: snap?.version ?? null,
            rules: snap?.ruleCount ?? 0,
            loaded_at: loadedAt ? new Date(loadedAt).toISOString() : null,
            last_error: lastError ?? null,
          });
        }),
      );
      router.on(
        'GET',
        '/v1/admin/policy/snapshot',
        adminRoute(ctx, (_req, res) => {
          const snap = watcher?.current;
          sendJson(res, 200, { version: snap?.version ?? null, policies: snap?.policies ?? [] });
        }),
      );
    },
    close() {
      watcher?.close();
    },
  };
}
