/**
 * The policy engine in layers (docs/architecture.md): model and request → matchers → compiled
 * snapshot and plans → evaluate/explain → documents, load and tools → the public index. A module
 * of src/policy/ imports from its own layer or lower ones; Biome's noImportCycles forbids cycles
 * within a layer. A new module must be placed here before it can import anything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { relativeImports, tsFiles } from './imports.js';

const SRC = resolve(import.meta.dirname, '../../src');
const POLICY = resolve(SRC, 'policy');

const LAYERS: string[][] = [
  ['model', 'path', 'identity', 'yamldoc', 'match-schema', 'match', 'request'],
  ['conditions', 'rules', 'fastmatch', 'pattern-index'],
  ['snapshot', 'plan', 'compile'],
  ['evaluate', 'explain', 'naive', 'step-up'],
  [
    'native',
    'istio',
    'convert',
    'document',
    'load',
    'load-async',
    'load-worker',
    'watcher',
    'lint',
    'testing',
    'graph',
    'export',
  ],
  ['index'],
];
const LAYER = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

/** Modules outside src/policy/ that may import the public index (they use only its surface). */
const INDEX_USERS = ['index.ts', 'cli/commands/policy.ts'];

describe('the policy engine in layers', () => {
  it('every module of src/policy/ has a layer', () => {
    const modules = readdirSync(POLICY).filter((n) => n.endsWith('.ts'));
    expect(modules.filter((n) => !LAYER.has(basename(n, '.ts')))).toEqual([]);
  });

  it('no module imports from a higher layer', () => {
    const upward: string[] = [];
    for (const file of tsFiles(POLICY)) {
      const from = basename(file, '.ts');
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), spec);
        if (dirname(target) !== POLICY) continue;
        const to = basename(target, '.js');
        if ((LAYER.get(to) ?? Number.POSITIVE_INFINITY) > (LAYER.get(from) as number)) upward.push(`${from} → ${to}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('other folders import the module they need, not the public index', () => {
    const users: string[] = [];
    for (const file of tsFiles(SRC)) {
      if (dirname(file) === POLICY) continue;
      for (const spec of relativeImports(readFileSync(file, 'utf8')))
        if (resolve(dirname(file), spec) === resolve(POLICY, 'index.js')) users.push(relative(SRC, file));
    }
    expect([...new Set(users)].sort()).toEqual(INDEX_USERS.slice().sort());
  });
});
