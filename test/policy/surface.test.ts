/**
 * `nevertrust/policy` is the engine's public surface: load, compile, decide, explain, lint and
 * test, their types and the errors. Everything else is internal (imported by module), so a name
 * added here is a deliberate API change.
 */
import { describe, expect, it } from 'vitest';
import * as policy from '../../src/policy/index.js';

describe('nevertrust/policy', () => {
  it('exports only load, compile, decide, explain, step-up requirements, lint, test and the errors', () => {
    expect(Object.keys(policy).sort()).toEqual([
      'DEFAULT_POLICY_LIMITS',
      'PATH_NORMALIZATIONS',
      'PolicyLoadError',
      'PolicyWatcher',
      'acceptsMethod',
      'accessRequestJsonSchema',
      'compile',
      'decide',
      'explain',
      'formatIssue',
      'lintPolicies',
      'loadPolicies',
      'loadPoliciesOffThread',
      'parseAccessRequest',
      'parsePolicyDocuments',
      'parsePolicyText',
      'pathOptionsFor',
      'readPolicyTree',
      'runPolicyTests',
      'stepUpRequirement',
    ]);
  });
});
