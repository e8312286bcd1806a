/**
 * Reading a policy path from disk: symbolic links (the Kubernetes ConfigMap layout) followed inside
 * the directory and refused out of it, empty files refused, input bounded by limits, a directory
 * without policies warned about.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssue, loadPolicies, PolicyLoadError, readPolicyTree } from '../../src/policy/index.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const policy = (name: string, rules = 1) =>
  `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: ${name} }\nspec:\n  action: ALLOW\n  target: { services: [${name}] }\n  rules:\n${'    - {}\n'.repeat(rules)}`;

const issues = (path: string, opts = {}) => readPolicyTree(path, opts).issues.map(formatIssue);

describe('policy files on disk', () => {
  it('follows links inside the directory (a ConfigMap volume), skips ..-entries, refuses links out of it', () => {
    const dir = tempDir();
    const vol = join(dir, 'vol');
    mkdirSync(join(vol, '..2026_12_06_01', 'sub'), { recursive: true });
    writeFileSync(join(vol, '..2026_12_06_01', 'a.yaml'), policy('a'));
    writeFileSync(join(vol, '..2026_12_06_01', 'sub', 'b.yaml'), policy('b'));
    symlinkSync('..2026_12_06_01', join(vol, '..data'));
    symlinkSync('..data/a.yaml', join(vol, 'a.yaml'));
    symlinkSync('..data/sub', join(vol, 'sub'));
    // A link back up the tree must not loop.
    symlinkSync('.', join(vol, 'loop'));
    const tree = readPolicyTree(vol);
    expect(tree.issues).toEqual([]);
    // Each policy once: the ..-directories are reached only through the visible links.
    expect(tree.policies.map((p) => p.id).sort()).toEqual(['a', 'b']);
    expect(loadPolicies(vol).ruleCount).toBe(2);

    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'x.yaml'), policy('x'));
    symlinkSync(join(outside, 'x.yaml'), join(vol, 'escape.yaml'));
    symlinkSync(outside, join(vol, 'escape-dir'));
    symlinkSync(join(vol, 'missing.yaml'), join(vol, 'dangling.yaml'));
    const found = issues(vol);
    expect(found).toEqual([
      expect.stringMatching(/dangling\.yaml:1:1: \(file\): broken symbolic link/),
      expect.stringMatching(
        /escape-dir:1:1: \(file\): symbolic link leads outside the policy directory \(to .*outside\)/,
      ),
      expect.stringMatching(/escape\.yaml:1:1: \(file\): symbolic link leads outside the policy directory/),
    ]);
    expect(() => loadPolicies(vol)).toThrow(PolicyLoadError);
  });

  it('the policy path itself may be a link (e.g. to the current release)', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'release-1'));
    writeFileSync(join(dir, 'release-1', 'a.yaml'), policy('a'));
    symlinkSync('release-1', join(dir, 'current'));
    expect(loadPolicies(join(dir, 'current')).policies.map((p) => p.id)).toEqual(['a']);
  });

  it('refuses an empty file, naming it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.yaml'), policy('a'));
    writeFileSync(join(dir, 'empty.yaml'), '');
    writeFileSync(join(dir, 'blank.yml'), ' \n\n');
    expect(issues(dir)).toEqual([
      expect.stringMatching(/blank\.yml:1:1: \(file\): empty policy file refused/),
      expect.stringMatching(/empty\.yaml:1:1: \(file\): empty policy file refused/),
    ]);
    expect(() => loadPolicies(join(dir, 'empty.yaml'))).toThrow(/empty\.yaml.*empty policy file refused/);
  });

  it('bounds the input: bytes per file, bytes in all, rules; each error names the file and the limit', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.yaml'), policy('a', 40));
    writeFileSync(join(dir, 'b.yaml'), policy('b', 40));
    expect(issues(dir)).toEqual([]);
    expect(issues(dir, { limits: { maxFileBytes: 300 } })).toEqual([
      expect.stringMatching(/a\.yaml:1:1: \(file\): file is \d+ bytes, over the limit of 300 \(max_file_bytes\)/),
      expect.stringMatching(/b\.yaml:1:1: \(file\): file is \d+ bytes, over the limit of 300 \(max_file_bytes\)/),
    ]);
    expect(issues(dir, { limits: { maxTotalBytes: 700 } })).toEqual([
      expect.stringMatching(
        /b\.yaml:1:1: \(file\): policy files total over 700 bytes with this file \(max_total_bytes\)/,
      ),
    ]);
    expect(issues(dir, { limits: { maxRules: 79 } })).toEqual([
      expect.stringMatching(/b\.yaml:1:1: \(file\): 80 rules in the policy set, over the limit of 79 \(max_rules\)/),
    ]);
    // The limits are not part of the snapshot: the same policies keep the same version.
    expect(loadPolicies(dir, { limits: { maxRules: 80 } }).version).toBe(loadPolicies(dir).version);
  });

  it('warns when a directory holds no policy (everything denied), also in policy lint', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'pol'));
    writeFileSync(join(dir, 'pol', 'README.md'), 'not a policy');
    const tree = readPolicyTree(join(dir, 'pol'));
    expect(tree.issues).toEqual([]);
    expect(tree.warnings.map(formatIssue)).toEqual([
      expect.stringMatching(/pol:1:1: \(file\): no policy documents found: every request is denied/),
    ]);
    const lint = await runCli(['policy', 'lint', join(dir, 'pol')]);
    expect(lint.code).toBe(0);
    expect(lint.stderr).toMatch(/warning: .*pol:1:1: no policy documents found: every request is denied/);
    expect(JSON.parse(lint.stdout)).toMatchObject({ findings: [], warnings: [{ message: expect.any(String) }] });
  }, 60_000);
});
