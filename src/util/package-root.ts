/**
 * Locates files shipped with the package (the Workload API `.proto`, the native addons, example
 * policies) from both `src/` (tests, tsx) and `dist/` (the built package): walk up from this module
 * to the nearest `package.json` whose name is `nevertrust`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/**
 * The nevertrust package root directory.
 *
 * @example
 * ```ts
 * join(packageRoot(), 'proto', 'workloadapi.proto');
 * ```
 * @throws {Error} when no nevertrust package.json is found above this module
 */
export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        const name = (JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name;
        if (name === 'nevertrust') {
          cachedRoot = dir;
          return dir;
        }
      } catch {
        // An unreadable package.json on the way up is not ours; keep walking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot locate the nevertrust package root from ' + import.meta.url);
    dir = parent;
  }
}
