/**
 * Loading from disk: a file or a directory (recursively, `*.yaml`/`*.yml` in path order) becomes
 * one snapshot; any mistake in any file rejects the whole set. Symbolic links are followed while
 * they stay inside the directory (the layout of a Kubernetes ConfigMap volume); input is bounded
 * by {@link PolicyLimits}. With watcher.ts and load-worker.ts, the only modules of src/policy that
 * do I/O.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { compile } from './compile.js';
import { type OtherDocument, type ParseOptions, parsePolicyDocuments } from './document.js';
import type { Policy } from './model.js';
import { PolicyLoadError, type PolicyIssue } from './yamldoc.js';
import type { CompileOptions, PolicySnapshot } from './snapshot.js';

/** Bounds on what one load may read, so a huge or runaway file cannot exhaust the process. */
export interface PolicyLimits {
  /** Largest policy file, in bytes. */
  maxFileBytes: number;
  /** All files of one load together, in bytes. */
  maxTotalBytes: number;
  /** Rules of all policies together. */
  maxRules: number;
}

export const DEFAULT_POLICY_LIMITS: Readonly<PolicyLimits> = Object.freeze({
  maxFileBytes: 16 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxRules: 100_000,
});

export interface LoadOptions extends ParseOptions, CompileOptions {
  limits?: Partial<PolicyLimits>;
}

const fileIssue = (file: string, message: string): PolicyIssue => ({
  file,
  line: 1,
  column: 1,
  field: '(file)',
  message,
});
const shown = (f: string) => relative(process.cwd(), f) || f;
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Every policy file under `path` (itself if a file), sorted, with the problems met on the way.
 * Entries whose name starts with `.` are skipped (hidden files, and Kubernetes' `..data` and
 * `..<timestamp>` directories, reached through the visible links that point into them). A symbolic
 * link is followed only when its target stays inside the directory: one that leads out is refused.
 */
export function walkPolicyTree(path: string): { files: string[]; issues: PolicyIssue[] } {
  const files: string[] = [];
  const issues: PolicyIssue[] = [];
  let root: string;
  try {
    root = realpathSync(path);
    if (statSync(root).isFile()) return { files: [path], issues };
  } catch (err) {
    return { files, issues: [fileIssue(path, errText(err))] };
  }
  const visited = new Set<string>([root]);
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        let real: string;
        try {
          real = realpathSync(p);
        } catch (err) {
          if (/\.ya?ml$/.test(e.name)) issues.push(fileIssue(shown(p), `broken symbolic link: ${errText(err)}`));
          continue;
        }
        if (!inside(root, real)) {
          issues.push(fileIssue(shown(p), `symbolic link leads outside the policy directory (to ${real}): refused`));
          continue;
        }
        const st = statSync(real);
        isDir = st.isDirectory();
        isFile = st.isFile();
        // A link back up the tree would loop forever.
        if (isDir && visited.has(real)) continue;
        if (isDir) visited.add(real);
      }
      if (isDir) walk(p);
      else if (isFile && /\.ya?ml$/.test(e.name)) files.push(p);
    }
  };
  try {
    walk(path);
  } catch (err) {
    issues.push(fileIssue(path, errText(err)));
  }
  return { files, issues };
}

/** Every policy file under `path` (itself if a file), sorted for a deterministic order. Throws {@link PolicyLoadError}. */
export function listPolicyFiles(path: string): string[] {
  const r = walkPolicyTree(path);
  if (r.issues.length > 0) throw new PolicyLoadError(r.issues);
  return r.files;
}

export interface PolicyTree {
  policies: Policy[];
  others: OtherDocument[];
  issues: PolicyIssue[];
  /** Not mistakes, but worth telling: e.g. a directory without any policy (every request denied). */
  warnings: PolicyIssue[];
}

/** Reads and parses every file; returns policies, non-policy documents, all issues and warnings. */
export function readPolicyTree(path: string, opts: LoadOptions = {}): PolicyTree {
  const limits = { ...DEFAULT_POLICY_LIMITS, ...opts.limits };
  const policies: Policy[] = [];
  const others: OtherDocument[] = [];
  const walked = walkPolicyTree(path);
  const issues = walked.issues;
  const warnings: PolicyIssue[] = [];
  let total = 0;
  for (const f of walked.files) {
    const name = shown(f);
    let text: string;
    try {
      // Sized before reading, so an oversized file is never read into memory.
      const size = statSync(f).size;
      if (size > limits.maxFileBytes) {
        issues.push(
          fileIssue(name, `file is ${size} bytes, over the limit of ${limits.maxFileBytes} (max_file_bytes)`),
        );
        continue;
      }
      total += size;
      if (total > limits.maxTotalBytes) {
        issues.push(
          fileIssue(name, `policy files total over ${limits.maxTotalBytes} bytes with this file (max_total_bytes)`),
        );
        break;
      }
      text = readFileSync(f, 'utf8');
    } catch (err) {
      issues.push(fileIssue(name, errText(err)));
      continue;
    }
    // An empty file is most often one caught mid-write (truncated, not yet written): taking it as
    // "no policies" would deny everything, or drop a DENY. Removing a file is how to remove policies.
    if (text.trim() === '') {
      issues.push(fileIssue(name, 'empty policy file refused (delete the file to remove its policies)'));
      continue;
    }
    const r = parsePolicyDocuments(text, name, opts);
    policies.push(...r.policies);
    others.push(...r.others);
    issues.push(...r.issues);
  }
  const seen = new Map<string, Policy>();
  let rules = 0;
  for (const p of policies) {
    rules += p.rules?.length ?? 0;
    const prev = seen.get(p.id);
    if (prev) {
      issues.push({
        ...p.loc,
        field: 'metadata.name',
        message: `duplicate policy name ${JSON.stringify(p.id)} (first defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.column})`,
      });
    } else seen.set(p.id, p);
  }
  if (rules > limits.maxRules) {
    const last = policies[policies.length - 1];
    issues.push(
      fileIssue(
        last?.loc.file ?? path,
        `${rules} rules in the policy set, over the limit of ${limits.maxRules} (max_rules)`,
      ),
    );
  }
  if (policies.length === 0 && issues.length === 0)
    warnings.push(fileIssue(shown(path), 'no policy documents found: every request is denied'));
  return { policies, others, issues, warnings };
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
  return compile(r.policies, compileOptions(opts));
}

/** What of `opts` goes into the snapshot (and so into its version): everything but the limits. */
export function compileOptions(opts: LoadOptions): CompileOptions {
  const { limits, ...rest } = opts;
  return rest;
}
