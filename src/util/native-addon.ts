/**
 * Optional native accelerators (`native/<name>`, built at install by node-gyp): loaded once, and
 * only when built for this Node, complete, and not switched off by their environment variable
 * (`NEVERTRUST_NATIVE_<NAME>=0`). Callers keep a JavaScript path with the same answers.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const cache = new Map<string, unknown>();

/**
 * The addon at `file` if it exports every function in `functions`, else undefined.
 *
 * @example
 * const merkle = optionalNativeAddon<{ append: Function }>(file, ['append'], 'NEVERTRUST_NATIVE_MERKLE');
 */
export function optionalNativeAddon<T extends object>(
  file: string,
  functions: readonly (keyof T & string)[],
  disableEnv: string,
): T | undefined {
  if (process.env[disableEnv] === '0') return undefined;
  if (cache.has(file)) return (cache.get(file) as T | null) ?? undefined;
  let loaded: T | null = null;
  if (existsSync(file)) {
    try {
      const a = createRequire(import.meta.url)(file) as Record<string, unknown>;
      if (functions.every((f) => typeof a[f] === 'function')) loaded = a as T;
    } catch {
      // Built for another Node ABI, or not loadable here: the JavaScript path serves.
    }
  }
  cache.set(file, loaded);
  return loaded ?? undefined;
}
