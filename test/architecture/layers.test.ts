/**
 * Folders depend downward. Each folder of src/ has a rank; a module may import from a folder of a
 * strictly lower rank (or its own folder), never from a higher or equal one. The ranks are the map in
 * docs/architecture.md; a new folder must be placed here before it can import anything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { relativeImports, tsFiles } from './imports.js';

const SRC = resolve(import.meta.dirname, '../../src');

/** Lower ranks are lower in the tree. Folders of one rank may not import each other. */
const RANK: Record<string, number> = {
  'errors.ts': -1,
  util: 0,
  spiffe: 1,
  api: 2,
  policy: 2,
  ca: 2,
  registration: 3,
  // console: browser code; imports only wire-contract types (`import type` from src/api/), bundled by
  // scripts/build-console.mjs for the browser.
  console: 3,
  store: 4,
  audit: 5,
  workload: 5,
  // Revocation, risk and posture signals as enforcement points hold them, the stream follower, the
  // SSF/CAEP receiver and transmitter (issue #23): over store; every enforcement point (pep, access,
  // agent, server) consumes it. The signal model itself is a wire contract (api/signals.ts).
  signals: 5,
  pep: 6,
  // The one config file composes the schemas of the parts it configures (e.g. pep's trusted proxies).
  config: 7,
  // The people's enforcement point (access proxy, OIDC relying party, sessions, built-in provider): over pep, store, audit.
  access: 7,
  agent: 8,
  server: 8,
  mesh: 9,
  cli: 10,
  'index.ts': 11,
};

/** The top folder of src/ a file is in, or a top-level module's own name (`errors.ts`). */
function folderOf(file: string): string {
  return (relative(SRC, file).split('/')[0] as string).replace(/\.js$/, '.ts');
}

describe('folders depend downward', () => {
  it('the import scanner sees static, re-export, type-only, side-effect and dynamic imports', () => {
    const text = [
      "import { a } from '../policy/index.js';",
      "import type { B } from '../store/index.js';",
      "export { c } from '../audit/index.js';",
      "import '../util/logger.js';",
      "const m = await import('../server/server.js');",
      'const s = \'from "../not/an/import.js"\';',
    ].join('\n');
    expect(relativeImports(text)).toEqual([
      '../policy/index.js',
      '../store/index.js',
      '../audit/index.js',
      '../util/logger.js',
      '../server/server.js',
    ]);
  });

  it('every folder of src/ has a rank', () => {
    const unranked = readdirSync(SRC).filter((n) => RANK[n] === undefined);
    expect(unranked).toEqual([]);
  });

  it('no module imports from a folder of its own rank or above', () => {
    const upward: string[] = [];
    for (const file of tsFiles(SRC)) {
      const from = folderOf(file);
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const to = folderOf(resolve(dirname(file), spec));
        if (to === from) continue;
        const rf = RANK[from] as number;
        const rt = RANK[to];
        if (rt === undefined || rt >= rf) upward.push(`${relative(SRC, file)} → ${spec} (${from} ${rf} → ${to} ${rt})`);
      }
    }
    expect(upward).toEqual([]);
  });
});

describe('the console is browser code', () => {
  const CONSOLE = resolve(SRC, 'console');

  it('takes nothing but types from the rest of src/ (only wire contracts, from src/api/)', () => {
    const bad: string[] = [];
    for (const file of tsFiles(CONSOLE)) {
      const text = readFileSync(file, 'utf8');
      for (const spec of relativeImports(text)) {
        const to = resolve(dirname(file), spec);
        if (to.startsWith(`${CONSOLE}/`)) continue;
        const escaped = spec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const typeOnly = new RegExp(`(?:import|export)\\s+type\\s[^'"\`;]*?from\\s*['"]${escaped}['"]`).test(text);
        if (!typeOnly || folderOf(to) !== 'api') bad.push(`${relative(SRC, file)} → ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
