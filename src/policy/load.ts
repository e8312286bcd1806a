/**
 * Loading from disk: a file or a directory (recursively, `*.yaml`/`*.yml` in path order) becomes
 * one snapshot; any mistake in any file rejects the whole set. `PolicyWatcher` reloads on change
 * and keeps the last good snapshot when a reload fails. The only module of src/policy that does I/O.
 */
import { EventEmitter } from 'node:events';
import { type FSWatcher, readdirSync, readFileSync, statSync, watch } from 'node:fs';
import { join, relative } from 'node:path';
import { type CompileOptions, compile, type PolicySnapshot } from './compile.js';
import { type OtherDocument, type ParseOptions, parsePolicyDocuments } from './document.js';
import type { Policy } from './model.js';
import { PolicyLoadError, type PolicyIssue } from './yamldoc.js';

export interface LoadOptions extends ParseOptions, CompileOptions {}

/** Every policy file under `path` (itself if a file), sorted for a deterministic order. */
export function listPolicyFiles(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return [path];
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    )) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && /\.ya?ml$/.test(e.name)) out.push(p);
    }
  };
  walk(path);
  return out;
}

/** Reads and parses every file; returns policies, non-policy documents and all issues. */
export function readPolicyTree(
  path: string,
  opts: ParseOptions = {},
): { policies: Policy[]; others: OtherDocument[]; issues: PolicyIssue[] } {
  const policies: Policy[] = [];
  const others: OtherDocument[] = [];
  const issues: PolicyIssue[] = [];
  let files: string[];
  try {
    files = listPolicyFiles(path);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return { policies, others, issues: [{ file: path, line: 1, column: 1, field: '(file)', message: msg }] };
  }
  for (const f of files) {
    const shown = relative(process.cwd(), f) || f;
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      issues.push({
        file: shown,
        line: 1,
        column: 1,
        field: '(file)',
        message: err instanceof Error ? err.message : String(err),
      });
      continue;
    }
    const r = parsePolicyDocuments(text, shown, opts);
    policies.push(...r.policies);
    others.push(...r.others);
    issues.push(...r.issues);
  }
  const seen = new Map<string, Policy>();
  for (const p of policies) {
    const prev = seen.get(p.id);
    if (prev) {
      issues.push({
        ...p.loc,
        field: 'metadata.name',
        message: `duplicate policy name ${JSON.stringify(p.id)} (first defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.column})`,
      });
    } else seen.set(p.id, p);
  }
  return { policies, others, issues };
}

/**
 * Loads a file or directory as one compiled snapshot. Throws {@link PolicyLoadError} (every issue
 * with file, line, column and field) if anything is wrong; nothing partial is ever returned.
 *
 * @example
 * const snap = loadPolicies('examples/policies/payments');
 * decide(snap, { source_service: 'api-gateway', target_service: 'payment-service', method: 'POST', path: '/v1/charges' });
 */
export function loadPolicies(path: string, opts: LoadOptions = {}): PolicySnapshot {
  const r = readPolicyTree(path, opts);
  if (r.issues.length > 0) throw new PolicyLoadError(r.issues);
  return compile(r.policies, opts);
}

export interface PolicyWatcherEvents {
  reload: [snapshot: PolicySnapshot];
  error: [error: PolicyLoadError];
}

/**
 * Holds the current snapshot of a policy path and reloads it when files change. A failed reload
 * emits `error` and keeps the last good snapshot in force. The first load must succeed.
 *
 * @example
 * const w = new PolicyWatcher('policies/');
 * w.on('reload', (s) => log.info({ version: s.version }, 'policies reloaded'));
 * w.on('error', (e) => log.error(e.message));
 * decide(w.current, request);
 * w.close();
 */
export class PolicyWatcher extends EventEmitter<PolicyWatcherEvents> {
  private snapshot: PolicySnapshot;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly opts: LoadOptions & { debounceMs?: number; watch?: boolean } = {},
  ) {
    super();
    this.snapshot = loadPolicies(path, opts);
    if (opts.watch !== false) {
      // Recursive watching is what makes a directory of files one unit; Node 20 supports it on Linux.
      this.watcher = watch(path, { recursive: statSync(path).isDirectory(), persistent: false }, () => this.schedule());
      this.watcher.on('error', () => {});
    }
  }

  /** The snapshot in force. */
  get current(): PolicySnapshot {
    return this.snapshot;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.opts.debounceMs ?? 100);
  }

  /** Reloads now. Returns true when a new snapshot is in force. */
  reload(): boolean {
    try {
      const next = loadPolicies(this.path, this.opts);
      if (next.version === this.snapshot.version) return false;
      this.snapshot = next;
      this.emit('reload', next);
      return true;
    } catch (err) {
      const e =
        err instanceof PolicyLoadError
          ? err
          : new PolicyLoadError([{ file: this.path, line: 1, column: 1, field: '(file)', message: String(err) }]);
      this.emit('error', e);
      return false;
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
