/**
 * The `policy test` runner: YAML documents of `kind: PolicyTest` list requests and the decision
 * (and optionally the policy and rule) each must get, like `opa test`.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { reportZodIssues } from './convert.js';
import { decide } from './evaluate.js';
import { type LoadOptions, loadPolicies, readPolicyTree } from './load.js';
import { AccessRequestSchema, fromFlat } from './request.js';
import { PolicyLoadError, type PolicyIssue } from './yamldoc.js';
import type { PolicySnapshot } from './snapshot.js';

export const PolicyTestSchema = z
  .object({
    apiVersion: z.literal('nevertrust.dev/v1'),
    kind: z.literal('PolicyTest'),
    metadata: z.object({ name: z.string().min(1) }).strict(),
    /** Policy file or directory, relative to the test file; default: the test file's directory. */
    policies: z.string().min(1).optional(),
    /** Clock for requests without `request.time`. */
    now: z.iso.datetime({ offset: true }).optional(),
    cases: z
      .array(
        z
          .object({
            name: z.string().min(1),
            request: AccessRequestSchema,
            expect: z.enum(['allow', 'deny', 'step_up']),
            policy: z.string().nullable().optional(),
            rule: z.string().optional(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

export interface TestCaseResult {
  suite: string;
  name: string;
  file: string;
  line: number;
  ok: boolean;
  expected: string;
  actual: { decision: string; policy: string | null; rule: string | null; reason: string };
  /** Why it failed. */
  message?: string;
}

export interface TestReport {
  results: TestCaseResult[];
  passed: number;
  failed: number;
}

/**
 * Runs every `PolicyTest` document under `path`. Throws {@link PolicyLoadError} when a test file
 * or the policies it names cannot be loaded.
 *
 * @example
 * const report = runPolicyTests('examples/policies/payments');
 * if (report.failed > 0) process.exitCode = 1;
 */
export function runPolicyTests(path: string, opts: LoadOptions = {}): TestReport {
  const tree = readPolicyTree(path, opts);
  const issues: PolicyIssue[] = tree.issues.slice();
  const suites = tree.others.filter((o) => o.kind === 'PolicyTest');
  const parsed: { suite: z.infer<typeof PolicyTestSchema>; ctx: (typeof suites)[number]['ctx'] }[] = [];
  for (const s of suites) {
    const r = PolicyTestSchema.safeParse(s.value);
    if (!r.success) {
      reportZodIssues(s.ctx, r.error.issues);
      issues.push(...s.ctx.issues);
    } else parsed.push({ suite: r.data, ctx: s.ctx });
  }
  if (issues.length > 0) throw new PolicyLoadError(issues);
  if (parsed.length === 0) {
    throw new PolicyLoadError([
      { file: path, line: 1, column: 1, field: '(file)', message: 'no PolicyTest documents found' },
    ]);
  }
  const snapshots = new Map<string, PolicySnapshot>();
  const results: TestCaseResult[] = [];
  for (const { suite, ctx } of parsed) {
    const policyPath = resolve(dirname(resolve(ctx.file)), suite.policies ?? '.');
    let snap = snapshots.get(policyPath);
    if (!snap) {
      snap = loadPolicies(policyPath, opts);
      snapshots.set(policyPath, snap);
    }
    const now = suite.now === undefined ? undefined : Date.parse(suite.now);
    results.push(...runTestCases(snap, suite, ctx.file, (i) => ctx.locate(['cases', i]).line, now));
  }
  const failed = results.filter((r) => !r.ok).length;
  return { results, passed: results.length - failed, failed };
}

/** Runs one parsed suite against a snapshot. Pure. */
export function runTestCases(
  snap: PolicySnapshot,
  suite: z.infer<typeof PolicyTestSchema>,
  file: string,
  lineOf: (index: number) => number = () => 0,
  now?: number,
): TestCaseResult[] {
  return suite.cases.map((c, i) => {
    const d = decide(snap, fromFlat(c.request), now === undefined ? {} : { now });
    const problems: string[] = [];
    if (d.decision !== c.expect) problems.push(`expected ${c.expect}, got ${d.decision} (${d.reason})`);
    if (c.policy !== undefined && d.policy !== c.policy)
      problems.push(`expected policy ${JSON.stringify(c.policy)}, got ${JSON.stringify(d.policy)}`);
    if (c.rule !== undefined && d.rule !== c.rule)
      problems.push(`expected rule ${JSON.stringify(c.rule)}, got ${JSON.stringify(d.rule)}`);
    return {
      suite: suite.metadata.name,
      name: c.name,
      file,
      line: lineOf(i),
      ok: problems.length === 0,
      expected: c.expect,
      actual: { decision: d.decision, policy: d.policy, rule: d.rule, reason: d.reason },
      ...(problems.length ? { message: problems.join('; ') } : {}),
    };
  });
}
