/**
 * `nevertrust policy …`: eval, test, lint, graph, export. JSON (or YAML manifests) on stdout,
 * one-line errors with file:line:col on stderr. Exit codes: 0 ok, 1 failure, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { PATH_NORMALIZATIONS, type PathNormalization } from '../../policy/path.js';
import type YAML from 'yaml';
import type * as PolicyExport from '../../policy/export.js';
import type * as PolicyGraph from '../../policy/graph.js';
import type * as Policy from '../../policy/index.js';
import { CliError } from '../errors.js';

/** A usage mistake (exit 2). */
const usageError = (message: string) => new CliError(message, 2);

/**
 * What the actions use, loaded when a command runs: the policy engine (its public surface, plus
 * graph and export, which only this CLI offers) and the YAML parser.
 */
interface Libs {
  policy: typeof Policy & typeof PolicyGraph & typeof PolicyExport;
  yaml: typeof YAML;
}

async function loadLibs(): Promise<Libs> {
  const [policy, graph, exporter, yaml] = await Promise.all([
    import('../../policy/index.js'),
    import('../../policy/graph.js'),
    import('../../policy/export.js'),
    import('yaml'),
  ]);
  return { policy: { ...policy, ...graph, ...exporter }, yaml: yaml.default };
}

/** `--path-normalization`: how request paths are normalized, as `path_normalization` in the configs. */
const pathNormalizationOption = () =>
  new Option(
    '--path-normalization <mode>',
    'request path normalization the policies are loaded and decided with (as path_normalization in the server and sidecar configs)',
  )
    .choices(PATH_NORMALIZATIONS)
    .default('strict');

function out(v: unknown): void {
  process.stdout.write(typeof v === 'string' ? v : `${JSON.stringify(v, null, 2)}\n`);
}

/** Runs a command body, mapping errors to one stderr line and an exit code. */
async function run(body: (libs: Libs) => number): Promise<void> {
  const libs = await loadLibs();
  const { PolicyLoadError, formatIssue } = libs.policy;
  let code: number;
  try {
    code = body(libs);
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      for (const i of err.issues) process.stderr.write(`error: ${formatIssue(i)}\n`);
      code = 1;
    } else if (err instanceof CliError && err.exitCode === 2) {
      process.stderr.write(`error: ${err.message}\n`);
      code = 2;
    } else {
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      code = 1;
    }
  }
  process.exitCode = code;
}

function readInput(file: string, yaml: typeof YAML): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return file.endsWith('.json') ? JSON.parse(text) : yaml.parse(text);
  } catch (err) {
    throw new Error(`${file}:1:1: (input): ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

/**
 * Adds `policy eval|test|lint|graph|export` to the program.
 *
 * @example
 * const program = new Command('nevertrust');
 * registerPolicyCommands(program);
 * await program.parseAsync(process.argv);
 */
export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('evaluate, test, lint, graph and export access policies');

  policy
    .command('eval')
    .description('decide one access request against a policy file or directory; prints the decision as JSON')
    .requiredOption('--policies <path>', 'policy file or directory')
    .requiredOption('--input <file>', 'access request (JSON or YAML; full or OPA flat shape)')
    .option('--explain', 'list every candidate policy and rule and why each matched or not')
    .option('--istio-default-allow', 'allow workloads that no policy selects (Istio default; off = zero trust)')
    .addOption(pathNormalizationOption())
    .addHelpText(
      'after',
      '\nExample:\n  $ nevertrust policy eval --policies examples/policies/payments --input request.json --explain\n' +
        '\nA step_up decision also gets step_up: {methods?, maxAge?}, what the step-up asks for.\n' +
        '\nA device goes in source.device: {id, owner_is_user, managed, encrypted, os_patched, edr_active,\n' +
        'posture_age_s, unknown_reason}; a device.* condition on a missing attribute fails closed, and the\n' +
        'reason quotes unknown_reason (why the access proxy had no posture).\n' +
        '\nExit codes: 0 decided (allow, deny or step_up), 1 error, 2 usage error.\n',
    )
    .action(
      (o: {
        policies: string;
        input: string;
        explain?: boolean;
        istioDefaultAllow?: boolean;
        pathNormalization: PathNormalization;
      }) =>
        run(
          ({
            policy: { decide, explain, loadPolicies, parseAccessRequest, pathOptionsFor, stepUpRequirement },
            yaml,
          }) => {
            const snap = loadPolicies(o.policies, {
              istioDefaultAllow: o.istioDefaultAllow === true,
              path: pathOptionsFor(o.pathNormalization),
            });
            const req = parseAccessRequest(readInput(o.input, yaml));
            const now = Date.now();
            const r = o.explain ? explain(snap, req, { now }) : decide(snap, req, { now });
            const d = 'candidates' in r ? r.decision : r;
            // What a step-up asks for (methods, max age), as the access proxy reads it.
            out(d.decision === 'step_up' ? { ...r, step_up: stepUpRequirement(snap, d, req, { now }) } : r);
            return 0;
          },
        ),
    );

  policy
    .command('test')
    .argument('<path>', 'test file or directory (documents of kind PolicyTest)')
    .description('run policy tests: each case is a request and the decision it must get')
    .addOption(pathNormalizationOption())
    .addHelpText(
      'after',
      '\nExample:\n  $ nevertrust policy test examples/policies/payments\n\nExit codes: 0 all passed, 1 a case failed or a file is invalid.\n',
    )
    .action((path: string, o: { pathNormalization: PathNormalization }) =>
      run(({ policy: { runPolicyTests, pathOptionsFor } }) => {
        const r = runPolicyTests(path, { path: pathOptionsFor(o.pathNormalization) });
        for (const c of r.results) {
          const line = `${c.ok ? 'PASS' : 'FAIL'} ${c.suite}: ${c.name}${c.ok ? '' : ` (${c.file}:${c.line}: ${c.message})`}\n`;
          process.stderr.write(line);
        }
        out({ passed: r.passed, failed: r.failed, results: r.results });
        return r.failed > 0 ? 1 : 0;
      }),
    );

  policy
    .command('lint')
    .argument('<path>', 'policy file or directory')
    .description(
      'find shadowed rules, ALLOWs a DENY overrides, foreign principals, allow-everyone on sensitive paths, stale dry-runs, path prefixes without a / boundary',
    )
    .option('--trust-domain <domain>', 'trust domain principals must belong to (default: inferred from targets)')
    .addOption(pathNormalizationOption())
    .addHelpText(
      'after',
      '\nExample:\n  $ nevertrust policy lint policies/ --trust-domain example.org\n\nExit codes: 0 no errors (warnings allowed), 1 errors found.\n',
    )
    .action((path: string, o: { trustDomain?: string; pathNormalization: PathNormalization }) =>
      run(({ policy: { lintPolicies, PolicyLoadError, readPolicyTree, pathOptionsFor } }) => {
        const tree = readPolicyTree(path, { path: pathOptionsFor(o.pathNormalization) });
        if (tree.issues.length > 0) throw new PolicyLoadError(tree.issues);
        const findings = lintPolicies(tree.policies, o.trustDomain ? { trustDomain: o.trustDomain } : {});
        // A directory without any policy denies everything: lint-clean, yet almost never what was meant.
        for (const w of tree.warnings) process.stderr.write(`warning: ${w.file}:${w.line}:${w.column}: ${w.message}\n`);
        for (const f of findings)
          process.stderr.write(`${f.severity}: ${f.file}:${f.line}:${f.column}: ${f.code}: ${f.message}\n`);
        out({ findings, warnings: tree.warnings });
        return findings.some((f) => f.severity === 'error') ? 1 : 0;
      }),
    );

  policy
    .command('graph')
    .argument('<path>', 'policy file or directory')
    .description('who may call whom, from the enforced ALLOW rules')
    .option('--format <format>', 'dot, mermaid or json', 'json')
    .addHelpText(
      'after',
      '\nExample:\n  $ nevertrust policy graph examples/policies/payments --format dot | dot -Tsvg > calls.svg\n',
    )
    .action((path: string, o: { format: string }) =>
      run(({ policy: { loadPolicies, policyGraph, toDot, toMermaid } }) => {
        if (!['dot', 'mermaid', 'json'].includes(o.format))
          throw usageError(`--format must be dot, mermaid or json (got ${JSON.stringify(o.format)})`);
        const g = policyGraph(loadPolicies(path).policies);
        out(o.format === 'dot' ? toDot(g) : o.format === 'mermaid' ? toMermaid(g) : g);
        return 0;
      }),
    );

  policy
    .command('export')
    .argument('<path>', 'policy file or directory')
    .description('microsegmentation manifests (YAML, multi-document) from the same policies')
    .requiredOption('--format <format>', 'k8s-networkpolicy or istio')
    .option('--pod-label <key>', 'pod label that carries the service-account name', 'app')
    .addHelpText(
      'after',
      '\nExample:\n  $ nevertrust policy export examples/policies/payments --format k8s-networkpolicy | kubectl apply -f -\n' +
        '\nWhat the format cannot express is listed on stderr as a warning.\n',
    )
    .action((path: string, o: { format: string; podLabel: string }) =>
      run(({ policy: { exportIstio, exportNetworkPolicies, loadPolicies }, yaml }) => {
        if (o.format !== 'k8s-networkpolicy' && o.format !== 'istio') {
          throw usageError(`--format must be k8s-networkpolicy or istio (got ${JSON.stringify(o.format)})`);
        }
        const policies = loadPolicies(path).policies;
        const r =
          o.format === 'istio'
            ? exportIstio(policies, { podLabel: o.podLabel })
            : exportNetworkPolicies(policies, { podLabel: o.podLabel });
        for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
        out(r.manifests.map((m) => yaml.stringify(m)).join('---\n'));
        return 0;
      }),
    );
}
