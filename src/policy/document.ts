/**
 * Multi-document YAML text → policies. Dispatches each document on `apiVersion`/`kind`;
 * `kind: PolicyTest` documents are left to the test runner. Pure: no file I/O.
 */
import { LineCounter, parseAllDocuments } from 'yaml';
import { type IstioOptions, parseIstioDocument } from './istio.js';
import type { Policy } from './model.js';
import { NATIVE_API_VERSION, parseNativeDocument } from './native.js';
import type { PathOptions } from './path.js';
import { DocContext, PolicyLoadError, type PolicyIssue } from './yamldoc.js';

export interface ParseOptions extends IstioOptions {
  /** The request path normalization of the policy set: rule paths it would change are refused. */
  path?: PathOptions;
}

/** A parsed YAML document that is not a policy (e.g. a `PolicyTest`), with its context for errors. */
export interface OtherDocument {
  kind: string;
  value: unknown;
  ctx: DocContext;
}

export interface ParsedText {
  policies: Policy[];
  others: OtherDocument[];
  issues: PolicyIssue[];
}

/** Parses YAML text into documents, reporting syntax errors with positions. */
export function parseYamlDocuments(text: string, file: string): { docs: DocContext[]; issues: PolicyIssue[] } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const issues: PolicyIssue[] = [];
  const out: DocContext[] = [];
  if (!Array.isArray(docs)) {
    // parseAllDocuments returns an EmptyStream for empty input.
    return { docs: out, issues };
  }
  for (const doc of docs) {
    for (const e of doc.errors) {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      issues.push({
        file,
        line: pos.line,
        column: pos.col,
        field: '(yaml)',
        message: e.message.split('\n')[0] ?? e.message,
      });
    }
    if (doc.errors.length === 0 && doc.contents !== null) out.push(new DocContext(file, doc, lines));
  }
  return { docs: out, issues };
}

/**
 * Parses policy text (any number of native and Istio documents). Collects every issue instead
 * of stopping at the first.
 *
 * @example
 * const { policies, issues } = parsePolicyDocuments(text, 'policies/payments.yaml');
 */
export function parsePolicyDocuments(text: string, file: string, opts: ParseOptions = {}): ParsedText {
  const { docs, issues } = parseYamlDocuments(text, file);
  const policies: Policy[] = [];
  const others: OtherDocument[] = [];
  for (const ctx of docs) {
    const value: unknown = ctx.doc.toJS({ maxAliasCount: 100 });
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      ctx.error([], 'expected a mapping with apiVersion and kind');
      issues.push(...ctx.issues);
      continue;
    }
    const { apiVersion, kind } = value as { apiVersion?: unknown; kind?: unknown };
    let p: Policy | undefined;
    if (apiVersion === NATIVE_API_VERSION && kind === 'AccessPolicy') p = parseNativeDocument(ctx, value, opts.path);
    else if (
      typeof apiVersion === 'string' &&
      apiVersion.startsWith('security.istio.io/') &&
      kind === 'AuthorizationPolicy'
    ) {
      p = parseIstioDocument(ctx, value, opts, opts.path);
    } else if (apiVersion === NATIVE_API_VERSION && typeof kind === 'string' && kind !== 'AccessPolicy') {
      others.push({ kind, value, ctx });
      if (kind !== 'PolicyTest')
        ctx.error(['kind'], `unknown kind ${JSON.stringify(kind)} (AccessPolicy or PolicyTest)`);
    } else if (apiVersion === undefined) {
      ctx.error([], 'missing apiVersion');
    } else {
      ctx.error(
        ['apiVersion'],
        `unsupported document ${JSON.stringify(apiVersion)}/${JSON.stringify(kind)} (expected ${NATIVE_API_VERSION} AccessPolicy or security.istio.io/v1 AuthorizationPolicy)`,
      );
    }
    if (ctx.issues.length > 0) issues.push(...ctx.issues);
    else if (p) policies.push(p);
  }
  return { policies, others, issues };
}

/**
 * Parses policy text and throws {@link PolicyLoadError} on any mistake.
 *
 * @example
 * const snap = compile(parsePolicyText(readFileSync('p.yaml', 'utf8'), 'p.yaml'));
 */
export function parsePolicyText(text: string, file: string, opts: ParseOptions = {}): Policy[] {
  const r = parsePolicyDocuments(text, file, opts);
  if (r.issues.length > 0) throw new PolicyLoadError(r.issues);
  return r.policies;
}
