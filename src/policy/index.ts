/**
 * `nevertrust/policy`: the Policy Engine. Load or parse policies (native YAML and Istio
 * AuthorizationPolicy), compile them into an immutable snapshot, decide requests in
 * microseconds, explain, test, lint, graph and export.
 *
 * @example
 * import { loadPolicies, decide } from 'nevertrust/policy';
 * const snap = loadPolicies('policies/');
 * const d = decide(snap, { source_service: 'api-gateway', target_service: 'payment-service', method: 'POST', path: '/v1/charges' });
 */
export {
  type Bucket,
  type CompiledPolicy,
  type CompiledRule,
  type CompileOptions,
  compile,
  PatternIndex,
  type PolicySnapshot,
} from './compile.js';
export { evalCondition, localTime, parseConditionKey } from './conditions.js';
export {
  type OtherDocument,
  type ParseOptions,
  type ParsedText,
  parsePolicyDocuments,
  parsePolicyText,
} from './document.js';
export {
  type Candidates,
  type DecideOptions,
  type Decision,
  type DecisionKind,
  type DryRunRecord,
  decide,
  decideNormalized,
  lookupCandidates,
} from './evaluate.js';
export { type Explanation, explain, type PolicyExplanation, type RuleExplanation } from './explain.js';
export { type ExportOptions, type ExportResult, exportIstio, exportNetworkPolicies } from './export.js';
export { type GraphEdge, type PolicyGraph, policyGraph, toDot, toMermaid } from './graph.js';
export { istioPrincipal, type SpiffeParts, spiffeIdFromPrincipal, spiffeParts } from './identity.js';
export { ISTIO_API_VERSIONS, type IstioOptions, IstioPolicySchema, parseIstioDocument } from './istio.js';
export { type LintFinding, type LintOptions, lintPolicies, ruleCovers } from './lint.js';
export {
  DEFAULT_POLICY_LIMITS,
  type LoadOptions,
  listPolicyFiles,
  loadPolicies,
  type PolicyLimits,
  type PolicyTree,
  readPolicyTree,
  walkPolicyTree,
} from './load.js';
export { type LoadResult, loadPoliciesOffThread } from './load-async.js';
export {
  PolicyWatcher,
  type PolicyWatcherEvents,
  type PolicyWatcherOptions,
  policyFingerprint,
  type WatchStatus,
} from './watcher.js';
export { cidrContains, matchString, parseCidr, parseIp } from './match.js';
export * from './model.js';
export { type NaiveDecision, naiveDecide } from './naive.js';
export { NATIVE_API_VERSION, type NativePolicyDocument, NativePolicySchema, parseNativeDocument } from './native.js';
export {
  checkMethod,
  KNOWN_METHODS,
  normalizePath,
  PATH_NORMALIZATIONS,
  type PathNormalization,
  type PathOptions,
  type PathResult,
  pathOptionsFor,
} from './path.js';
export {
  type AccessRequest,
  AccessRequestSchema,
  accessRequestJsonSchema,
  type FlatAccessRequest,
  fromFlat,
  type NormalizedRequest,
  type NormalizeResult,
  normalizeRequest,
  parseAccessRequest,
} from './request.js';
export { matchRule, type RuleResult, targetApplies } from './rules.js';
export { PolicyTestSchema, runPolicyTests, runTestCases, type TestCaseResult, type TestReport } from './testing.js';
export { DocContext, fieldPath, formatIssue, PolicyLoadError, type PolicyIssue } from './yamldoc.js';
