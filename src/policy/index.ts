/**
 * `nevertrust/policy`: the Policy Engine. Load or parse policies (native YAML and Istio
 * AuthorizationPolicy), compile them into an immutable snapshot, decide requests in
 * microseconds, explain, lint and test.
 *
 * This is the public surface only. The engine's layers (model and request → matchers → compiled
 * snapshot and plans → evaluate/explain → documents, load and tools; see docs/architecture.md)
 * are internal: code inside nevertrust imports the module it needs, not this file.
 *
 * @example
 * import { loadPolicies, decide } from 'nevertrust/policy';
 * const snap = loadPolicies('policies/');
 * const d = decide(snap, { source_service: 'api-gateway', target_service: 'payment-service', method: 'POST', path: '/v1/charges' });
 */

// Load and parse.
export { type ParsedText, type ParseOptions, parsePolicyDocuments, parsePolicyText } from './document.js';
export {
  DEFAULT_POLICY_LIMITS,
  type LoadOptions,
  loadPolicies,
  type PolicyLimits,
  type PolicyTree,
  readPolicyTree,
} from './load.js';
export { type LoadResult, loadPoliciesOffThread } from './load-async.js';
export { PolicyWatcher, type PolicyWatcherEvents, type PolicyWatcherOptions, type WatchStatus } from './watcher.js';
// Compile.
export { compile } from './compile.js';
export type { Action, Policy } from './model.js';
export { PATH_NORMALIZATIONS, type PathNormalization, type PathOptions, pathOptionsFor } from './path.js';
export type { CompileOptions, PolicySnapshot } from './snapshot.js';
// Decide and explain.
export { type DecideOptions, type Decision, type DecisionKind, type DryRunRecord, decide } from './evaluate.js';
export { type Explanation, explain, type PolicyExplanation, type RuleExplanation } from './explain.js';
export {
  type AccessRequest,
  accessRequestJsonSchema,
  type FlatAccessRequest,
  parseAccessRequest,
} from './request.js';
// Step-up.
export { acceptsMethod, type StepUpRequirement, stepUpRequirement } from './step-up.js';
// Lint and test.
export { type LintFinding, type LintOptions, lintPolicies } from './lint.js';
export { runPolicyTests, type TestCaseResult, type TestReport } from './testing.js';
// Errors.
export { formatIssue, PolicyLoadError, type PolicyIssue } from './yamldoc.js';
